"""One object per request inside the engine (nano-vllm's `Sequence`): the request, its status and KV slot,
its generation counters, its decoder state and its outcome, from `Engine.submit` to the end of its stream.

`status` is the one answer to "is it running": WAITING (queued, no slot) -> RUNNING (holds `slot`,
prefilled, makes one frame per step) -> FINISHED (EOS, frame bound, cancelled or failed; slot free again).
Only the scheduler thread changes it (scheduler.py); the device keeps a mirror of RUNNING per slot
(`SlotTable.live`, written at admission and release only) so that a step masks idle rows without the host.

Only the scheduler thread touches a sequence after submit. Its per-slot *device* state (last token,
position, penalty history, sampling columns) lives in the runner's `SlotTable`, set once at admission; the
host keeps the counters it can know without asking the device (frames made, KV position).
Codes are kept only when the caller asked for the whole utterance (`keep`), audio only in the stream.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from .prompt import Prompt
from .request import ChunkPolicy, SpeechRequest
from .sampling import SamplingParams
from .stream import SpeechStream


class SequenceStatus(enum.Enum):
    WAITING = "waiting"  # submitted, queued for a free KV slot
    RUNNING = "running"  # holds `slot`: prefilled, makes one frame per step
    FINISHED = "finished"  # outcome handed to the stream; the slot is free again


@dataclass(eq=False)
class Sequence:
    request: SpeechRequest
    params: SamplingParams  # resolved against the model's generation defaults
    policy: ChunkPolicy
    stream: SpeechStream
    keep: bool = False  # keep the codes for result()
    status: SequenceStatus = SequenceStatus.WAITING
    # -- generation (set at admission) ---------------------------------------------------------------
    prompt: Optional[Prompt] = None
    max_frames: int = 0  # the runaway guard's bound, the caller's max_frames and the KV room
    expected_frames: int = 0  # the runaway guard's expected length (EOS bias past it)
    slot: int = 0  # KV slot and batch row, while RUNNING
    position: int = 0  # next KV write index (host copy of the device column, for the attention span)
    frames: int = 0  # frames made
    truncated: bool = False  # cut at max_frames
    generator: Optional[torch.Generator] = None
    # -- streaming decode ----------------------------------------------------------------------------
    decoder_state: Any = None
    pending: list[torch.Tensor] = field(default_factory=list)  # frames [16] on the device, not yet decoded
    emitted_frames: int = 0
    # -- outcome -------------------------------------------------------------------------------------
    codes: list[np.ndarray] = field(default_factory=list)  # [16] per frame, only when `keep`

    @property
    def running(self) -> bool:
        return self.status is SequenceStatus.RUNNING

    @property
    def cancelled(self) -> bool:
        return self.stream.cancelled

    def finish(self, error: Optional[BaseException] = None, cancelled: bool = False) -> None:
        """Hands the outcome to the caller's stream (the stream never reads the sequence)."""
        self.status = SequenceStatus.FINISHED
        codes = None
        if self.keep:
            codes = np.stack(self.codes) if self.codes else np.zeros((0, 16), dtype=np.int64)
        self.stream.finish(error, cancelled=cancelled, truncated=self.truncated, codes=codes)
