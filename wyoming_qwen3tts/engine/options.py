"""How to load an engine: device and dtype parsing, and the one options object `Engine.load` takes."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

import torch

from ..core.vocab import DEFAULT_QUANTIZE, DEFAULT_SLOTS
from .policy import parse_dtype_name, plan
from .request import ChunkPolicy, RunawayGuard


def parse_dtype(name: str | torch.dtype, device: str | torch.device) -> torch.dtype:
    """The talker dtype `name` means on `device` without quantization ('auto': bf16 on GPUs and on CPUs
    with native bf16, fp32 on other CPUs; see policy.py)."""
    explicit = parse_dtype_name(name)
    if explicit is not None:
        return explicit
    return plan(torch.device(device), "auto", "none").dtype


def resolve_device(name: Optional[str]) -> torch.device:
    """'auto' picks CUDA (NVIDIA, or AMD through ROCm's CUDA API) when present, else CPU."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but no CUDA/ROCm GPU is available")
    return device


@dataclass(frozen=True)
class LoadOptions:
    """Everything `Engine.load` takes besides the model; the defaults are the server's (core/vocab.py).

    `device`, `dtype`, `quantize` and `trace` become the engine's one `ComputePlan` (engine/policy.py, which
    logs its choice once): `quantize` "auto" is the fastest mode that passes the quality gates on this
    hardware (with `dtype` auto; an explicit dtype runs unquantized), "none" unquantized and exact, "int8" /
    "int4" weights of the talker and code predictor (CPU only); `trace`: TorchScript-traced decode steps
    (engine/jit.py): True = talker and code predictor, False = none, None = the code predictor on CPU only
    (tracing the talker costs 10-20 s per new batch size, the predictor ~0.5 s). The rest sizes and steers
    the engine itself (`Engine.__init__`)."""

    device: Optional[str] = "auto"
    dtype: str | torch.dtype = "auto"
    slots: int = DEFAULT_SLOTS
    max_len: int = 2048
    cache_dir: Optional[str | Path] = None
    local_files_only: bool = False
    revision: Optional[str] = None
    guard: RunawayGuard = RunawayGuard()
    chunk_policy: ChunkPolicy = ChunkPolicy()
    quantize: str = DEFAULT_QUANTIZE
    trace: Optional[bool] = None
    adaptive_threads: bool = False  # CPU: one thread while other processes hold the cores (threads.py)

    @classmethod
    def of(cls, options: Optional["LoadOptions"] = None, **overrides: Any) -> "LoadOptions":
        """`options` (or the defaults) with keyword overrides; an unknown keyword is a TypeError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown engine option(s): {', '.join(unknown)}")
        base = options or cls()
        return cls(**{**{n: getattr(base, n) for n in names}, **overrides})
