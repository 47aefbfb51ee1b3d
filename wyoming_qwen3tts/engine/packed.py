"""bf16 weights in oneDNN's blocked layout for CPUs that compute bf16 natively (the unquantized bf16 path).

Chosen by the CPU's capabilities, never by timing (see `use_packed_bf16`); quant.py applies it at load.
"""

from __future__ import annotations

import logging
import os

import torch
from torch import nn

_LOGGER = logging.getLogger(__name__)


# A TorchScript function, so that traced steps (jit.py) can record the call: the tracer cannot record the
# op's empty `Scalar?[]` argument, a scripted call can. (Source string: `number` is a TorchScript type.)
_PACKED_MM = torch.jit.CompilationUnit("""
def packed_mm(x: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:
    scalars: List[Optional[number]] = []
    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", scalars, "")
""").packed_mm


class PackedLinear(nn.Module):
    """bf16 weights in oneDNN's blocked layout (CPU): its GEMV reads them faster than the plain layout's."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach()
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        self.register_buffer("weight", torch.ops.mkldnn._reorder_linear_weight(w, 1))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            return _PACKED_MM(x, self.weight, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mm(x)  # the op takes any leading dimensions


def use_packed_bf16(shape: tuple[int, int], device: torch.device, dtype: torch.dtype) -> bool:
    """Whether to store bf16 matrices in oneDNN's packed layout: on CPUs where oneDNN runs bf16 natively
    (AVX-512 BF16 / AMX), if a matrix of `shape` (the qkv matrix) gives the plain layout's result there.

    Decided by the CPU's capabilities, never by timing: the two layouts can round differently in rare cases,
    and a decision that flips with machine load would make the same request sound different after a restart.
    `WYOMING_QWEN3TTS_PACKED_BF16=0` (or 1) overrides it."""
    if dtype != torch.bfloat16 or device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    forced = os.environ.get("WYOMING_QWEN3TTS_PACKED_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
        generator = torch.Generator().manual_seed(0)
        weight = torch.randn(shape, generator=generator).to(torch.bfloat16)
        plain = nn.Linear(shape[1], shape[0], bias=False, device="meta")
        plain.weight = nn.Parameter(weight, requires_grad=False)
        packed = PackedLinear(plain)
        x = torch.randn(1, shape[1], generator=generator).to(torch.bfloat16)
        with torch.inference_mode():
            exact = torch.equal(packed.mm(x), torch.mm(x, weight.t()))
    except Exception as exc:  # oneDNN without bf16 support on this CPU, or no mkldnn at all
        _LOGGER.info("oneDNN packed bf16 weights unavailable (%s); keeping the plain layout", exc)
        return False
    layout = "oneDNN packed layout" if exact else "plain layout (the packed one rounds differently here)"
    _LOGGER.info("bf16 weights: %s", layout)
    return exact
