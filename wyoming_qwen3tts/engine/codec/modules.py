"""Convolutional building blocks of the 12 Hz speech decoder, with exact streaming state.

Every causal convolution can run on a chunk of its input when it is given the tail of the previous input
(its "cache"): ``conv(cat(cache, x))`` with zero-initialised caches is exactly the reference's zero-padded
causal convolution, so the same code serves the full decode (fresh zero state) and incremental decoding.

Stateful modules get a ``slot`` index into the flat list of cache tensors held by ``DecoderState``; the
containers pass that list down. Parameter names mirror ``Qwen3TTSTokenizerV2Decoder`` (qwen-tts 0.1.1)
so the checkpoint loads strictly.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional, cast

import torch
from torch import nn
from torch.nn import functional as F

from . import onednn

_LOGGER = logging.getLogger(__name__)

Caches = list[torch.Tensor]


def weight_left_mm(weight: torch.Tensor, x: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``weight [O, I] @ x[b] [I, n] (+ bias)`` for each row b: [B, I, n] -> [B, O, n] (CPU paths only).

    One ``mm`` per row with the weight as the left operand: ``torch.matmul`` of a matrix and a batch
    folds it into ``x^T @ weight^T``, which MKL runs ~1.3x slower for a big weight and few columns."""
    if x.shape[0] == 1:
        out = torch.mm(weight, x[0])[None]
    else:
        out = torch.stack([torch.mm(weight, row) for row in x])
    return out if bias is None else out.add_(bias[:, None])


