"""The one worker thread that owns the device.

Loop: admit waiting requests into free KV slots (prompt embedding + prefill), advance every active slot
by one frame in a single batched step, turn finished frames into PCM with each request's exact streaming
decoder, and hand chunks to the request's stream. Cancelled requests free their slot at the next step.
Other device work (voice-prompt extraction) runs on the same thread between steps via `call()`.

The thread ends after `IDLE_EXIT_S` without work and is started again by the next request. Why: every
thread that runs multi-threaded PyTorch CPU ops keeps its own OpenMP thread pool while it lives, and as
soon as a process holds more OpenMP threads than cores, libgomp stops spinning between parallel regions
(throttled mode) and every GEMV pays a thread wake-up: measured here, a second idle engine thread made the
active one 2x slower. An idle engine (a second model in memory) therefore must not keep a live thread.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from .codec.decoder import SpeechDecoder
from .memory import trim_heap
from .prompt import PromptBuilder, VoicePrompt
from .runner import SAMPLES_PER_FRAME, ModelRunner, Sequence
from .sampling import SamplingParams
from .stream import EngineClosed, SpeechStream

_LOGGER = logging.getLogger(__name__)

IDLE_EXIT_S = 2.0


@dataclass(frozen=True)
class ChunkPolicy:
    """How many frames (80 ms each) go into each PCM chunk: a small first chunk for a low time to first
    audio, then larger ones (fewer, cheaper decoder calls). The decode is exact whatever the sizes."""

    first_frames: int = 1
    frames: int = 4

    def __post_init__(self) -> None:
        if self.first_frames < 1 or self.frames < 1:
            raise ValueError("chunk sizes must be at least one frame")


@dataclass
class _Job:
    """A request between submit() and its end."""

    stream: SpeechStream
    text: str
    language: Optional[str]
    speaker: Optional[str]
    instruct: Optional[str]
    voice: Optional[VoicePrompt]
    non_streaming: Optional[bool]
    params: SamplingParams
    policy: ChunkPolicy
    max_frames: Optional[int]
    record: bool
    seq: Optional[Sequence] = None
    decoder_state: Any = None
    pending: Optional[list] = None
    emitted_frames: int = 0


class Scheduler:
    def __init__(self, runner: ModelRunner, builder: PromptBuilder, decoder: SpeechDecoder) -> None:
        self.runner = runner
        self.builder = builder
        self.decoder = decoder
        self._waiting: "collections.deque[_Job]" = collections.deque()
        self._calls: "collections.deque[tuple[Callable[[], Any], concurrent.futures.Future]]" = (
            collections.deque()
        )
        self._jobs: list[_Job] = []
        self._cond = threading.Condition()
        self._closed = False
        self._ref_states: "collections.OrderedDict[int, tuple[Any, Any, np.ndarray]]" = (
            collections.OrderedDict()
        )
        self._thread: Optional[threading.Thread] = None

    # -- API used by Engine (any thread) -------------------------------------------------------------------
    def submit(self, job: _Job) -> SpeechStream:
        with self._cond:
            if self._closed:
                raise EngineClosed("engine is closed")
            self._waiting.append(job)
            self._wake()
        return job.stream

    def _wake(self) -> None:
        """Under the lock: notify the worker, starting it if it is not running."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="qwen3tts-engine", daemon=True)
            self._thread.start()
        self._cond.notify()

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        """Runs fn on the device thread between steps."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            if self._closed:
                raise EngineClosed("engine is closed")
            self._calls.append((fn, future))
            self._wake()
        return future

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is None:
            self._shutdown()
        elif threading.current_thread() is not thread:
            thread.join(timeout)

    @property
    def busy(self) -> int:
        return len(self._jobs) + len(self._waiting)

    # -- worker ----------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._closed or self._waiting or self._calls or self._jobs):
                    if not self._cond.wait(IDLE_EXIT_S) and not (self._waiting or self._calls or self._jobs):
                        self._thread = None  # idle: end, freeing this thread's OpenMP pool (see above)
                        trim_heap()
                        return
                if self._closed:
                    break
                calls = list(self._calls)
                self._calls.clear()
            for fn, future in calls:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as exc:  # handed to the caller
                        future.set_exception(exc)
            try:
                self._admit()
                self._step()
            except Exception as exc:  # a bug or device failure must not leave callers hanging
                _LOGGER.exception("engine step failed")
                for job in list(self._jobs):
                    self._end(job, exc)
        self._shutdown()

    def _shutdown(self) -> None:
        error = EngineClosed("engine closed")
        for job in list(self._jobs) + list(self._waiting):
            self._end(job, error)
        self._waiting.clear()
        for _, future in self._calls:
            future.cancel()

    def _admit(self) -> None:
        while True:
            with self._cond:
                if not self._waiting:
                    return
                slot = self.runner.free_slot()
                if slot is None:
                    return
                job = self._waiting.popleft()
            if job.stream.cancelled:
                job.stream.outcome.cancelled = True
                job.stream.finish()
                continue
            try:
                prompt = self.builder.build(
                    job.text, job.language, job.speaker, job.instruct, job.voice, job.non_streaming
                )
                job.seq = self.runner.new_sequence(prompt, job.params, job.max_frames)
                job.seq.user = job
                if job.record:
                    job.seq.record = {"prefill": prompt.prefill.float().cpu()}
                job.decoder_state = self._start_decoder(job, prompt.ref_codes)
                job.pending = []
                self._jobs.append(job)
                self.runner.prefill(job.seq, slot)
            except Exception as exc:
                self._end(job, exc)
                continue
            if job.seq.finished:  # EOS cannot come first (min 2 tokens), but stay safe
                self._end(job)

    def _start_decoder(self, job: _Job, ref_codes: Optional[torch.Tensor]):
        """A fresh decoder state; for ICL, the state after decoding the reference codes (cached per voice,
        since the same voice always yields the same state)."""
        if ref_codes is None:
            return self.decoder.new_state(1)
        key = id(job.voice)
        cached = self._ref_states.get(key)
        if cached is None or cached[0] is not job.voice:
            state = self.decoder.new_state(1)
            wave = self.decoder.step(ref_codes.T[None].to(self.decoder_device), state)[0]
            cached = (job.voice, state, wave[-SAMPLES_PER_FRAME:].float().cpu().numpy())
            self._ref_states[key] = cached
            while len(self._ref_states) > 8:
                self._ref_states.popitem(last=False)
        self._ref_states.move_to_end(key)
        job.stream.outcome.ref_frames = int(ref_codes.shape[0])
        job.stream.outcome.ref_tail = cached[2]
        return cached[1].clone()

    @property
    def decoder_device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    def _step(self) -> None:
        for job in [j for j in self._jobs if j.stream.cancelled]:
            job.stream.outcome.cancelled = True
            self._end(job)
        if not self._jobs:
            return
        for seq, frame in self.runner.decode_step():
            job = seq.user
            job.pending.append(frame)
            job.stream.outcome.codes.append(frame.cpu().numpy())
            need = job.policy.first_frames if job.emitted_frames == 0 else job.policy.frames
            if len(job.pending) >= need and not seq.finished:
                self._emit(job)
        for job in [j for j in self._jobs if j.seq.finished]:
            self._end(job)

    def _emit(self, job: _Job) -> None:
        if not job.pending:
            return
        codes = torch.stack(job.pending, dim=1)[None].to(self.decoder_device)  # [1, 16, n]
        job.emitted_frames += len(job.pending)
        job.pending = []
        wave = self.decoder.step(codes, job.decoder_state, check=False)[0]
        job.stream.push(wave.float().cpu().numpy())

    def _end(self, job: _Job, error: Optional[BaseException] = None) -> None:
        if job.seq is not None:
            if error is None and not job.stream.outcome.cancelled:
                try:
                    self._emit(job)
                except Exception as exc:  # decoder failure on the tail
                    error = exc
                job.stream.outcome.truncated = job.seq.truncated
                job.stream.outcome.record = job.seq.record
            self.runner.release(job.seq)
        if job in self._jobs:
            self._jobs.remove(job)
        job.stream.finish(error)
