"""Batched step functions: prefill one request into its KV slot, then advance every active slot by one
frame per `decode_step` (code predictor -> frame embedding -> talker step -> codebook-0 sampling).

Rows of a decode batch are KV slots 0..B-1 (B = highest active slot + 1); idle rows in between compute
throwaway values so the shapes stay static. Per-slot state lives on the device (slots.py), written once at
admission; a step reads and advances it in place and synchronises with the host once, to read the frame's
codes (and the next codebook-0 token, for EOS) that it streams. Only the scheduler thread calls in here.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..core.audio import FRAME_RATE, SAMPLE_RATE, SAMPLES_PER_FRAME  # noqa: F401 (re-exported)
from .config import ModelConfig
from .jit import traced_decode
from .sampling import TalkerSampler, choose, warp_rows
from .sequence import Sequence
from .slots import SlotTable
from .talker import Talker

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunawayGuard:
    """Stops generations that never say EOS (a top complaint about Qwen3-TTS).

    expected frames = frames_per_token * text tokens + slack_frames. Past that, the EOS logit gets a bias
    that grows by `eos_bias_per_frame` each frame; at hard_factor * expected frames (at most the caller's
    max_new_tokens - 1) the result is cut and flagged `truncated`. The bias only acts past the expected
    length, so normal-length outputs are exactly the reference's.
    """

    frames_per_token: float = 6.0
    slack_frames: int = 25
    eos_bias_per_frame: float = 0.1
    hard_factor: float = 2.5
    enabled: bool = True

    def expected_frames(self, text_tokens: int) -> int:
        return int(math.ceil(self.frames_per_token * max(text_tokens, 1))) + self.slack_frames

    def max_frames(self, text_tokens: int, max_new_tokens: int) -> int:
        limit = max_new_tokens - 1  # N sampled tokens give N - 1 frames
        if not self.enabled:
            return limit
        return min(limit, int(self.hard_factor * self.expected_frames(text_tokens)))

    def eos_bias(self, frames: int, text_tokens: int) -> float:
        if not self.enabled:
            return 0.0
        over = frames - self.expected_frames(text_tokens)
        return self.eos_bias_per_frame * over if over > 0 else 0.0


class ModelRunner:
    def __init__(
        self,
        cfg: ModelConfig,
        talker: Talker,
        slots: int,
        max_len: int,
        guard: RunawayGuard = RunawayGuard(),
        trace: bool = False,
    ) -> None:
        self.cfg = cfg
        self.talker = talker
        self.device, self.dtype = talker.device, talker.dtype
        self.slots = slots
        self.max_len = max_len
        self.guard = guard
        self.cache = talker.model.new_cache(slots, max_len, self.dtype, self.device)
        # TorchScript-traced decode steps (engine/jit.py): the talker's here, the predictor's in its module.
        self.talker_step = traced_decode(talker.model, self.cache, enabled=trace)
        talker.code_predictor.trace = trace
        codec = cfg.talker.codec
        self.eos = codec.eos
        vocab = cfg.talker.transformer.vocab_size
        self.sampler = TalkerSampler(vocab, codec.eos, self.device)
        self.table = SlotTable(slots, cfg.talker.transformer.hidden_size, vocab, self.dtype, self.device)
        self.rows: list[Optional[Sequence]] = [None] * slots

    # -- slots -----------------------------------------------------------------------------------------
    def free_slot(self) -> Optional[int]:
        for i, row in enumerate(self.rows):
            if row is None:
                return i
        return None

    def release(self, seq: Sequence) -> None:
        if 0 <= seq.slot < self.slots and self.rows[seq.slot] is seq:
            self.rows[seq.slot] = None
            self.table.release(seq.slot)
        seq.slot = -1

    @property
    def active(self) -> list[Sequence]:
        return [s for s in self.rows if s is not None and not s.finished]

    # -- admission ---------------------------------------------------------------------------------------
    def bound(self, seq: Sequence) -> None:
        """Sets the sequence's frame bound and generator from its prompt and parameters."""
        assert seq.prompt is not None
        params = seq.params
        length = seq.prompt.prefill.shape[0]
        room = self.max_len - length
        if room < 2:
            raise ValueError(f"prompt of {length} tokens does not fit the KV cache of {self.max_len} tokens")
        assert params.max_new_tokens is not None
        limit = self.guard.max_frames(seq.prompt.text_tokens, params.max_new_tokens)
        if seq.request.max_frames is not None:
            limit = min(limit, seq.request.max_frames)
        seq.max_frames = max(1, min(limit, room - 1))
        if params.do_sample or params.subtalker_do_sample:
            generator = torch.Generator(device=self.device)
            if params.seed is not None:
                generator.manual_seed(int(params.seed))
            else:
                generator.seed()
            seq.generator = generator

    @torch.inference_mode()
    def prefill(self, seq: Sequence, slot: int) -> None:
        """Runs the prompt through the talker into `slot` and samples the first codebook-0 token (never EOS:
        at least two tokens are generated, so nothing is read back)."""
        assert self.rows[slot] is None and seq.prompt is not None
        seq.slot = slot
        self.rows[slot] = seq
        prompt = seq.prompt
        expected = self.guard.expected_frames(prompt.text_tokens) if self.guard.enabled else 1 << 40
        self.table.admit(slot, prompt, seq.params, expected, seq.generator)
        x = prompt.prefill.to(self.device, self.dtype)[None]
        hidden = self.talker.model.prefill(x, self.cache, slot)
        last = hidden[:, -1]
        logits = self.talker.codec_head(last).float()
        seq.position = x.shape[1]
        t = self.table
        t.position[slot] = seq.position
        t.past[slot] = last[0]
        token = self._sample(logits, slice(slot, slot + 1), [seq] if seq.record is not None else [])
        t.token[slot : slot + 1] = token

    # -- one frame for every active row -------------------------------------------------------------------
    @torch.inference_mode()
    def decode_step(self) -> list[tuple[Sequence, torch.Tensor]]:
        """Advances every active sequence by one frame. Returns (sequence, codes[16] on the device) for each
        frame made; sequences that hit EOS or their bound are marked finished. The frame's codes are read
        to the host once, into `seq.codes` when the caller keeps them."""
        active = self.active
        if not active:
            return []
        rows = max(s.slot for s in active) + 1
        t = self.table
        tokens = t.token[:rows].clone()
        positions = t.position[:rows]
        text = t.text_rows(rows)
        token_emb = self.talker.embed_codec(tokens)
        recording = [s for s in active if s.record is not None]
        codes, cp_logits = self.talker.code_predictor.generate(
            t.past[:rows], token_emb, self._predictor_picker(rows), return_logits=bool(recording)
        )
        frames = torch.cat((tokens[:, None], codes), dim=1)  # [rows, 16]
        for s in active:
            s.frames += 1
            if s.record is not None and cp_logits is not None:
                s.record.setdefault("cp_logits", []).append(cp_logits[s.slot].cpu())
            if s.frames >= s.max_frames:
                # The bound: this frame is the last one; its talker step would only feed a dropped token.
                s.finished = True
                s.truncated = True
        still = [s for s in active if not s.finished]
        live = t.live[:rows]
        t.frames[:rows] += live
        if still:
            x = self.talker.frame_embedding(tokens, codes) + text
            length = max(s.position for s in still) + 1
            hidden = self.talker_step(x[:, 0], positions, self.cache.span[:length])
            logits = self.talker.codec_head.mm(hidden).float()  # type: ignore[operator]  # a Projection
            for s in still:
                s.position += 1
            t.position[:rows] += live
            t.past[:rows] = hidden.masked_fill(~live[:, None], 0)
            token = self._sample(logits, slice(0, rows), [s for s in still if s.record is not None])
            t.token[:rows] = token.masked_fill(~live, 0)
            read = torch.cat((frames, token[:, None]), dim=1).tolist()  # the one read of the step
        else:
            read = frames.tolist()
        made = []
        for s in active:
            row = read[s.slot]
            if s.keep:
                s.codes.append(np.asarray(row[:16], dtype=np.int64))
            if not s.finished and row[16] == self.eos:
                s.finished = True
            made.append((s, frames[s.slot]))
        return made

    # -- sampling -----------------------------------------------------------------------------------------
    def _sample(self, logits: torch.Tensor, rows: slice, recording: list[Sequence]) -> torch.Tensor:
        """Codebook-0 choice for table rows `rows` (logits [n, V]); updates their history on the device."""
        t = self.table
        n = rows.stop - rows.start
        for s in recording:
            assert s.record is not None
            s.record.setdefault("talker_logits", []).append(logits[s.slot - rows.start].cpu())
        penalty = None
        if t.any_penalty(rows.stop):
            penalty = (t.penalty[rows], t.inv_penalty[rows])
        bias = None
        guard = self.guard
        if guard.enabled and any(s is not None and s.frames > t_exp for s, t_exp in self._expected(rows)):
            over = (t.frames[rows] - t.expected[rows]).clamp(min=0)
            bias = (over.double() * guard.eos_bias_per_frame).float()
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

    def _expected(self, rows: slice) -> list[tuple[Optional[Sequence], int]]:
        """(sequence, expected frames) per row, from host knowledge (the guard's formula)."""
        out: list[tuple[Optional[Sequence], int]] = []
        for s in self.rows[rows]:
            if s is None or s.prompt is None:
                out.append((None, 0))
            else:
                out.append((s, self.guard.expected_frames(s.prompt.text_tokens)))
        return out

    def _predictor_picker(self, rows: int):
        t = self.table
        sample, generators = t.sub_sample[:rows], t.generators[:rows]
        w = t.predictor.rows(rows)
        temperature, top_k, top_p = t.flags(rows, predictor=True)

        def pick(logits: torch.Tensor, group: int) -> torch.Tensor:
            return choose(warp_rows(logits, w, temperature, top_k, top_p), sample, generators)

        return pick
