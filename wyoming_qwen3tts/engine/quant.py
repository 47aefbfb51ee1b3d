"""Weight-only int8 / int4 quantization of the talker and code predictor, built at load time (CPU).

Decoding one frame reads every talker weight once and every code-predictor weight 15 times; on a CPU that
is bound by memory bandwidth, so fewer bytes per weight is the only way to real time on small machines.
Activations stay in the engine dtype (bf16 or fp32); only the matrices of the per-frame GEMVs change:

* ``int8``: symmetric per-output-channel scales, ``torch._weight_int8pack_mm`` (1 byte per weight).
* ``int4``: asymmetric group-wise (``group_size`` input features share a scale and a zero point),
  ``torch._weight_int4pack_mm_for_cpu`` (0.5 byte per weight). The output heads (codec head and the 15
  code-predictor heads, 5 % of the bytes) stay int8: their logits pick the codes directly.

Quantized: every transformer projection of the talker and the code predictor, the heads and the 1.7B
predictor input projection. Not quantized: embeddings (gathered, not streamed), the text projection (prompt
only), norms, and the speech decoder (convolutions, compute bound). Error figures: tests/test_quant.py and
bench/RESULTS.md.

Unquantized bf16 on CPU gets a layout change instead (`PackedLinear`, see `prepare_talker`): oneDNN's
blocked weight format, which its GEMV reads ~30 % faster than PyTorch's plain-layout bf16 GEMV on the
benchmark machine. Used where oneDNN runs bf16 natively (`use_packed_bf16`, decided by the CPU, never by
timing, so outputs stay reproducible); its rounding matches the plain layout's on every shape tested, with
rare last-bit differences inside a whole model.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any, Callable, Optional, cast

import torch
from torch import nn

from ..core.vocab import QUANTIZE_MODES as QUANT_MODES  # none, int8, int4 (what an engine runs)
from . import nbits, ortblocks
from .cpu import cpu_info
from .memory import drop_file_pages
from .nbits import BLOCK as NBITS_BLOCK
from .nbits import BLOCK_8BIT, NBitsLinear
from .nbits import fits as nbits_fits
from .packed import PackedLinear, use_packed_bf16

if TYPE_CHECKING:
    from .layers import DecoderLayer
    from .talker import Talker

_LOGGER = logging.getLogger(__name__)

DEFAULT_GROUP_SIZE = 64  # 32 streams 12 % more bytes (scales) for ~12 % less weight error; 128 the reverse

# Documented error gates against bf16, teacher-forced over 100 frames (quant_check.py), enforced on the tiny
# checkpoints by tests/test_quant.py. int8 meets published int8 practice (next-token KL <= 0.01-0.02,
# near-identical logits). int4 only has error bounds: its figures on random weights are clearly worse than
# published 4-bit practice on trained models, so it stays opt-in and logs a warning.
GATES: dict[str, dict[str, float]] = {
    "int8": {
        "hidden_cos_min": 0.999,
        "logits_cos_mean": 0.999,
        "logits_cos_min": 0.99,
        "top1_cb0": 0.9,
        "top1_all": 0.9,
        "kl_all_mean": 0.002,
        "kl_all_max": 0.02,
    },
    "int4": {
        "hidden_cos_mean": 0.99,
        "logits_cos_mean": 0.95,
        "top1_all": 0.5,
        "kl_all_mean": 0.06,
        "kl_all_max": 0.5,
    },
}


def gate_misses(mode: str, figures: dict[str, float]) -> dict[str, tuple[float, float]]:
    """The gates of ``mode`` that ``figures`` (quant_check's ``as_dict()``) miss: name -> (figure, bound).
    KL figures are upper bounds, the others lower bounds."""
    misses = {}
    for key, bound in GATES[mode].items():
        value = figures[key]
        if not (value <= bound if key.startswith("kl_") else value >= bound):
            misses[key] = (value, bound)
    return misses


def check_mode(mode: Optional[str]) -> str:
    key = (mode or "none").lower()
    if key not in QUANT_MODES:
        raise ValueError(f"unknown quantize mode {mode!r}; use one of {', '.join(QUANT_MODES)}")
    return key


def int4_fits(in_features: int, group_size: int) -> bool:
    """The CPU kernel takes groups of 32, 64, 128 or 256 that divide K."""
    return group_size in (32, 64, 128, 256) and in_features % group_size == 0


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])


class Int8Linear(nn.Module):
    """y = x @ (q * scale).T + bias, q int8 [N, K], one scale per output channel."""

    weight: torch.Tensor
    scales: torch.Tensor
    bias: Optional[torch.Tensor]

    def __init__(self, linear: nn.Linear, dtype: torch.dtype) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        # Scales are rounded to the activation dtype first, then the weights are quantized against the
        # rounded scale, so what the kernel multiplies back is exactly what the rounding assumed.
        scale = (w.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny).to(dtype)
        q = torch.round(w / scale.float()[:, None]).clamp_(-127, 127).to(torch.int8)
        self.register_buffer("weight", q)
        self.register_buffer("scales", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(dtype))

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, K] -> [B, N] (the 2-D decode path of layers.py)."""
        out = torch._weight_int8pack_mm(x, self.weight, self.scales)
        return out if self.bias is None else out + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mm(_flat(x)).view(*x.shape[:-1], self.out_features)

    def dequantized(self) -> torch.Tensor:
        return self.weight.float() * self.scales.float()[:, None]


def _int4_groups(w: torch.Tensor, group_size: int, dtype: torch.dtype):
    """Min/max asymmetric 4-bit codes of w [N, K] -> (codes int32 [N, K], scale [N, G], zero [N, G]) with
    w ~= (code - 8) * scale + zero (the layout of the int4pack kernels); scale/zero already in `dtype`."""
    n, k = w.shape
    g = w.reshape(n, k // group_size, group_size)
    lo, hi = g.amin(dim=-1), g.amax(dim=-1)
    scale = ((hi - lo) / 15).clamp(min=1e-8).to(dtype)
    zero = (lo + 8 * scale.float()).to(dtype)
    # Codes against the rounded parameters (see Int8Linear).
    base = zero.float() - 8 * scale.float()
    codes = torch.round((g - base[..., None]) / scale.float()[..., None]).clamp_(0, 15)
    return codes.to(torch.int32).reshape(n, k), scale, zero


class Int4Linear(nn.Module):
    """Group-wise 4-bit weights in the CPU int4pack layout."""

    weight: torch.Tensor
    scales_zeros: torch.Tensor
    bias: Optional[torch.Tensor]

    def __init__(self, linear: nn.Linear, dtype: torch.dtype, group_size: int = DEFAULT_GROUP_SIZE) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        n, k = w.shape
        if not int4_fits(k, group_size):
            raise ValueError(f"in_features {k} is not a multiple of the int4 group size {group_size}")
        self.in_features, self.out_features, self.group_size = k, n, group_size
        codes, scale, zero = _int4_groups(w, group_size, dtype)
        self.register_buffer("weight", torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1))
        # [K / group, N, 2]: (scale, zero) per group and output channel.
        self.register_buffer("scales_zeros", torch.stack((scale.t(), zero.t()), dim=-1).contiguous())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(dtype))

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        # The kernel wants a dense A (the norms hand over a strided half of a wider buffer).
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x.contiguous(), self.weight, self.group_size, self.scales_zeros
        )
        return out if self.bias is None else out + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mm(_flat(x)).view(*x.shape[:-1], self.out_features)

    def dequantized(self) -> torch.Tensor:
        """The weight the kernel multiplies with (float32 [N, K]); for tests and error reports."""
        eye = torch.eye(self.in_features, dtype=self.scales_zeros.dtype)
        return (
            torch.ops.aten._weight_int4pack_mm_for_cpu(eye, self.weight, self.group_size, self.scales_zeros)
            .float()
            .t()
        )


