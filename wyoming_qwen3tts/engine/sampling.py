"""Sampling identical to qwen-tts 0.1.1 (transformers 4.57.3 logits processors), vectorised over rows.

Codebook 0 (talker), in the reference order:
  repetition penalty over the set of generated tokens -> min-new-tokens (EOS banned for the first 2)
  -> suppress the control block [vocab-1024, vocab) except EOS -> [runaway EOS bias, ours, off by default
  until the expected length is exceeded] -> temperature -> top-k -> top-p -> softmax -> multinomial.
  Greedy = argmax after the first three (plus the bias).
Codebooks 1..15 (code predictor): temperature -> top-k -> top-p -> multinomial (or argmax).

Each row may carry its own parameters and its own `torch.Generator`, so a seeded request draws exactly
the same numbers alone or in a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import torch

from .config import GenerationDefaults

MIN_NEW_TOKENS = 2


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling settings; None means the model's generation_config.json default."""

    do_sample: Optional[bool] = None
    temperature: Optional[float] = None
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    repetition_penalty: Optional[float] = None
    subtalker_do_sample: Optional[bool] = None
    subtalker_temperature: Optional[float] = None
    subtalker_top_k: Optional[int] = None
    subtalker_top_p: Optional[float] = None
    max_new_tokens: Optional[int] = None
    seed: Optional[int] = None

    @classmethod
    def greedy(cls, **kw) -> "SamplingParams":
        return cls(do_sample=False, subtalker_do_sample=False, **kw)

    def resolve(self, defaults: GenerationDefaults) -> "SamplingParams":
        """Fills every None from the model defaults and validates the ranges."""
        d = defaults
        r = replace(
            self,
            do_sample=d.do_sample if self.do_sample is None else self.do_sample,
            temperature=d.temperature if self.temperature is None else self.temperature,
            top_k=d.top_k if self.top_k is None else self.top_k,
            top_p=d.top_p if self.top_p is None else self.top_p,
            repetition_penalty=(
                d.repetition_penalty if self.repetition_penalty is None else self.repetition_penalty
            ),
            subtalker_do_sample=(
                d.subtalker_dosample if self.subtalker_do_sample is None else self.subtalker_do_sample
            ),
            subtalker_temperature=(
                d.subtalker_temperature if self.subtalker_temperature is None else self.subtalker_temperature
            ),
            subtalker_top_k=d.subtalker_top_k if self.subtalker_top_k is None else self.subtalker_top_k,
            subtalker_top_p=d.subtalker_top_p if self.subtalker_top_p is None else self.subtalker_top_p,
            max_new_tokens=d.max_new_tokens if self.max_new_tokens is None else self.max_new_tokens,
        )
        for name in ("temperature", "subtalker_temperature", "repetition_penalty"):
            value = getattr(r, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value}")
        for name in ("top_p", "subtalker_top_p"):
            if not 0.0 < getattr(r, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(r, name)}")
        for name in ("top_k", "subtalker_top_k"):
            if getattr(r, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 disables it), got {getattr(r, name)}")
        if r.max_new_tokens < 2:
            raise ValueError(f"max_new_tokens must be >= 2, got {r.max_new_tokens}")
        return r


def _rows_with(values: Sequence, value) -> torch.Tensor:
    return torch.tensor([v == value for v in values])


def _per_value(logits: torch.Tensor, values: Sequence[float], skip: float, op) -> torch.Tensor:
    """Applies op(rows, python_scalar) for each distinct value. Python scalars (not a float32 column)
    keep the arithmetic bit-identical to the transformers processors."""
    out = logits
    for value in sorted(set(values)):
        if value == skip:
            continue
        rows = _rows_with(values, value).to(logits.device)
        out = torch.where(rows[:, None], op(logits, value), out)
    return out


def warp(
    logits: torch.Tensor, temperature: Sequence[float], top_k: Sequence[int], top_p: Sequence[float]
) -> torch.Tensor:
    """Temperature, top-k and top-p exactly as the transformers warpers, each row with its own values."""
    rows, vocab = logits.shape
    logits = _per_value(logits, temperature, 1.0, lambda x, t: x / t)
    if any(k > 0 for k in top_k):
        kth = logits.sort(dim=-1, descending=True).values
        index = torch.tensor([min(max(k, 1), vocab) - 1 for k in top_k], device=logits.device)[:, None]
        threshold = kth.gather(1, index)
        active = torch.tensor([k > 0 for k in top_k], device=logits.device)[:, None]
        logits = logits.masked_fill(active & (logits < threshold), -math.inf)
    if any(p < 1.0 for p in top_p):
        sorted_logits, sorted_idx = torch.sort(logits, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        limit = torch.tensor([1 - p for p in top_p], dtype=torch.float64).to(torch.float32)
        remove_sorted = cumulative <= limit.to(logits.device)[:, None]
        remove_sorted[..., -1:] = False  # min_tokens_to_keep = 1
        remove = remove_sorted.scatter(1, sorted_idx, remove_sorted)
        active = torch.tensor([p < 1.0 for p in top_p], device=logits.device)[:, None]
        logits = logits.masked_fill(active & remove, -math.inf)
    return logits


def choose(
    logits: torch.Tensor,
    do_sample: Sequence[bool],
    generators: Sequence[Optional[torch.Generator]],
) -> torch.Tensor:
    """Argmax for greedy rows; softmax + multinomial (with the row's generator) for sampled rows."""
    out = logits.argmax(dim=-1)
    if any(do_sample):
        probs = logits.softmax(dim=-1)
        picked = out.clone()
        for i, sample in enumerate(do_sample):
            if sample:
                picked[i] = torch.multinomial(probs[i : i + 1], 1, generator=generators[i])[0, 0]
        out = picked
    return out


class TalkerSampler:
    """Codebook-0 processors for a batch of rows (rows = KV slots), with per-row generation history."""

    def __init__(self, vocab: int, eos: int, device: torch.device | str) -> None:
        self.vocab = vocab
        self.eos = eos
        suppress = torch.zeros(vocab, dtype=torch.bool, device=device)
        suppress[vocab - 1024 :] = True
        suppress[eos] = False
        self.suppress = suppress

    def process(
        self,
        logits: torch.Tensor,
        seen: torch.Tensor,
        generated: Sequence[int],
        penalty: Sequence[float],
        eos_bias: Sequence[float],
    ) -> torch.Tensor:
        """logits [B, V] float32; seen [B, V] bool (tokens generated so far); generated: count per row."""
        logits = logits.float()
        penalised = _per_value(logits, penalty, 1.0, lambda x, p: torch.where(x < 0, x * p, x / p))
        logits = torch.where(seen, penalised, logits)
        early = torch.tensor([g < MIN_NEW_TOKENS for g in generated], device=logits.device)
        if bool(early.any()):
            logits[early, self.eos] = -math.inf
        logits = logits.masked_fill(self.suppress, -math.inf)
        if any(b != 0.0 for b in eos_bias):
            logits[:, self.eos] += torch.tensor(list(eos_bias), dtype=logits.dtype, device=logits.device)
        return logits
