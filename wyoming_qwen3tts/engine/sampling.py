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
        assert r.max_new_tokens is not None
        if r.max_new_tokens < 2:
            raise ValueError(f"max_new_tokens must be >= 2, got {r.max_new_tokens}")
        return r


@dataclass
class Warp:
    """Warper settings as device columns, one row per KV slot: written once when a request is admitted,
    read by every step without the host (rows with a setting off hold its neutral value)."""

    temperature: torch.Tensor  # [S] float32, 1.0 = off
    inv_temperature: torch.Tensor  # [S] float32 1/temperature (CUDA divides by a CPU scalar as a * (1/b))
    top_k: torch.Tensor  # [S] long, 0 = off
    top_p_limit: torch.Tensor  # [S] float32: 1 - top_p, rounded as the transformers warper rounds it
    top_p_on: torch.Tensor  # [S] bool

    @classmethod
    def empty(cls, rows: int, device: torch.device | str) -> "Warp":
        ones = torch.ones(rows, dtype=torch.float32, device=device)
        return cls(
            temperature=ones,
            inv_temperature=ones.clone(),
            top_k=torch.zeros(rows, dtype=torch.long, device=device),
            top_p_limit=torch.zeros(rows, dtype=torch.float32, device=device),
            top_p_on=torch.zeros(rows, dtype=torch.bool, device=device),
        )

    @classmethod
    def of(
        cls,
        temperature: Sequence[float],
        top_k: Sequence[int],
        top_p: Sequence[float],
        device: torch.device | str = "cpu",
    ) -> "Warp":
        warp = cls.empty(len(temperature), device)
        for row, (t, k, p) in enumerate(zip(temperature, top_k, top_p)):
            warp.set_row(row, t, k, p)
        return warp

    def set_row(self, row: int, temperature: float, top_k: int, top_p: float) -> None:
        self.temperature[row] = float(temperature)
        self.inv_temperature[row] = 1.0 / torch.tensor(float(temperature), dtype=torch.float32)
        self.top_k[row] = int(top_k)
        self.top_p_limit[row] = torch.tensor(1 - float(top_p), dtype=torch.float64).to(torch.float32)
        self.top_p_on[row] = bool(top_p < 1.0)

    def rows(self, n: int) -> "Warp":
        """Views of rows 0..n-1."""
        return Warp(
            self.temperature[:n],
            self.inv_temperature[:n],
            self.top_k[:n],
            self.top_p_limit[:n],
            self.top_p_on[:n],
        )

    def row(self, i: int) -> "Warp":
        return Warp(
            self.temperature[i : i + 1],
            self.inv_temperature[i : i + 1],
            self.top_k[i : i + 1],
            self.top_p_limit[i : i + 1],
            self.top_p_on[i : i + 1],
        )


def divide(x: torch.Tensor, by: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """x / by[:, None] with the rounding of `x / python_scalar` (what the transformers processors do): the
    same IEEE division on CPU; on CUDA a division by a CPU scalar is computed as x * (1/b) in float32."""
    if x.device.type == "cuda":
        return x * inverse[:, None]
    return x / by[:, None]


def warp_rows(
    logits: torch.Tensor, w: Warp, temperature: bool = True, top_k: bool = True, top_p: bool = True
) -> torch.Tensor:
    """Temperature, top-k and top-p exactly as the transformers warpers, each row with its own values.

    The flags (host knowledge: does any row use it) only skip work; a row whose setting is off is unchanged
    either way."""
    vocab = logits.shape[-1]
    if temperature:
        logits = divide(logits, w.temperature, w.inv_temperature)
    if top_k:
        kth = logits.sort(dim=-1, descending=True).values
        threshold = kth.gather(1, (w.top_k.clamp(1, vocab) - 1)[:, None])
        logits = logits.masked_fill((w.top_k > 0)[:, None] & (logits < threshold), -math.inf)
    if top_p:
        sorted_logits, sorted_idx = torch.sort(logits, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= w.top_p_limit[:, None]
        remove_sorted[..., -1:] = False  # min_tokens_to_keep = 1
        remove = remove_sorted.scatter(1, sorted_idx, remove_sorted)
        logits = logits.masked_fill(w.top_p_on[:, None] & remove, -math.inf)
    return logits


def warp(
    logits: torch.Tensor, temperature: Sequence[float], top_k: Sequence[int], top_p: Sequence[float]
) -> torch.Tensor:
    """`warp_rows` with the settings given as one list entry per row (tests, one-off callers)."""
    return warp_rows(
        logits,
        Warp.of(temperature, top_k, top_p, logits.device),
        temperature=any(t != 1.0 for t in temperature),
        top_k=any(k > 0 for k in top_k),
        top_p=any(p < 1.0 for p in top_p),
    )


def choose(
    logits: torch.Tensor,
    do_sample: Sequence[bool],
    generators: Sequence[Optional[torch.Generator]],
) -> torch.Tensor:
    """Argmax for greedy rows; softmax + multinomial (with the row's generator) for sampled rows."""
    out = logits.argmax(dim=-1)
    if any(do_sample):
        probs = logits.softmax(dim=-1)
        for i, sample in enumerate(do_sample):
            if sample:
                out[i : i + 1] = torch.multinomial(probs[i : i + 1], 1, generator=generators[i])[0]
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

    def process_rows(
        self,
        logits: torch.Tensor,
        seen: torch.Tensor,
        generated: torch.Tensor,
        penalty: Optional[tuple[torch.Tensor, torch.Tensor]],
        eos_bias: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """logits [B, V]; seen [B, V] bool (tokens generated so far); generated [B] long: count per row;
        penalty (p, 1/p) [B] float32 columns or None when no row has one; eos_bias [B] float32 or None."""
        logits = logits.float()
        if penalty is not None:
            p, inv = penalty
            penalised = torch.where(logits < 0, logits * p[:, None], divide(logits, p, inv))
            logits = torch.where(seen, penalised, logits)
        else:
            logits = logits.clone()  # the caller's logits stay as they were (recorded raw for parity)
        eos = logits[:, self.eos]
        logits[:, self.eos] = torch.where(generated < MIN_NEW_TOKENS, -math.inf, eos)
        logits = logits.masked_fill(self.suppress, -math.inf)
        if eos_bias is not None:
            logits[:, self.eos] += eos_bias
        return logits

    def process(
        self,
        logits: torch.Tensor,
        seen: torch.Tensor,
        generated: Sequence[int],
        penalty: Sequence[float],
        eos_bias: Sequence[float],
    ) -> torch.Tensor:
        """`process_rows` with the per-row values given as lists (tests, one-off callers)."""
        device = logits.device
        p = torch.tensor(list(penalty), dtype=torch.float32, device=device)
        columns = (p, 1.0 / p) if any(v != 1.0 for v in penalty) else None
        bias = None
        if any(b != 0.0 for b in eos_bias):
            bias = torch.tensor(list(eos_bias), dtype=torch.float32, device=device)
        return self.process_rows(logits, seen, torch.tensor(list(generated), device=device), columns, bias)
