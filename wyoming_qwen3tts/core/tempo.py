"""Pitch-preserving speed change (HTTP ``speed``, server and per-voice speed): WSOLA on streaming int16 PCM.

Resampling would change the pitch with the tempo (chipmunks at 2x), and none of our dependencies has a
time-stretcher, so this is the classic waveform-similarity overlap-add (Verhelst & Roelands 1993; the
method of sox's ``tempo`` effect), ~60 lines of numpy:

* Output frames of ``FRAME_MS`` (30 ms, Hann window, 50 % overlap) are placed every ``hop`` samples.
  Frame ``k`` is cut from the input near ``k * hop * speed``, shifted by up to ``TOLERANCE_MS`` (10 ms) to
  where it best continues the previous frame (maximum cross-correlation with the input that naturally
  followed it), so periods line up and no phase jumps are heard.
* It streams: each call returns the samples that no later frame can change. The result does not depend
  on how the input is chunked, and its length is exactly ``round(len(input) / speed)``.

Quality is good for speech between 0.5x and 2x (the usual range) and acceptable out to 0.25x / 4x.
"""

from __future__ import annotations

import logging

import numpy as np

from .audio import SAMPLE_RATE
from .vocab import MAX_STRETCH, MIN_STRETCH

_LOGGER = logging.getLogger(__name__)

FRAME_MS, TOLERANCE_MS = 30, 10


class TimeStretch:
    """``feed(pcm) -> pcm`` and ``finish() -> pcm``; int16 little-endian mono bytes in and out."""

    def __init__(self, speed: float, rate: int = SAMPLE_RATE) -> None:
        if not MIN_STRETCH <= speed <= MAX_STRETCH:
            raise ValueError(f"speed must be in {MIN_STRETCH}..{MAX_STRETCH}, got {speed}")
        self.speed = speed
        self.win = 2 * (rate * FRAME_MS // 2000)
        self.hop = self.win // 2
        self.tol = rate * TOLERANCE_MS // 1000
        n = np.arange(self.win)
        self.window = (0.5 - 0.5 * np.cos(2 * np.pi * n / self.win)).astype(np.float32)  # sums to 1 at hop
        # Input in "padded" coordinates: half a frame plus the tolerance of silence first, so frame 0 is
        # centred on the first sample and every search window stays inside the buffer.
        self.pad = self.hop + self.tol
        self.buf = np.zeros(self.pad, dtype=np.float32)
        self.base = 0  # padded index of buf[0]
        self.frames = 0  # output frames made so far
        self.prev = 0  # padded index where the previous frame was cut
        self.acc = np.zeros(self.win, dtype=np.float32)  # overlap-add of the current frame's span
        self.n_in = 0
        self.n_out = 0
        self.skip = self.hop  # the first half frame of output lies before the first sample

    def feed(self, pcm: bytes) -> bytes:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        self.n_in += samples.size
        self.buf = np.concatenate([self.buf, samples])
        return self._run(final=False)

    def finish(self) -> bytes:
        self.buf = np.concatenate([self.buf, np.zeros(self.win * 2 + 2 * self.tol, dtype=np.float32)])
        return self._run(final=True)

    def _run(self, final: bool) -> bytes:
        target = round(self.n_in / self.speed)
        out: list[np.ndarray] = []
        made = self.n_out
        end = self.base + self.buf.size
        while not final or made < target:
            k = self.frames
            nominal = int(round(k * self.hop * self.speed))  # padded index with zero shift = nominal + tol
            natural = self.prev + self.hop
            if max(nominal + 2 * self.tol + self.win, natural + self.win) > end:
                if not final:
                    break
                self.buf = np.concatenate([self.buf, np.zeros(self.win, dtype=np.float32)])  # the very end
                end += self.win
                continue
            if k == 0:
                start = nominal + self.tol
            else:
                template = self._slice(natural, self.win)
                region = self._slice(nominal, self.win + 2 * self.tol)
                start = nominal + int(np.argmax(np.correlate(region, template, mode="valid")))
            self.acc += self.window * self._slice(start, self.win)
            self.prev = start
            self.frames += 1
            done = self.acc[: self.hop].copy()
            self.acc[: self.hop] = self.acc[self.hop :]
            self.acc[self.hop :] = 0.0
            if self.skip:
                self.skip -= done.size
            else:
                out.append(done)
                made += done.size
            self._trim(min(nominal, self.prev))
        samples = np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
        if final:
            samples = samples[: max(0, target - self.n_out)]
        self.n_out += samples.size
        return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()

    def _slice(self, start: int, length: int) -> np.ndarray:
        return self.buf[start - self.base : start - self.base + length]

    def _trim(self, keep_from: int) -> None:
        """Drops input that no later frame can reach (frames only move forward)."""
        drop = keep_from - self.base
        if drop > 4 * self.win:
            self.buf = self.buf[drop:]
            self.base += drop


def stretch(pcm: bytes, speed: float, rate: int = SAMPLE_RATE) -> bytes:
    """The whole clip at once (tests, buffered responses)."""
    stretcher = TimeStretch(speed, rate)
    return stretcher.feed(pcm) + stretcher.finish()