class CausalConv(nn.Module):
    """Causal 1-d convolution (stride 1): left context of ``(k - 1) * d`` samples kept as state."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, dilation: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel_size, dilation=dilation, groups=groups)
        self.cache_len = (kernel_size - 1) * dilation
        self.slot = -1  # assigned by SpeechDecoder

    # Use the im2col GEMM (groups == 1 only) when B * n_out * gemm_ratio <= C_out, else F.conv1d (8: the
    # 768-channel convs of a 4-frame step, n = 128, run ~5 % faster in oneDNN than as a GEMM).
    gemm_ratio = 8

    def cache_shape(self) -> tuple[int, int]:
        return (self.conv.in_channels, self.cache_len)

    def forward(self, x: torch.Tensor, caches: Caches) -> torch.Tensor:
        if self.cache_len:
            cache = caches[self.slot]
            x = torch.cat((cache, x), dim=-1)
            # The cat is a fresh tensor, so updating the cache in place cannot alias the conv input.
            cache.copy_(x[..., -self.cache_len :])
        conv = self.conv
        b, n_out = x.shape[0], x.shape[-1] - self.cache_len
        cpu = x.device.type == "cpu"
        if cpu and conv.groups == 1 and conv.out_channels * 8 <= conv.in_channels and self.cache_len:
            return self._narrow(x, n_out)
        if conv.groups != 1 or b * n_out * self.gemm_ratio > conv.out_channels:
            return conv(x)
        # Few output samples for a big kernel (low-rate stages, small streaming steps): one im2col GEMM
        # reads the weight once; oneDNN would re-layout the whole weight on every call.
        weight = conv.weight  # [C_out, C_in, k]
        c_out, c_in, k = weight.shape
        if not cpu:  # accelerators: the GEMM as before issue 24
            if k == 1:
                cols = x.transpose(1, 2)
            else:
                cols = x.unfold(2, self.cache_len + 1, 1)[..., :: conv.dilation[0]]  # [B, C_in, n, k]
                cols = cols.permute(0, 2, 1, 3).reshape(b, n_out, c_in * k)
            return nn.functional.linear(cols, weight.view(c_out, c_in * k), conv.bias).transpose(1, 2)
        # CPU: the weight as the left operand. MKL streams a [C_out, C_in * k] matrix against a few columns
        # ~1.4x faster than against it as the right one (bench/RESULTS.md, issue 24), and the result is
        # already [B, C_out, n].
        if k == 1:
            cols = x
        else:
            d = conv.dilation[0]
            cols = torch.stack([x[..., j * d : j * d + n_out] for j in range(k)], dim=2)  # [B, C_in, k, n]
            cols = cols.view(b, c_in * k, n_out)
        return weight_left_mm(weight.view(c_out, c_in * k), cols, conv.bias)

    def _narrow(self, x: torch.Tensor, n_out: int) -> torch.Tensor:
        """Few output channels (the final 96 -> 1 conv): every tap of every input sample in one GEMM
        [k * C_out, C_in] @ [C_in, L], then k shifted adds. oneDNN runs this shape ~3x slower."""
        weight = self.conv.weight  # [C_out, C_in, k]
        c_out, c_in, k = weight.shape
        d = self.conv.dilation[0]
        taps = weight_left_mm(weight.permute(2, 0, 1).reshape(k * c_out, c_in), x, None)  # [B, k * C_out, L]
        out = taps[:, :c_out, :n_out].clone()
        for j in range(1, k):
            out.add_(taps[:, j * c_out : (j + 1) * c_out, j * d : j * d + n_out])
        return out if self.conv.bias is None else out.add_(self.conv.bias[:, None])


class CausalTransConv(nn.Module):
    """Transposed convolution with the reference's right trim (``k - s``), streamable.

    Output block t (``s`` samples) depends on inputs ``t - m .. t`` with ``m = ceil(k / s) - 1``; the last
    ``m`` inputs are the state. The blocks of the ``m`` cached inputs are recomputed and dropped.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose1d(in_ch, out_ch, kernel_size, stride=stride)
        self.stride = stride
        self.cache_len = math.ceil(kernel_size / stride) - 1
        self.slot = -1
        self.frame_samples = 0  # input samples per codec frame (set by SpeechDecoder)
        self._packed = onednn.PackCache()
        self._only: Optional[onednn.PackedOnly] = None  # keep_packed_only: the packed matrix, no plain weight
        self.register_state_dict_post_hook(_plain_in_state_dict)
        self.register_load_state_dict_pre_hook(_unpack_before_load)

    # Overlapping kernels use the GEMM below when B * n * gemm_ratio <= C_in, else conv_transpose1d.
    gemm_ratio = 32

    def cache_shape(self) -> tuple[int, int]:
        return (self.conv.in_channels, self.cache_len)

    def keep_packed_only(self) -> int:
        """Packs the weight for good and frees the plain one; returns the bytes freed (0: not packable).

        For the layers whose streaming chunks always take the packed GEMM (SpeechDecoder.keep_packed_only),
        the plain weight is only read by long inputs' deconvolution: those take the packed GEMM as well (the
        same products, summed in another order: float round-off). ``state_dict`` still yields the plain
        weight (rebuilt exactly from the packed one), and ``load_state_dict`` restores a plain weight first.
        """
        weight = self.conv.weight
        if self._only is not None or not onednn.can_pack(weight):
            return 0
        matrix = onednn.transposed_matrix(weight, self.stride)  # a copy
        freed = weight.numel() * weight.element_size()
        # A meta Parameter keeps the shape (new_state, module_bytes); the storage goes before packing, so
        # the layer is never held three times.
        self.conv.weight = nn.Parameter(torch.empty(weight.shape, device="meta"), requires_grad=False)
        del weight
        packed = onednn.pack(matrix)
        assert packed is not None  # can_pack held
        self._only = onednn.PackedOnly(packed)
        self._packed = onednn.PackCache()
        return freed

    def _plain(self) -> torch.Tensor:
        assert self._only is not None
        c_in, _, k = self.conv.weight.shape
        return onednn.transposed_weight(self._only.packed, c_in, k, self.stride)

    def unpack(self) -> None:
        """Undoes keep_packed_only: the plain weight again (exact), packed on first use like any layer."""
        if self._only is not None:
            self.conv.weight = nn.Parameter(self._plain(), requires_grad=False)
            self._only = None

    def forward(self, x: torch.Tensor, caches: Caches) -> torch.Tensor:
        b, c_in, n = x.shape
        m, s = self.cache_len, self.stride
        if m:
            cache = caches[self.slot]
            x = torch.cat((cache, x), dim=-1)
            cache.copy_(x[..., -m:])
            if self._only is None and b * n * self.gemm_ratio > c_in:  # long: oneDNN's deconvolution
                return self.conv(x)[..., m * s : (m + n) * s]
        bias = self.conv.bias
        weight = self.conv.weight
        if self._only is not None:
            packed: Optional[torch.Tensor] = self._only.packed
        else:
            packed = self._packed.get(lambda: onednn.transposed_matrix(weight, s), weight)
        if packed is not None:
            # CPU fp32: one packed GEMM over [x_t, x_t-1, .., x_t-m] (onednn.transposed_matrix), no
            # overlap-add.
            xt = x.transpose(1, 2)  # [B, n + m, C_in]
            cols = torch.cat([xt[:, m - i : m - i + n] for i in range(m + 1)], dim=2) if m else xt
            bias_rows = None if bias is None else bias.repeat_interleave(s)
            blocks = onednn.linear(cols, packed, bias_rows)  # [B, n, C_out * s]
            return blocks.view(b, n, -1, s).permute(0, 2, 1, 3).reshape(b, -1, n * s)
        # One GEMM: every input sample times the whole kernel, [B, n + m, C_out, k]. For few input samples
        # CPU conv_transpose1d falls back to a slow im2col path; with k == s there is nothing to overlap.
        # weight: [C_in, C_out, k]
        c_out, k = weight.shape[1], weight.shape[2]
        taps = torch.matmul(x.transpose(1, 2), weight.reshape(weight.shape[0], c_out * k))
        taps = taps.view(b, n + m, c_out, k)
        if (m + 1) * s != k:
            taps = nn.functional.pad(taps, (0, (m + 1) * s - k))
        # Output block t (s samples) = sum over i of the i-th kernel segment of input t - i.
        out = taps[:, m:, :, :s]
        for i in range(1, m + 1):
            out = out + taps[:, m - i : m - i + n, :, i * s : (i + 1) * s]
        out = out.permute(0, 2, 1, 3).reshape(b, c_out, n * s)  # a copy (or a view of the temporary taps)
        return out if bias is None else out.add_(bias[:, None])


