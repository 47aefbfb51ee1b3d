"""oneDNN prepacked fp32 weights for the CPU decoder's low-rate transposed convolutions (issue 24).

A streaming step decodes 4 frames, so the first transposed convs (upsample stages, the 1536 -> 768 block:
a 75 MB kernel) multiply a few samples by a large matrix and are bound by how fast the weights stream from
memory. oneDNN reads a matrix stored in its own blocked layout ~2.3x faster than MKL reads the plain
kernel at these shapes (bench/decoder.py notes), so those layers keep a packed copy of their matrix, made
on first use and per weight version (PackCache); the engine's loader packs the layers that always stream
this way at load and frees their plain weights (PackedOnly, modules.CausalTransConv.keep_packed_only).
The convs and linears with a plain matrix get most of that gain without a copy (the weight as the GEMM's
left operand, modules.py); compute-bound layers keep oneDNN's convolution.

Only fp32 on CPU with oneDNN; anything else (CUDA, bf16, a build without mkldnn) keeps the plain path. The
packed GEMM sums in another order than the plain one: float round-off only.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

import torch

_LOGGER = logging.getLogger(__name__)


# Tests and bench/decoder.py switch the packed path off to compare it with the plain one.
ENABLED = True


def can_pack(weight: torch.Tensor) -> bool:
    """Whether ``weight`` is a CPU fp32 tensor that oneDNN can pack (by build and dtype, never by timing)."""
    return (
        ENABLED
        and weight.device.type == "cpu"
        and weight.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
    )


def pack(matrix: torch.Tensor) -> Optional[torch.Tensor]:
    """A [out, in] matrix in oneDNN's layout for ``linear``, or None where the plain path must be used."""
    if not can_pack(matrix):
        return None
    return torch.ops.mkldnn._reorder_linear_weight(matrix.detach().contiguous(), None)


def linear(x: torch.Tensor, packed: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``F.linear(x, W, bias)`` with W packed by ``pack``; x [..., in] (any leading dimensions)."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, bias, "none", [], "")


def transposed_weight(matrix: torch.Tensor, c_in: int, kernel_size: int, stride: int) -> torch.Tensor:
    """The ConvTranspose1d weight [C_in, C_out, k] back from ``transposed_matrix`` (plain or packed): exact,
    the matrix only holds the kernel's taps in another order (and zeros past the kernel's end)."""
    if matrix.is_mkldnn:
        matrix = matrix.to_dense()
    rows, cols = matrix.shape
    taps = matrix.view(rows // stride, stride, cols // c_in, c_in).permute(3, 0, 2, 1)  # [ci, co, i, j]
    return taps.reshape(c_in, rows // stride, -1)[..., :kernel_size].contiguous()


def transposed_matrix(weight: torch.Tensor, stride: int) -> torch.Tensor:
    """ConvTranspose1d weight [C_in, C_out, k] as one matrix [C_out * s, (m + 1) * C_in], m = ceil(k / s) - 1.

    Output block t (s samples per channel) = matrix @ cat(x[t], x[t - 1], ..., x[t - m]): row
    ``co * s + j`` and column block i hold kernel tap ``i * s + j`` (zero past the kernel's end)."""
    c_in, c_out, k = weight.shape
    m = -(-k // stride) - 1
    taps = torch.nn.functional.pad(weight.detach(), (0, (m + 1) * stride - k))  # [C_in, C_out, (m + 1) s]
    taps = taps.view(c_in, c_out, m + 1, stride)  # [ci, co, i, j]
    return taps.permute(1, 3, 2, 0).reshape(c_out * stride, (m + 1) * c_in)


class PackedOnly:
    """A packed matrix that replaced its source weight for good (modules.CausalTransConv.keep_packed_only).

    Never written after packing, so copies of the module (copy.deepcopy) share it."""

    def __init__(self, packed: torch.Tensor) -> None:
        self.packed = packed

    def __deepcopy__(self, memo: dict) -> "PackedOnly":
        return self


class PackCache:
    """One layer's packed matrix, rebuilt when its source parameters change (load_state_dict, copy_, .to()).

    Packed lazily, on the first call that takes the GEMM path, so layers that never do (the high-rate
    convs) hold no second copy. The sources are held (detach shares storage and version counter) so that
    their addresses cannot be reused by other tensors and (data_ptr, version) identifies them soundly."""

    def __init__(self) -> None:
        self._key: tuple = ()
        self._sources: list[torch.Tensor] = []
        self._packed: Optional[torch.Tensor] = None

    def __deepcopy__(self, memo: dict) -> "PackCache":
        return PackCache()  # oneDNN tensors cannot be copied; a copy packs its own weights on first use

    def get(self, matrix: Callable[[], torch.Tensor], *sources: torch.Tensor) -> Optional[torch.Tensor]:
        if not can_pack(sources[0]):
            return None
        key = tuple((p.data_ptr(), p._version, p.device, p.dtype) for p in sources)
        if key != self._key:
            self._packed = pack(matrix())
            self._sources = [p.detach() for p in sources]
            self._key = key
        return self._packed
