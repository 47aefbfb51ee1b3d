"""What a caller holds while its speech is generated: a stream of PCM chunks, usable from threads
(`for chunk in stream`) and from asyncio (`async for chunk in stream`), with `cancel()` and `result()`.

The scheduler thread is the only producer; it never blocks on a consumer.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..core.audio import SAMPLE_RATE
from .audio import to_pcm16


@dataclass(frozen=True)
class AudioChunk:
    """24 kHz mono float32 samples in [-1, 1]; `pcm` gives the int16 little-endian bytes."""

    samples: np.ndarray
    sample_rate: int = SAMPLE_RATE
    made: float = field(default_factory=time.monotonic)  # when the engine pushed it (generation speed)

    @property
    def pcm(self) -> bytes:
        return to_pcm16(self.samples)

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass
class SpeechResult:
    audio: np.ndarray  # float32, 24 kHz mono
    codes: np.ndarray  # [frames, 16] int64 (generated frames only, without reference codes)
    truncated: bool  # hit the runaway guard / max-frames bound
    sample_rate: int = SAMPLE_RATE
    time_to_first_audio: Optional[float] = None
    elapsed: float = 0.0

    @property
    def pcm(self) -> bytes:
        return to_pcm16(self.audio)

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


class EngineClosed(RuntimeError):
    pass


class Cancelled(RuntimeError):
    pass


_END = object()


@dataclass
class _Outcome:
    """What the scheduler hands over when the request ends (`SpeechStream.finish`)."""

    error: Optional[BaseException] = None
    cancelled: bool = False
    truncated: bool = False
    codes: Optional[np.ndarray] = None  # only when the whole utterance was asked for


class SpeechStream:
    """`keep`: also keep every chunk (and the engine the codes) for `result()`; a server that only streams
    leaves it off and holds no audio beyond the chunks in flight."""

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self._queue: "queue.Queue[object]" = queue.Queue()
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._aqueue: Optional[asyncio.Queue] = None
        self._cancel = threading.Event()
        self._done = threading.Event()
        self.outcome = _Outcome()
        self.started = time.monotonic()
        self.first_audio_at: Optional[float] = None
        self.finished_at: Optional[float] = None
        self.max_frames: Optional[int] = None  # the frame bound, set at admission (playback pacing)
        self.prefilled_at: Optional[float] = None  # its first frame is generated from here on
        self.made_s = 0.0  # seconds of audio pushed so far (playback pacing looks ahead with it)
        self._chunks: list[np.ndarray] = []

    # -- producer side (scheduler thread) ----------------------------------------------------------------
    def _put(self, item: object) -> None:
        with self._lock:
            if self._loop is not None and self._aqueue is not None:
                self._loop.call_soon_threadsafe(self._aqueue.put_nowait, item)
            else:
                self._queue.put(item)

    def push(self, samples: np.ndarray) -> None:
        if len(samples) == 0:
            return
        if self.first_audio_at is None:
            self.first_audio_at = time.monotonic()
        self.made_s += len(samples) / SAMPLE_RATE
        if self.keep:
            self._chunks.append(samples)
        self._put(AudioChunk(samples))

    def finish(
        self,
        error: Optional[BaseException] = None,
        *,
        cancelled: bool = False,
        truncated: bool = False,
        codes: Optional[np.ndarray] = None,
    ) -> None:
        if self._done.is_set():
            return
        self.outcome = _Outcome(error, cancelled, truncated, codes)
        self.finished_at = time.monotonic()
        self._done.set()
        self._put(_END)

    # -- consumer side -------------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stops generation: the slot is freed at the next step, iteration ends, result() raises Cancelled."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _unwrap(self, item: object):
        if item is _END:
            if self.outcome.error is not None:
                raise self.outcome.error
            return None
        return item

    def __iter__(self):
        while True:
            chunk = self._unwrap(self._queue.get())
            if chunk is None:
                return
            yield chunk

    def __aiter__(self):
        return self._aiter()

    async def _aiter(self):
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
                self._aqueue = asyncio.Queue()
                while not self._queue.empty():  # items produced before we switched to asyncio
                    self._aqueue.put_nowait(self._queue.get_nowait())
        while True:
            chunk = self._unwrap(await self._aqueue.get())
            if chunk is None:
                return
            yield chunk

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._done.wait(timeout)

    def result(self, timeout: Optional[float] = None) -> SpeechResult:
        """Blocks until the request ends; returns the whole utterance (submitted with keep=True, as
        `Engine.synthesize` does). The audio is exactly the chunks streamed, concatenated; for in-context
        cloning it starts right after the reference's 1920 samples per reference frame."""
        if not self._done.wait(timeout):
            raise TimeoutError("speech not finished in time")
        if self.outcome.error is not None:
            raise self.outcome.error
        if self.outcome.cancelled:
            raise Cancelled("speech request was cancelled")
        if not self.keep:
            raise RuntimeError("result() needs the whole utterance: submit the request with keep=True")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)
        out = self.outcome
        codes = out.codes if out.codes is not None else np.zeros((0, 16), dtype=np.int64)
        ttfa = None if self.first_audio_at is None else self.first_audio_at - self.started
        return SpeechResult(
            audio=audio.astype(np.float32, copy=False),
            codes=codes,
            truncated=out.truncated,
            time_to_first_audio=ttfa,
            elapsed=(self.finished_at or time.monotonic()) - self.started,
        )
