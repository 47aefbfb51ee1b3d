"""The one worker thread that owns the device.

`step()` = schedule -> run -> postprocess, as nano-vllm's: admit waiting sequences into free KV slots
(prompt, frame bound, prefill) and plan one frame for every running one (`Batch`); the runner computes it;
then this module reads the outcome: kept codes, EOS, the frame bound, PCM from each request's exact
streaming decoder handed to its stream. Cancelled requests free their slot at the next step. A sequence's
`status` (sequence.py) says where it is; only this thread changes it.
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

import numpy as np
import torch

from ..core.slowdown import Slowdown
from .codec.decoder import SpeechDecoder
from .memory import trim_heap
from .prompt import PromptBuilder, VoicePrompt
from .request import ChunkPolicy  # noqa: F401 (its home before request.py)
from .request import RunawayGuard
from .runner import Batch, ModelRunner, StepOutput
from .sequence import Sequence, SequenceStatus
from .stream import EngineClosed, SpeechStream
from .threads import ThreadGovernor

_LOGGER = logging.getLogger(__name__)

IDLE_EXIT_S = 2.0
# Steps between two heap trims while requests run: freed activation blocks that glibc keeps in its thread
# arenas made a long request's RSS drift up by up to ~170 MB on 0.6B (bench/RESULTS.md, issue 24, memory
# round 3); a trim takes a few ms (~0.05 ms per frame at this interval).
TRIM_EVERY_STEPS = 32


class Scheduler:
    def __init__(
        self,
        runner: ModelRunner,
        builder: PromptBuilder,
        decoder: SpeechDecoder,
        guard: RunawayGuard = RunawayGuard(),
        governor: Optional[ThreadGovernor] = None,
    ) -> None:
        self.runner = runner
        self.guard = guard
        self.governor = governor  # fewer CPU threads while other processes hold the cores (threads.py)
        self.builder = builder
        self.decoder = decoder
        self._waiting: "collections.deque[Sequence]" = collections.deque()
        self._calls: "collections.deque[tuple[Callable[[], Any], concurrent.futures.Future]]" = (
            collections.deque()
        )
        self._running: list[Sequence] = []  # status RUNNING, each in its own slot
        self._cond = threading.Condition()
        self._closed = False
        self._ref_states: "collections.OrderedDict[int, tuple[Any, Any]]" = collections.OrderedDict()
        self._thread: Optional[threading.Thread] = None
        self.slowdown: Optional[Slowdown] = None  # --debug-slowdown: tests and the playback simulator
        self.steps = 0  # decode steps run (the heap is trimmed every TRIM_EVERY_STEPS)

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
        return len(self._running) + len(self._waiting)

    @property
    def running(self) -> list[Sequence]:
        return list(self._running)

    # -- worker ----------------------------------------------------------------------------------------------
    def _has_work(self) -> bool:
        return bool(self._waiting or self._calls or self._running)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._closed or self._has_work()):
                    if not self._cond.wait(IDLE_EXIT_S) and not self._has_work():
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
                self.step()
            except Exception as exc:  # a bug or device failure must not leave callers hanging
                _LOGGER.exception("engine step failed")
                for seq in list(self._running):
                    self._end(seq, exc)
        self._shutdown()

    def _shutdown(self) -> None:
        error = EngineClosed("engine closed")
        for seq in list(self._running) + list(self._waiting):
            self._end(seq, error)
        self._waiting.clear()
        for _, future in self._calls:
            future.cancel()

    # -- one step: schedule -> run -> postprocess ---------------------------------------------------------
    def step(self) -> None:
        """One frame for every running sequence (the worker thread only)."""
        self._admit()
        batch = self._schedule()
        if batch is None:
            return
        began = time.monotonic()
        # A stream whose first chunk is this one frame hears it before the talker step of the next frame
        # (issue 24: first audio); the same decoder calls in the same order, so the same audio.
        first = [
            s for s in batch.seqs if s.emitted_frames == 0 and not s.pending and s.policy.first_frames == 1
        ]
        emitted: set[int] = set()
        slept = [0.0]

        def first_chunks(frames: torch.Tensor) -> None:
            if self.slowdown is not None:  # the emulated slower host has made these codes only now
                slept[0] = self.slowdown.delay(time.monotonic() - began)
                time.sleep(slept[0])
            for seq in first:
                seq.pending.append(frames[seq.slot])
                self._emit(seq)
                emitted.add(seq.slot)

        out = self.runner.decode_step(batch, first_chunks if first else None)
        if self.slowdown is not None:
            computed = time.monotonic() - began - slept[0]
            time.sleep(max(0.0, self.slowdown.delay(computed) - slept[0]))
        self._postprocess(batch, out, emitted)
        self.steps += 1
        if self.steps % TRIM_EVERY_STEPS == 0:
            trim_heap()

    def _admit(self) -> None:
        """WAITING -> RUNNING while a slot is free: prompt, frame bound, decoder state, prefill."""
        while True:
            with self._cond:
                if not self._waiting:
                    return
                slot = self._free_slot()
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
                self._bound(seq)
                seq.stream.max_frames = seq.max_frames
                seq.decoder_state = self._start_decoder(r.voice, prompt.ref_codes)
                seq.slot, seq.status, seq.position = slot, SequenceStatus.RUNNING, prompt.prefill.shape[0]
                self._running.append(seq)
                self.runner.prefill(seq)
                seq.stream.prefilled_at = time.monotonic()
            except Exception as exc:
                self._end(seq, exc)

    def _free_slot(self) -> Optional[int]:
        taken = {s.slot for s in self._running}
        return next((i for i in range(self.runner.slots) if i not in taken), None)

    def _bound(self, seq: Sequence) -> None:
        """The sequence's frame bound, the guard's expected length and its generator, from its prompt and
        parameters."""
        assert seq.prompt is not None
        params, guard = seq.params, self.guard
        length = seq.prompt.prefill.shape[0]
        room = self.runner.max_len - length
        if room < 2:
            raise ValueError(
                f"prompt of {length} tokens does not fit the KV cache of {self.runner.max_len} tokens"
            )
        assert params.max_new_tokens is not None
        limit = guard.max_frames(seq.prompt.text_tokens, params.max_new_tokens)
        if seq.request.max_frames is not None:
            limit = min(limit, seq.request.max_frames)
        seq.max_frames = max(1, min(limit, room - 1))
        seq.expected_frames = guard.expected_frames(seq.prompt.text_tokens) if guard.enabled else 1 << 40
        if params.do_sample or params.subtalker_do_sample:
            generator = torch.Generator(device=self.runner.device)
            if params.seed is not None:
                generator.manual_seed(int(params.seed))
            else:
                generator.seed()
            seq.generator = generator

    def _schedule(self) -> Optional[Batch]:
        """Cancelled sequences leave; every running one makes a frame, those below their bound go on."""
        for seq in [s for s in self._running if s.cancelled]:
            self._end(seq, cancelled=True)
        if not self._running:
            return None
        seqs = list(self._running)
        going_on = [s for s in seqs if s.frames + 1 < s.max_frames]
        eos_bias = None
        if self.guard.enabled and any(s.frames + 1 > s.expected_frames for s in seqs):
            eos_bias = self.guard.eos_bias_per_frame
        return Batch(seqs, going_on, eos_bias)

    def _postprocess(self, batch: Batch, out: StepOutput, emitted: set[int]) -> None:
        """The step's outcome per sequence: kept codes, then the frame bound or EOS ends it; else its next
        KV position, and PCM once enough frames wait (`emitted`: slots whose frame was decoded already)."""
        for seq in batch.seqs:
            row = out.read[seq.slot]
            seq.frames += 1
            if seq.keep:
                seq.codes.append(np.asarray(row[:16], dtype=np.int64))
            if seq.slot not in emitted:
                seq.pending.append(out.frames[seq.slot])
            if seq.frames >= seq.max_frames:  # the bound: its last frame (no talker step was taken)
                seq.truncated = True
                self._end(seq)
            elif row[16] == self.runner.eos:
                self._end(seq)
            else:
                seq.position += 1
                need = seq.policy.first_frames if seq.emitted_frames == 0 else seq.policy.frames
                if len(seq.pending) >= need:
                    self._emit(seq)

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

    def _emit(self, seq: Sequence) -> None:
        if not seq.pending:
            return
        codes = torch.stack(seq.pending, dim=1)[None].to(self.decoder_device)  # [1, 16, n]
        seq.emitted_frames += len(seq.pending)
        seq.pending = []
        wave = self.decoder.step(codes, seq.decoder_state, check=False)[0]
        seq.stream.push(wave.float().cpu().numpy())

    def _end(self, seq: Sequence, error: Optional[BaseException] = None, cancelled: bool = False) -> None:
        """-> FINISHED: the tail of its audio (unless it failed or was cancelled), its slot freed."""
        if seq.running:
            if error is None and not cancelled:
                try:
                    self._emit(seq)
                except Exception as exc:  # decoder failure on the tail
                    error = exc
            self.runner.free(seq.slot)
            self._running.remove(seq)
        seq.finish(error, cancelled=cancelled)
