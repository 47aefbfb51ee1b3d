"""Batched step functions: prefill one request into its KV slot, then advance every active slot by one
frame per `decode_step` (code predictor -> frame embedding -> talker step -> codebook-0 sampling).

Rows of a decode batch are KV slots 0..B-1 (B = highest active slot + 1); idle rows in between compute
throwaway values so the shapes stay static. Only the scheduler thread calls into this module.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from .config import ModelConfig
from .jit import traced_decode
from .prompt import Prompt
from .sampling import SamplingParams, TalkerSampler, choose, warp
from .talker import Talker

_LOGGER = logging.getLogger(__name__)

SAMPLES_PER_FRAME = 1920
SAMPLE_RATE = 24000
FRAME_RATE = SAMPLE_RATE / SAMPLES_PER_FRAME  # 12.5 Hz


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


@dataclass
class Sequence:
    """Generation state of one request while it owns a KV slot."""

    prompt: Prompt
    params: SamplingParams  # resolved
    max_frames: int
    slot: int = -1
    position: int = 0  # next KV write index
    token: int = -1  # last sampled codebook-0 id, fed at the next step
    past_hidden: Optional[torch.Tensor] = None  # final-norm talker hidden that produced `token`
    frames: int = 0
    generated: int = 0  # sampled codebook-0 tokens
    finished: bool = False
    truncated: bool = False
    seen: Optional[torch.Tensor] = None  # [V] bool, codebook-0 history for the repetition penalty
    generator: Optional[torch.Generator] = None
    record: Optional[dict[str, list]] = None  # debugging/parity: logits per step when asked
    user: Any = field(default=None, repr=False)  # scheduler bookkeeping


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
        self.sampler = TalkerSampler(cfg.talker.transformer.vocab_size, codec.eos, self.device)
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
        seq.slot = -1

    @property
    def active(self) -> list[Sequence]:
        return [s for s in self.rows if s is not None and not s.finished]

    # -- prefill -----------------------------------------------------------------------------------------
    def new_sequence(
        self, prompt: Prompt, params: SamplingParams, max_frames: Optional[int] = None
    ) -> Sequence:
        length = prompt.prefill.shape[0]
        room = self.max_len - length
        if room < 2:
            raise ValueError(f"prompt of {length} tokens does not fit the KV cache of {self.max_len} tokens")
        limit = self.guard.max_frames(prompt.text_tokens, params.max_new_tokens)
        if max_frames is not None:
            limit = min(limit, max_frames)
        limit = max(1, min(limit, room - 1))
        generator = None
        if params.do_sample or params.subtalker_do_sample:
            generator = torch.Generator(device=self.device)
            if params.seed is not None:
                generator.manual_seed(int(params.seed))
            else:
                generator.seed()
        return Sequence(prompt=prompt, params=params, max_frames=limit, generator=generator)

    @torch.inference_mode()
    def prefill(self, seq: Sequence, slot: int) -> None:
        """Runs the prompt through the talker into `slot` and samples the first codebook-0 token."""
        assert self.rows[slot] is None
        seq.slot = slot
        self.rows[slot] = seq
        x = seq.prompt.prefill.to(self.device, self.dtype)[None]
        hidden = self.talker.model.prefill(x, self.cache, slot)
        last = hidden[:, -1]
        logits = self.talker.codec_head(last).float()
        seq.position = x.shape[1]
        seq.past_hidden = last[0]
        seq.seen = torch.zeros(logits.shape[-1], dtype=torch.bool, device=self.device)
        self._sample([seq], logits, [0])

    # -- one frame for every active row -------------------------------------------------------------------
    @torch.inference_mode()
    def decode_step(self) -> list[tuple[Sequence, torch.Tensor]]:
        """Advances every active sequence by one frame. Returns (sequence, codes[16]) for each frame made;
        sequences that hit EOS or their bound are marked finished."""
        active = self.active
        if not active:
            return []
        rows = max(s.slot for s in active) + 1
        hidden_size = self.talker.cfg.transformer.hidden_size
        tokens = torch.zeros(rows, dtype=torch.long, device=self.device)
        past = torch.zeros(rows, hidden_size, dtype=self.dtype, device=self.device)
        positions = torch.zeros(rows, dtype=torch.long, device=self.device)
        text = torch.zeros(rows, 1, hidden_size, dtype=self.dtype, device=self.device)
        by_row: list[Optional[Sequence]] = [None] * rows
        for s in active:
            by_row[s.slot] = s
            tokens[s.slot] = s.token
            past[s.slot] = s.past_hidden
            positions[s.slot] = s.position
            trailing = s.prompt.trailing
            text[s.slot, 0] = trailing[s.frames] if s.frames < trailing.shape[0] else s.prompt.tts_pad

        token_emb = self.talker.embed_codec(tokens)
        codes, cp_logits = self.talker.code_predictor.generate(
            past, token_emb, self._predictor_picker(by_row), return_logits=self._recording(active)
        )
        made = []
        for s in active:
            frame = torch.cat((tokens[s.slot : s.slot + 1], codes[s.slot]))
            made.append((s, frame))
            s.frames += 1
            if s.record is not None and cp_logits is not None:
                s.record.setdefault("cp_logits", []).append(cp_logits[s.slot].cpu())
            if s.frames >= s.max_frames:
                # The bound: this frame is the last one; its talker step would only feed a dropped token.
                s.finished = True
                s.truncated = True
        still = [s for s in active if not s.finished]
        if still:
            x = self.talker.frame_embedding(tokens, codes) + text
            length = int(max(s.position for s in still)) + 1
            hidden = self.talker_step(x[:, 0], positions, self.cache.span[:length])
            logits = self.talker.codec_head.mm(hidden).float()
            for s in still:
                s.position += 1
                s.past_hidden = hidden[s.slot]
            self._sample(still, logits, [s.slot for s in still])
        return made

    # -- sampling -----------------------------------------------------------------------------------------
    def _recording(self, seqs: list[Sequence]) -> bool:
        return any(s.record is not None for s in seqs)

    def _sample(self, seqs: list[Sequence], logits: torch.Tensor, index: list[int]) -> None:
        """Codebook-0 choice for `seqs` from the logits rows `index` (one per sequence)."""
        rows = logits[index]
        seen = torch.stack([s.seen for s in seqs])
        processed = self.sampler.process(
            rows,
            seen,
            [s.generated for s in seqs],
            [s.params.repetition_penalty for s in seqs],
            [self.guard.eos_bias(s.frames, s.prompt.text_tokens) for s in seqs],
        )
        sample = [bool(s.params.do_sample) for s in seqs]
        warped = warp(
            processed,
            [s.params.temperature if d else 1.0 for s, d in zip(seqs, sample)],
            [s.params.top_k if d else 0 for s, d in zip(seqs, sample)],
            [s.params.top_p if d else 1.0 for s, d in zip(seqs, sample)],
        )
        picked = choose(warped, sample, [s.generator for s in seqs]).tolist()
        for s, token, raw in zip(seqs, picked, rows):
            if s.record is not None:
                s.record.setdefault("talker_logits", []).append(raw.cpu())
            s.token = int(token)
            s.generated += 1
            s.seen[token] = True
            if token == self.eos:
                s.finished = True

    def _predictor_picker(self, by_row: list[Optional[Sequence]]):
        sample = [bool(s.params.subtalker_do_sample) if s is not None else False for s in by_row]
        temps = [
            s.params.subtalker_temperature if s is not None and d else 1.0 for s, d in zip(by_row, sample)
        ]
        top_k = [s.params.subtalker_top_k if s is not None and d else 0 for s, d in zip(by_row, sample)]
        top_p = [s.params.subtalker_top_p if s is not None and d else 1.0 for s, d in zip(by_row, sample)]
        generators = [s.generator if s is not None else None for s in by_row]

        def pick(logits: torch.Tensor, group: int) -> torch.Tensor:
            return choose(warp(logits, temps, top_k, top_p), sample, generators)

        return pick
