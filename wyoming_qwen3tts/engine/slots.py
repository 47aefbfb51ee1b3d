"""Per-slot generation state on the device: written once when a request is admitted into a KV slot (and
reset when it leaves), read and advanced in place by every decode step without the host.

Rows 0..B-1 of a decode batch are slots 0..B-1; a free slot holds neutral values (token 0, zero hidden,
position 0, zero text, greedy sampling), exactly what an idle row of the batch computes with.
The host keeps only what it needs to choose kernels (which rows sample, their generators, whether any
row uses a warper), updated at admission and release, never read back from the device.
"""

from __future__ import annotations

from typing import Any, Optional, cast

import torch

from .prompt import Prompt
from .sampling import SamplingParams, Warp


class SlotTable:
    def __init__(self, slots: int, hidden: int, vocab: int, dtype: torch.dtype, device: torch.device) -> None:
        self.slots, self.hidden, self.dtype, self.device = slots, hidden, dtype, device

        def longs() -> torch.Tensor:
            return torch.zeros(slots, dtype=torch.long, device=device)

        self.token = longs()  # last sampled codebook-0 id, fed at the next step
        self.past = torch.zeros(slots, hidden, dtype=dtype, device=device)  # talker hidden that made `token`
        self.position = longs()  # next KV write index
        self.frames = longs()  # frames made
        self.generated = longs()  # codebook-0 tokens sampled
        self.expected = longs()  # the runaway guard's expected frames
        self.live = torch.zeros(slots, dtype=torch.bool, device=device)
        self.seen = torch.zeros(slots, vocab, dtype=torch.bool, device=device)  # repetition-penalty history
        self.penalty = torch.ones(slots, dtype=torch.float32, device=device)
        self.inv_penalty = torch.ones(slots, dtype=torch.float32, device=device)
        self.talker = Warp.empty(slots, device)  # codebook 0
        self.predictor = Warp.empty(slots, device)  # codebooks 1..15
        # Text embedding fed with each frame: the prompt's trailing text, then tts_pad (row `text_len`).
        self.text = torch.zeros(slots, 1, hidden, dtype=dtype, device=device)
        self.text_len = longs()
        self.rows = torch.arange(slots, device=device)
        # Host side: chosen at admission, never read back.
        self.params: list[Optional[SamplingParams]] = [None] * slots
        self.generators: list[Optional[torch.Generator]] = [None] * slots
        self.sample = [False] * slots
        self.sub_sample = [False] * slots

    # -- admission / release (host writes, once per request) ----------------------------------------------
    @torch.inference_mode()
    def admit(
        self,
        slot: int,
        prompt: Prompt,
        params: SamplingParams,
        expected: int,
        generator: Optional[torch.Generator],
    ) -> None:
        """`params` resolved (no None left: SamplingParams.resolve)."""
        p = cast(Any, params)
        trailing = prompt.trailing
        n = trailing.shape[0]
        if n + 1 > self.text.shape[1]:
            self._grow_text(n + 1)
        self.text[slot, :n] = trailing.to(self.device, self.dtype)
        self.text[slot, n] = prompt.tts_pad.to(self.device, self.dtype)
        self.text_len[slot] = n
        self.token[slot] = 0
        self.past[slot] = 0
        self.position[slot] = 0
        self.frames[slot] = 0
        self.generated[slot] = 0
        self.expected[slot] = expected
        self.live[slot] = True
        self.seen[slot] = False
        self.penalty[slot] = float(p.repetition_penalty)
        self.inv_penalty[slot] = 1.0 / torch.tensor(float(p.repetition_penalty), dtype=torch.float32)
        sample, sub = bool(p.do_sample), bool(p.subtalker_do_sample)
        self.talker.set_row(
            slot,
            p.temperature if sample else 1.0,
            p.top_k if sample else 0,
            p.top_p if sample else 1.0,
        )
        self.predictor.set_row(
            slot,
            p.subtalker_temperature if sub else 1.0,
            p.subtalker_top_k if sub else 0,
            p.subtalker_top_p if sub else 1.0,
        )
        self.params[slot] = params
        self.generators[slot] = generator
        self.sample[slot], self.sub_sample[slot] = sample, sub

    @torch.inference_mode()
    def release(self, slot: int) -> None:
        self.token[slot] = 0
        self.past[slot] = 0
        self.position[slot] = 0
        self.frames[slot] = 0
        self.live[slot] = False
        self.text[slot, 0] = 0
        self.text_len[slot] = 0
        self.penalty[slot] = 1.0
        self.inv_penalty[slot] = 1.0
        self.talker.set_row(slot, 1.0, 0, 1.0)
        self.predictor.set_row(slot, 1.0, 0, 1.0)
        self.params[slot] = None
        self.generators[slot] = None
        self.sample[slot] = self.sub_sample[slot] = False

    def _grow_text(self, rows: int) -> None:
        size = max(rows, 2 * self.text.shape[1])
        text = torch.zeros(self.slots, size, self.hidden, dtype=self.dtype, device=self.device)
        text[:, : self.text.shape[1]] = self.text
        self.text = text

    # -- what a step reads ---------------------------------------------------------------------------
    def text_rows(self, rows: int) -> torch.Tensor:
        """[rows, 1, H]: each row's text embedding for its next frame (trailing text, then tts_pad)."""
        index = torch.minimum(self.frames[:rows], self.text_len[:rows])
        return self.text[self.rows[:rows], index][:, None]

    def flags(self, rows: int, predictor: bool) -> tuple[bool, bool, bool]:
        """Does any of rows 0..rows-1 use temperature / top-k / top-p (host knowledge, skips work)."""
        used: list[Any] = [p for p in self.params[:rows] if p is not None]  # resolved params
        if predictor:
            used = [p for p in used if p.subtalker_do_sample]
            return (
                any(p.subtalker_temperature != 1.0 for p in used),
                any(p.subtalker_top_k > 0 for p in used),
                any(p.subtalker_top_p < 1.0 for p in used),
            )
        used = [p for p in used if p.do_sample]
        return (
            any(p.temperature != 1.0 for p in used),
            any(p.top_k > 0 for p in used),
            any(p.top_p < 1.0 for p in used),
        )

    def any_penalty(self, rows: int) -> bool:
        return any(p is not None and p.repetition_penalty != 1.0 for p in self.params[:rows])