class DynamicInt8Linear(nn.Module):
    """int8 weights (symmetric, per output channel) with activations quantized to 8 bits per row at run time,
    multiplied by the integer GEMM of PyTorch's quantized CPU backend: fbgemm on x86-64, QNNPACK on ARM.

    Unlike `Int8Linear` (whose kernel is vectorised for AVX-512 only and streams ~2 GB/s on AVX2), fbgemm's
    AVX2 kernel reads the weights at nearly memory speed. Activations go in and come out in float32 (the
    kernel's interface); other activation dtypes are converted around it. Each row is quantized on its own
    (one call per row), so a request's numbers never depend on what else shares its batch: seeded requests
    reproduce alone or batched. fbgemm quantizes activations to 7 bits (`reduce_range`), which keeps its
    AVX2 pair-wise int16 accumulations from saturating."""

    def __init__(self, linear: nn.Linear, backend: str) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        self.in_features, self.out_features, self.backend = w.shape[1], w.shape[0], backend
        scale = (w.abs().amax(dim=1) / 127).clamp(min=torch.finfo(torch.float32).tiny).double()
        zero = torch.zeros(w.shape[0], dtype=torch.long)
        bias = None if linear.bias is None else linear.bias.detach().float()
        with warnings.catch_warnings():
            # Quantized tensors are deprecated in favour of torchao, whose PyPI wheels ship no CPU kernels;
            # the backends themselves are what this class uses (pinned torch, see the README).
            warnings.filterwarnings("ignore", message=".*quantize_per_channel.*deprecated")
            qweight = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
        previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = backend
        try:
            self._packed = torch.ops.quantized.linear_prepack(qweight, bias)
        finally:
            torch.backends.quantized.engine = previous
        self._reduce_range = backend == "fbgemm"  # QNNPACK warns about, and ignores, reduce_range

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        out = torch.ops.quantized.linear_dynamic(x.float(), self._packed, self._reduce_range)
        return out if dtype == torch.float32 else out.to(dtype)

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, K] -> [B, N], one row per request of a decode step: each row quantized on its own."""
        if x.shape[0] == 1:
            return self._call(x)
        return torch.cat([self._call(row) for row in x.split(1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [1, T, K] (one request's prompt): one call, so prefill stays one GEMM; [B, T, K]: per request."""
        if x.dim() == 3 and x.shape[0] > 1:
            return torch.cat([self.forward(part) for part in x.split(1)])
        return self._call(_flat(x)).view(*x.shape[:-1], self.out_features)

    def dequantized(self) -> torch.Tensor:
        weight, _ = torch.ops.quantized.linear_unpack(self._packed)
        return weight.dequantize()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, backend={self.backend}"


