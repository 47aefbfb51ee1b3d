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
import time
from typing import Any, Callable, Optional

import torch

from ..core.slowdown import Slowdown
from .codec.decoder import SpeechDecoder
from .memory import trim_heap
from .prompt import PromptBuilder, VoicePrompt
from .request import ChunkPolicy  # noqa: F401 (its home before request.py)
from .runner import ModelRunner
from .sequence import Sequence
from .stream import EngineClosed, SpeechStream
from .threads import ThreadGovernor

_LOGGER = logging.getLogger(__name__)

IDLE_EXIT_S = 2.0


class Scheduler:
    def __init__(
        self,
        runner: ModelRunner,
        builder: PromptBuilder,
        decoder: SpeechDecoder,
        governor: Optional[ThreadGovernor] = None,
    ) -> None:
        self.runner = runner
        self.governor = governor  # fewer CPU threads while other processes hold the cores (threads.py)
        self.builder = builder
        self.decoder = decoder
        self._waiting: "collections.deque[Sequence]" = collections.deque()
        self._calls: "collections.deque[tuple[Callable[[], Any], concurrent.futures.Future]]" = (
            collections.deque()
        )
        self._seqs: list[Sequence] = []
        self._cond = threading.Condition()
        self._closed = False
        self._ref_states: "collections.OrderedDict[int, tuple[Any, Any]]" = collections.OrderedDict()
        self._thread: Optional[threading.Thread] = None
        self.slowdown: Optional[Slowdown] = None  # --debug-slowdown: tests and the playback simulator

    # -- API used by Engine (any thread) -------------------------------------------------------------------
    def submit(self, seq: Sequence) -> SpeechStream:
        with self._cond:
            if self._closed:
                raise EngineClosed("engine is closed")
            self._waiting.append(seq)
            self._wake()
        return seq.stream

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
        return len(self._seqs) + len(self._waiting)

    # -- worker ----------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._closed or self._waiting or self._calls or self._seqs):
                    if not self._cond.wait(IDLE_EXIT_S) and not (self._waiting or self._calls or self._seqs):
                        self._thread = None  # idle: end, freeing this thread's OpenMP pool (see above)
                        if self.governor is not None:
                            self.governor.reset()
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
                if self.governor is not None:
                    self.governor.tick()
                self._admit()
                self._step()
            except Exception as exc:  # a bug or device failure must not leave callers hanging
                _LOGGER.exception("engine step failed")
                for seq in list(self._seqs):
                    self._end(seq, exc)
        self._shutdown()

    def _shutdown(self) -> None:
        error = EngineClosed("engine closed")
        for seq in list(self._seqs) + list(self._waiting):
            self._end(seq, error)
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
                seq = self._waiting.popleft()
            if seq.cancelled:
                seq.finish(cancelled=True)
                continue
            try:
                r = seq.request
                prompt = self.builder.build(
                    r.text, r.language, r.speaker, r.instruct, r.voice, r.non_streaming_text
                )
                seq.prompt = prompt
                self.runner.bound(seq)
                seq.stream.max_frames = seq.max_frames
                if r.record:
                    seq.record = {"prefill": prompt.prefill.float().cpu()}
                seq.decoder_state = self._start_decoder(r.voice, prompt.ref_codes)
                self._seqs.append(seq)
                self.runner.prefill(seq, slot)
                seq.stream.prefilled_at = time.monotonic()
            except Exception as exc:
                self._end(seq, exc)
                continue
            if seq.finished:  # EOS cannot come first (min 2 tokens), but stay safe
                self._end(seq)

    def _start_decoder(self, voice: Optional[VoicePrompt], ref_codes: Optional[torch.Tensor]) -> Any:
        """A fresh decoder state; for ICL, the state after decoding the reference codes (cached per voice,
        since the same voice always yields the same state). The reference's own audio is never emitted:
        a stream starts with the first generated frame, streamed or whole alike."""
        if ref_codes is None:
            return self.decoder.new_state(1)
        key = id(voice)
        cached = self._ref_states.get(key)
        if cached is None or cached[0] is not voice:
            state = self.decoder.new_state(1)
            self.decoder.step(ref_codes.T[None].to(self.decoder_device), state)
            cached = (voice, state)
            self._ref_states[key] = cached
            while len(self._ref_states) > 8:
                self._ref_states.popitem(last=False)
        self._ref_states.move_to_end(key)
        return cached[1].clone()

    @property
    def decoder_device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    def _step(self) -> None:
        for seq in [s for s in self._seqs if s.cancelled]:
            self._end(seq, cancelled=True)
        if not self._seqs:
            return
        began = time.monotonic()
        made = self.runner.decode_step()
        if self.slowdown is not None:
            time.sleep(self.slowdown.delay(time.monotonic() - began))
        for seq, frame in made:
            seq.pending.append(frame)
            need = seq.policy.first_frames if seq.emitted_frames == 0 else seq.policy.frames
            if len(seq.pending) >= need and not seq.finished:
                self._emit(seq)
        for seq in [s for s in self._seqs if s.finished]:
            self._end(seq)

    def _emit(self, seq: Sequence) -> None:
        if not seq.pending:
            return
        codes = torch.stack(seq.pending, dim=1)[None].to(self.decoder_device)  # [1, 16, n]
        seq.emitted_frames += len(seq.pending)
        seq.pending = []
        wave = self.decoder.step(codes, seq.decoder_state, check=False)[0]
        seq.stream.push(wave.float().cpu().numpy())

    def _end(self, seq: Sequence, error: Optional[BaseException] = None, cancelled: bool = False) -> None:
        if seq.slot >= 0 or seq in self._seqs:
            if error is None and not cancelled:
                try:
                    self._emit(seq)
                except Exception as exc:  # decoder failure on the tail
                    error = exc
            self.runner.release(seq)
        if seq in self._seqs:
            self._seqs.remove(seq)
        seq.finish(error, cancelled=cancelled)
