"""Batched step functions: prefill one request into its KV slot, then advance a batch of running
sequences by one frame per `decode_step` (code predictor -> frame embedding -> talker step -> codebook-0
sampling).

The runner only computes. The scheduler decides what a step does (`Batch`: which sequences, which of them
go on after this frame, whether the runaway guard's EOS bias applies) and reads what it made (`StepOutput`:
EOS, the frame bound, kept codes and emitting are its business, scheduler.py).

Rows of a decode batch are KV slots 0..B-1 (B = highest running slot + 1); idle rows in between compute
throwaway values so the shapes stay static. Per-slot state lives on the device (slots.py), written once at
admission; a step reads and advances it in place and synchronises with the host once, to read the frame's
codes (and the next codebook-0 token, for EOS) that it streams. Only the scheduler thread calls in here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..core.audio import FRAME_RATE, SAMPLE_RATE, SAMPLES_PER_FRAME  # noqa: F401 (re-exported)
from .config import ModelConfig
from .hooks import NO_HOOK, StepHook
from .jit import traced_decode
from .policy import ComputePlan
from .sampling import TalkerSampler, choose, warp_rows
from .sequence import Sequence
from .slots import SlotTable
from .talker import Talker

_LOGGER = logging.getLogger(__name__)


@dataclass
class Batch:
    """One decode step as the scheduler planned it."""

    seqs: list[Sequence]  # every running sequence: each makes one frame
    going_on: list[Sequence]  # those for which it is not the last (the bound): a talker step, a next token
    eos_bias: Optional[float] = None  # per frame past the expected length, when some row is past it

    @property
    def rows(self) -> int:
        return max(s.slot for s in self.seqs) + 1


@dataclass
class StepOutput:
    frames: torch.Tensor  # [rows, 16] the frame's codes, on the device (for the decoder)
    read: list[list[int]]  # per row, on the host: the 16 codes, then the next codebook-0 token if it went on


class ModelRunner:
    def __init__(self, cfg: ModelConfig, talker: Talker, plan: ComputePlan, slots: int, max_len: int) -> None:
        self.cfg = cfg
        self.talker = talker
        self.device, self.dtype = talker.device, talker.dtype
        self.slots = slots
        self.max_len = max_len
        self.cache = talker.model.new_cache(slots, max_len, self.dtype, self.device)
        # TorchScript-traced decode steps (engine/jit.py): the talker's here, the predictor's in its module.
        self.talker_step = traced_decode(talker.model, self.cache, enabled=plan.trace_talker)
        talker.code_predictor.trace = plan.trace_predictor
        codec = cfg.talker.codec
        self.eos = codec.eos
        vocab = cfg.talker.transformer.vocab_size
        self.sampler = TalkerSampler(vocab, codec.eos, self.device)
        self.table = SlotTable(slots, cfg.talker.transformer.hidden_size, vocab, self.dtype, self.device)
        self.hook: StepHook = NO_HOOK  # tests observe the numbers through it (hooks.py)

    def free(self, slot: int) -> None:
        """Slot `slot` back to neutral values (its sequence left)."""
        self.table.release(slot)

    # -- admission ---------------------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, seq: Sequence) -> None:
        """Runs the prompt through the talker into `seq.slot` and samples the first codebook-0 token (never
        EOS: at least two tokens are generated, so nothing is read back)."""
        assert seq.prompt is not None
        slot, prompt = seq.slot, seq.prompt
        self.hook.on_prefill(seq, prompt.prefill)
        self.table.admit(slot, prompt, seq.params, seq.expected_frames, seq.generator)
        x = prompt.prefill.to(self.device, self.dtype)[None]
        hidden = self.talker.model.prefill(x, self.cache, slot)
        last = hidden[:, -1]
        logits = self.talker.codec_head(last).float()
        t = self.table
        t.position[slot] = x.shape[1]
        t.past[slot] = last[0]
        token = self._sample(logits, slice(slot, slot + 1), [seq], None)
        t.token[slot : slot + 1] = token

    # -- one frame for every running row ------------------------------------------------------------------
    @torch.inference_mode()
    def decode_step(
        self, batch: Batch, on_frames: Optional[Callable[[torch.Tensor], None]] = None
    ) -> StepOutput:
        """One frame for every sequence of `batch`; a talker step and the next codebook-0 token for those
        that go on. The frame's codes (and next tokens) are read to the host once. `on_frames(frames)` runs
        between the code predictor and the talker step, with the frame's codes on the device (the scheduler
        decodes a stream's first chunk there: its audio does not wait for the next frame's talker step)."""
        rows = batch.rows
        t = self.table
        tokens = t.token[:rows].clone()
        positions = t.position[:rows]
        text = t.text_rows(rows)
        token_emb = self.talker.embed_codec(tokens)
        codes, cp_logits = self.talker.code_predictor.generate(
            t.past[:rows],
            token_emb,
            self._predictor_picker(rows),
            return_logits=self.hook.wants_predictor_logits,
        )
        self.hook.on_predictor_logits(batch.seqs, cp_logits)
        frames = torch.cat((tokens[:, None], codes), dim=1)  # [rows, 16]
        if on_frames is not None:
            on_frames(frames)
        live = t.live[:rows]
        t.frames[:rows] += live
        going_on = batch.going_on
        if not going_on:
            return StepOutput(frames, frames.tolist())
        x = self.talker.frame_embedding(tokens, codes) + text
        length = max(s.position for s in going_on) + 1
        hidden = self.talker_step(x[:, 0], positions, self.cache.span[:length])
        logits = self.talker.codec_head.mm(hidden).float()  # type: ignore[operator]  # a Projection
        t.position[:rows] += live
        t.past[:rows] = hidden.masked_fill(~live[:, None], 0)
        token = self._sample(logits, slice(0, rows), going_on, batch.eos_bias)
        t.token[:rows] = token.masked_fill(~live, 0)
        read = torch.cat((frames, token[:, None]), dim=1).tolist()  # the one read of the step
        return StepOutput(frames, read)

    # -- sampling -----------------------------------------------------------------------------------------
    def _sample(
        self, logits: torch.Tensor, rows: slice, seqs: list[Sequence], eos_bias: Optional[float]
    ) -> torch.Tensor:
        """Codebook-0 choice for table rows `rows` (logits [n, V]) of which `seqs` sample for real; updates
        their history on the device. `eos_bias`: per frame past the expected length (None: no row is)."""
        t = self.table
        n = rows.stop - rows.start
        self.hook.on_talker_logits(seqs, logits, rows.start)
        penalty = None
        if t.any_penalty(rows.stop):
            penalty = (t.penalty[rows], t.inv_penalty[rows])
        bias = None
        if eos_bias is not None:
            over = (t.frames[rows] - t.expected[rows]).clamp(min=0)
            bias = (over.double() * eos_bias).float()
        processed = self.sampler.process_rows(logits, t.seen[rows], t.generated[rows], penalty, bias)
        w = t.talker.rows(rows.stop) if rows.start == 0 else t.talker.row(rows.start)
        temperature, top_k, top_p = t.flags(rows.stop, predictor=False)
        warped = warp_rows(processed, w, temperature, top_k, top_p)
        token = choose(warped, t.sample[rows], t.generators[rows])
        live = t.live[rows]
        t.generated[rows] += live
        t.seen[rows].scatter_(1, token[:, None], live[:, None])
        assert token.shape[0] == n
        return token

    def _predictor_picker(self, rows: int):
        t = self.table
        sample, generators = t.sub_sample[:rows], t.generators[:rows]
        w = t.predictor.rows(rows)
        temperature, top_k, top_p = t.flags(rows, predictor=True)

        def pick(logits: torch.Tensor, group: int) -> torch.Tensor:
            return choose(warp_rows(logits, w, temperature, top_k, top_p), sample, generators)

        return pick