class Fp16Linear(nn.Module):
    """fp16 weights, float32 activations, fbgemm's fp16 GEMM (x86-64): no activation rounding at all, for the
    one matrix per layer whose inputs 8-bit rounding hurts most (see `converter`)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach().float()
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        bias = None if linear.bias is None else linear.bias.detach().float()
        self._packed = torch.ops.quantized.linear_prepack_fp16(w, bias)

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        out = torch.ops.quantized.linear_dynamic_fp16(x.float(), self._packed)
        return out if dtype == torch.float32 else out.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mm(_flat(x)).view(*x.shape[:-1], self.out_features)

    def dequantized(self) -> torch.Tensor:
        weight, _ = torch.ops.quantized.linear_unpack_fp16(self._packed)
        return weight.float()


Convert = Callable[[nn.Linear, bool, str], Optional[nn.Module]]

# With fbgemm, whose activations are rounded to 7 bits per row (`DynamicInt8Linear`), the two output
# projections of each layer keep 16-bit weights and exact activations (`Fp16Linear`). Measured teacher-forced
# over 100 frames on the random full-size 0.6B against fp32 (bench/RESULTS.md): all int8 KL 0.0059, logits
# cosine 0.995 (misses the int8 gate); down_proj in fp16 0.0031 / 0.9974; down_proj and o_proj 0.0021 /
# 0.9983 (passes), for 27 % more bytes per frame than all-int8 (still 0.65x of bf16's).
FP16_UNDER_FBGEMM = ("down_proj", "o_proj")


def converter(
    mode: str,
    dtype: torch.dtype,
    *,
    pack: bool,
    group_size: int = DEFAULT_GROUP_SIZE,
    int8_kernel: Optional[str] = None,
    int4_kernel: Optional[str] = None,
) -> Convert:
    """(linear, is_head) -> its replacement (or None to keep it): int8 / int4 (heads int8) / packed bf16.
    `int8_kernel`: "fbgemm" / "qnnpack" (DynamicInt8Linear), "onnxruntime" (8-bit NBitsLinear, every matrix:
    per-block activation scales pass the gate without fp16 matrices) or None / "weight-only" (Int8Linear)."""

    if int8_kernel == "onnxruntime" and mode != "none" and not nbits.kernel_ok(8):
        # a kernel that multiplies wrong on this CPU: the class's own (fbgemm / QNNPACK; weight-only if none)
        int8_kernel = cpu_info().int8_backend

    def int8(linear: nn.Linear, name: str) -> nn.Module:
        if int8_kernel == "onnxruntime":
            if nbits_fits(linear.in_features, BLOCK_8BIT):
                return NBitsLinear(linear, bits=8)
            return Int8Linear(linear, dtype)  # small test models only: K not a multiple of the block
        if int8_kernel == "fbgemm" and name in FP16_UNDER_FBGEMM:
            return Fp16Linear(linear)
        if int8_kernel in ("fbgemm", "qnnpack"):
            return DynamicInt8Linear(linear, int8_kernel)
        return Int8Linear(linear, dtype)

    def convert(linear: nn.Linear, is_head: bool, name: str = "") -> Optional[nn.Module]:
        if mode == "none":
            return PackedLinear(linear) if pack else None
        k = linear.in_features
        # Small test models: the largest kernel group size that divides K; int8 if none does.
        group = next((g for g in (group_size, 128, 64, 32) if g <= group_size and int4_fits(k, g)), 0)
        if mode == "int4" and int4_kernel == "onnxruntime" and not is_head and k % NBITS_BLOCK == 0:
            return NBitsLinear(linear)
        if mode == "int8" or is_head or not group:
            return int8(linear, name)
        return Int4Linear(linear, dtype, group)

    return convert


def _replace(parent: nn.Module, name: str, new: Optional[nn.Module]) -> int:
    """setattr unless `new` is None; returns the bytes saved."""
    if new is None:
        return 0
    old = getattr(parent, name)
    setattr(parent, name, new)
    before = old.weight.numel() * old.weight.element_size()
    return before - _nbytes(new)


def _nbytes(module: nn.Module) -> int:
    if isinstance(module, DynamicInt8Linear):  # its weights live in the backend's packed object
        return module.in_features * module.out_features + 8 * module.out_features
    if isinstance(module, Fp16Linear):
        return 2 * module.in_features * module.out_features
    if isinstance(module, NBitsLinear):
        return module.nbytes
    return sum(b.numel() * b.element_size() for b in module.buffers())


def prepare_talker(
    talker: "Talker",
    mode: str = "none",
    mapped: Optional[set[int]] = None,
    int8_kernel: Optional[str] = None,
    int4_kernel: Optional[str] = None,
) -> None:
    """Load-time rewrite of a loaded Talker: fuse each layer, then quantize (`mode` int8/int4) or pack
    (bf16 on CPU, where faster) its matrices, and drop the checkpoint pages it was read from (`mapped`:
    memory.file_storages of the state dict) - one layer at a time, so that loading never holds the whole
    model twice."""
    mode = check_mode(mode)
    device, dtype = talker.device, talker.dtype
    if mode != "none" and device.type != "cpu":
        raise ValueError(
            f"quantize={mode} runs on CPU only (PyTorch's int8/int4 CPU kernels); use bf16 on GPUs"
        )
    first = _layers(talker.model)[0].self_attn
    qkv_shape = ((first.heads + 2 * first.kv_heads) * first.head_dim, talker.hidden_size)
    pack = mode == "none" and use_packed_bf16(qkv_shape, device, dtype)
    convert = converter(mode, dtype, pack=pack, int8_kernel=int8_kernel, int4_kernel=int4_kernel)
    saved = 0
    for stack in (talker.model, talker.code_predictor.model):
        for layer in _layers(stack):
            originals = list(layer.parameters())
            layer.self_attn.fuse()
            layer.mlp.fuse()
            for parent in (layer.self_attn, layer.mlp):
                for name, child in list(parent.named_children()):
                    if isinstance(child, nn.Linear):
                        saved += _replace(parent, name, convert(child, False, name))
            drop_file_pages(originals, mapped or set())
    originals = list(talker.codec_head.parameters()) + list(talker.code_predictor.lm_head.parameters())
    talker.fuse()  # the stacks are fused already; this gives the heads their 2-D form and prepares the norms
    for owner, name, linear, is_head in _linears(talker):
        # The codec head (0.7 % of the bytes) keeps a plain weight in bf16: callers read its .weight.
        if is_head or owner is talker.code_predictor:
            if not (mode == "none" and linear is talker.codec_head):
                saved += _replace(owner, name, convert(linear, is_head, name))
    drop_file_pages(originals, mapped or set())
    for stack in (talker.model, talker.code_predictor.model):
        ortblocks.attach(stack)  # all-8-bit onnxruntime stacks: one graph per layer boundary
    for module in talker.modules():
        if isinstance(module, NBitsLinear) and not module.taken:
            module.materialize()  # its own session now, at load time, rather than on the first request
    talker.model.version += 1
    talker.code_predictor.model.version += 1
    if mode != "none":
        _LOGGER.info("Quantized talker and code predictor to %s (%.0f MB smaller)", mode, saved / 1e6)
    if mode == "int4":
        _LOGGER.warning(
            "quantize=int4 is experimental: its measured error is well above int8's (see the README); "
            "use it only where int8 is too slow, and listen before you rely on it"
        )


def _layers(stack: Any) -> "list[DecoderLayer]":
    return cast("list[DecoderLayer]", list(stack.layers))


def _linears(talker: "Talker") -> list[tuple[nn.Module, str, nn.Linear, bool]]:
    """(parent, attribute, linear, is_head) for every matrix streamed per frame."""
    found: list[tuple[nn.Module, str, nn.Linear, bool]] = []
    predictor = talker.code_predictor
    for stack in (talker.model, predictor.model):
        for layer in _layers(stack):
            for parent in (layer.self_attn, layer.mlp):
                for name, child in list(parent.named_children()):
                    if isinstance(child, nn.Linear):
                        found.append((parent, name, child, False))
    found.append((talker, "codec_head", talker.codec_head, True))
    for i, head in enumerate(predictor.lm_head):
        found.append((predictor.lm_head, str(i), cast(nn.Linear, head), True))
    if isinstance(predictor.small_to_mtp_projection, nn.Linear):
        found.append((predictor, "small_to_mtp_projection", predictor.small_to_mtp_projection, False))
    return found


def quantize_talker(
    talker: "Talker",
    mode: str,
    *,
    group_size: int = DEFAULT_GROUP_SIZE,
    int8_kernel: Optional[str] = None,
    int4_kernel: Optional[str] = None,
) -> int:
    """Quantizes every per-frame matrix of an already fused Talker in place; returns the bytes saved."""
    mode = check_mode(mode)
    if mode == "none":
        return 0
    if talker.device.type != "cpu":
        raise ValueError(
            f"quantize={mode} runs on CPU only (PyTorch's int8/int4 CPU kernels); use bf16 on GPUs"
        )
    convert = converter(
        mode,
        talker.dtype,
        pack=False,
        group_size=group_size,
        int8_kernel=int8_kernel,
        int4_kernel=int4_kernel,
    )
    saved = sum(_replace(p, n, convert(lin, head, n)) for p, n, lin, head in _linears(talker))
    talker.model.version += 1
    talker.code_predictor.model.version += 1
    return saved
