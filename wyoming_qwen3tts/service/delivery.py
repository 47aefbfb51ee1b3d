"""How a reply is delivered, the same for both front doors: speaking rate, pauses between sentences, text
normalization, the sampling seed, and the audio's chunk sizes.

* Speed: the voice's own speed (voice library, ``voices add/set/style --speed``) else the server's
  ``--speed``, times the request's own ``speed`` (HTTP); the product (within the stretcher's 0.25-4 range)
  is applied to the streamed PCM with the pitch-preserving WSOLA stretcher (core/tempo.py), one
  stretcher over the whole reply, so sentence joins are seamless and streaming is kept (the stretcher holds
  back only ~40 ms). One pass: never a second stretcher after this one.
* ``--sentence-silence``: that many seconds of silence between the sentences of a reply (not after the
  last one), fed through the stretcher at ``seconds * speed`` so it comes out exactly that long.
* Blocks: the Wyoming door wants every audio-chunk event ``--samples-per-chunk`` long whatever the speed;
  :class:`PcmShaper` re-blocks the output (only the last chunk of a reply is shorter).
* ``--prebuffer``: audio held back per segment so that a host slower than real time pauses between
  phrases, never inside them (pacing.py, release.py); ``--max-silence`` bounds each such pause.
* Seed: one seed per request, reused for every sentence of the reply (see docs/architecture.md, "One voice
  per reply"): ``--seed N`` makes every request reproducible, else a fresh random seed per request.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Optional, Union

from ..core.audio import SAMPLE_RATE, SAMPLE_WIDTH
from ..core.tempo import TimeStretch
from ..core.vocab import MAX_STRETCH, MIN_STRETCH


@dataclass(frozen=True)
class Delivery:
    """The server-wide delivery settings (from Settings; defaults: no change to the audio)."""

    speed: float = 1.0
    sentence_silence: float = 0.0  # seconds between the sentences of one reply
    normalize: bool = True  # numbers, units, dates ... to words when the language is known
    seed: Optional[int] = None  # None: a random seed per request (still one seed for all its sentences)
    prebuffer: Union[str, float] = "auto"  # "auto" | "off" | seconds: playback pacing (pacing.py)
    max_silence: float = 3.0  # seconds a listener may wait in silence for a held-back segment

    @classmethod
    def of(cls, settings: Any) -> "Delivery":
        return cls(
            speed=settings.speed,
            sentence_silence=settings.sentence_silence,
            normalize=settings.normalize,
            seed=settings.seed,
            prebuffer=settings.prebuffer,
            max_silence=settings.max_silence,
        )

    def speed_of(self, voice_speed: Optional[float], request_speed: float = 1.0) -> float:
        """A reply's one speed: the voice's (else the server's) times the request's, within the stretcher's
        range (two stretchers in a row would cost two passes and blur the sound)."""
        return max(MIN_STRETCH, min(MAX_STRETCH, (voice_speed or self.speed) * request_speed))

    def request_seed(self) -> int:
        return self.seed if self.seed is not None else secrets.randbits(31)


class PcmShaper:
    """int16 PCM of consecutive sentences in; the reply's PCM out: stretched, with pauses between the
    sentences, in blocks of ``block`` bytes (None: as it comes). ``sentence()`` before each sentence,
    ``feed()`` its audio, ``finish()`` at the end; each returns the bytes ready to send."""

    def __init__(self, speed: float = 1.0, silence_s: float = 0.0, block: Optional[int] = None) -> None:
        self.speed = self.base_speed = speed
        self.stretcher = TimeStretch(speed) if speed != 1.0 else None
        self.gap = bytes(SAMPLE_WIDTH * int(round(silence_s * speed * SAMPLE_RATE)))
        self.block = block if block and block > 0 else None
        self.pending = b""
        self.sentences = 0

    def sentence(self, pause: Optional[float] = None, rate: float = 1.0) -> list[bytes]:
        """A new sentence starts: the pause after the previous one (nothing before the first). SSML
        (service/ssml.py): ``pause`` seconds replace that pause (a break, also before the first sentence);
        ``rate`` times the reply's speed from here on (a new stretcher, after flushing the old one)."""
        self.sentences += 1
        out: list[bytes] = []
        speed = max(MIN_STRETCH, min(MAX_STRETCH, self.base_speed * rate))  # SSML: voice x prosody
        if speed != self.speed:
            out += self._blocks(self.stretcher.finish() if self.stretcher is not None else b"", final=False)
            self.speed = speed
            self.stretcher = TimeStretch(speed) if speed != 1.0 else None
        if pause is not None:
            return out + self.feed(bytes(SAMPLE_WIDTH * int(round(pause * self.speed * SAMPLE_RATE))))
        if self.sentences == 1 or not self.gap:
            return out
        return out + self.feed(self.gap)

    def feed(self, pcm: bytes) -> list[bytes]:
        out = self.stretcher.feed(pcm) if self.stretcher is not None else pcm
        return self._blocks(out, final=False)

    def finish(self) -> list[bytes]:
        out = self.stretcher.finish() if self.stretcher is not None else b""
        return self._blocks(out, final=True)

    def _blocks(self, pcm: bytes, final: bool) -> list[bytes]:
        if self.block is None:
            return [pcm] if pcm else []
        data = self.pending + pcm
        cut = len(data) if final else len(data) - len(data) % self.block
        self.pending = data[cut:]
        blocks = [data[i : min(i + self.block, cut)] for i in range(0, cut, self.block)]
        return blocks