def _plain_in_state_dict(module: nn.Module, state: dict, prefix: str, _meta: Any) -> None:
    layer = cast(CausalTransConv, module)
    if layer._only is not None and prefix + "conv.weight" in state:
        state[prefix + "conv.weight"] = layer._plain()


def _unpack_before_load(module: nn.Module, *_: Any) -> None:
    # Loaded into in place (or replaced with assign=True), the weight must be a real one first.
    cast(CausalTransConv, module).unpack()


class SnakeBeta(nn.Module):
    """``x + sin^2(x * e^alpha) / (e^beta + 1e-9)``, per channel; the exps are cached by ``refresh()``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))
        self._alpha_exp: torch.Tensor | None = None
        self._beta_inv: torch.Tensor | None = None

    @torch.no_grad()
    def refresh(self) -> None:
        # Same formula as the reference, evaluated once (in at least fp32) instead of on every call.
        dtype = self.alpha.dtype
        work = torch.promote_types(dtype, torch.float32)
        self._alpha_exp = torch.exp(self.alpha.to(work)).to(dtype)[None, :, None]
        self._beta_inv = (1.0 / (torch.exp(self.beta.to(work)) + 1e-9)).to(dtype)[None, :, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._alpha_exp is None or self._beta_inv is None:
            self.refresh()
        assert self._alpha_exp is not None and self._beta_inv is not None
        y = x * self._alpha_exp
        return torch.addcmul(x, y.sin_().square_(), self._beta_inv)  # one pass less than mul_ + add_


class ResidualUnit(nn.Module):
    """SnakeBeta -> causal conv k7 (dilation d) -> SnakeBeta -> conv k1 -> + input."""

    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.act1 = SnakeBeta(dim)
        self.conv1 = CausalConv(dim, dim, 7, dilation=dilation)
        self.act2 = SnakeBeta(dim)
        self.conv2 = CausalConv(dim, dim, 1)

    def forward(self, x: torch.Tensor, caches: Caches) -> torch.Tensor:
        y = self.conv2(self.act2(self.conv1(self.act1(x), caches)), caches)
        return y.add_(x)


class DecoderBlock(nn.Module):
    """SnakeBeta -> causal transposed conv (k = 2r, s = r) -> residual units with dilation 1, 3, 9."""

    def __init__(self, in_dim: int, out_dim: int, rate: int) -> None:
        super().__init__()
        self.block = nn.ModuleList(
            [SnakeBeta(in_dim), CausalTransConv(in_dim, out_dim, 2 * rate, rate)]
            + [ResidualUnit(out_dim, d) for d in (1, 3, 9)]
        )

    def forward(self, x: torch.Tensor, caches: Caches) -> torch.Tensor:
        x = self.block[0](x)
        for layer in self.block[1:]:
            x = layer(x, caches)
        return x


class ConvNeXtBlock(nn.Module):
    """Causal depthwise conv k7 -> LayerNorm -> Linear(4x) -> GELU -> Linear -> x gamma -> + input."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = CausalConv(dim, dim, 7, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor, caches: Caches) -> torch.Tensor:
        if x.device.type != "cpu":  # accelerators: as before issue 24
            h = self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x, caches).transpose(1, 2)))))
            return x + (self.gamma * h).transpose(1, 2)
        h = self.norm(self.dwconv(x, caches).transpose(1, 2)).transpose(1, 2)  # [B, dim, n]
        # CPU: weights as the left operand (a few frames by 16 MB matrices: memory-bound; see CausalConv),
        # which also keeps the channels-first layout: no transposes around the linears.
        h = weight_left_mm(self.pwconv1.weight, h, self.pwconv1.bias)
        h = weight_left_mm(self.pwconv2.weight, self.act(h), self.pwconv2.bias)
        return x + self.gamma[:, None] * h


class UpsampleStage(nn.ModuleList):
    """``upsample.N``: [transposed conv k = s = factor, ConvNeXt block]."""

    def __init__(self, dim: int, factor: int) -> None:
        super().__init__([CausalTransConv(dim, dim, factor, factor), ConvNeXtBlock(dim)])

    def forward(self, x: torch.Tensor, caches: Caches) -> torch.Tensor:
        return self[1](self[0](x, caches), caches)


# --- RVQ dequantisation (parameter containers; the lookup itself lives in SpeechDecoder) ---


class EuclideanCodebook(nn.Module):
    def __init__(self, dim: int, codebook_size: int) -> None:
        super().__init__()
        self.cluster_usage = nn.Parameter(torch.ones(codebook_size))
        self.embedding_sum = nn.Parameter(torch.zeros(codebook_size, dim))

    def vectors(self) -> torch.Tensor:
        """Codebook vectors ``embedding_sum / clamp(cluster_usage, 1e-5)``, computed in at least fp32."""
        work = torch.promote_types(self.embedding_sum.dtype, torch.float32)
        return self.embedding_sum.to(work) / self.cluster_usage.to(work).clamp(min=1e-5)[:, None]


class VectorQuantization(nn.Module):
    def __init__(self, dim: int, codebook_size: int) -> None:
        super().__init__()
        self._codebook = EuclideanCodebook(dim, codebook_size)


class ResidualVQ(nn.Module):
    def __init__(self, layers: int, dim: int, codebook_size: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([VectorQuantization(dim, codebook_size) for _ in range(layers)])


class ResidualVectorQuantizer(nn.Module):
    """One RVQ group: codebooks of ``dim`` and bias-free 1x1 projections to/from ``io_dim``."""

    def __init__(self, layers: int, dim: int, io_dim: int, codebook_size: int) -> None:
        super().__init__()
        # input_proj is only used for encoding; it exists so that the checkpoint loads strictly.
        self.input_proj = nn.Conv1d(io_dim, dim, 1, bias=False)
        self.output_proj = nn.Conv1d(dim, io_dim, 1, bias=False)
        self.vq = ResidualVQ(layers, dim, codebook_size)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, dim] -> [B, T, io_dim] (the 1x1 conv as a matmul on channels-last data)."""
        return F.linear(x, self.output_proj.weight[:, :, 0])


class SplitResidualVectorQuantizer(nn.Module):
    """Codebook 0 (semantic) and codebooks 1.. (acoustic), each group with its own output projection."""

    def __init__(self, num_quantizers: int, dim: int, io_dim: int, codebook_size: int) -> None:
        super().__init__()
        self.rvq_first = ResidualVectorQuantizer(1, dim, io_dim, codebook_size)
        self.rvq_rest = ResidualVectorQuantizer(num_quantizers - 1, dim, io_dim, codebook_size)

    def codebooks(self) -> list[EuclideanCodebook]:
        groups = (self.rvq_first, self.rvq_rest)
        return [cast(EuclideanCodebook, vq._codebook) for g in groups for vq in g.vq.layers]
