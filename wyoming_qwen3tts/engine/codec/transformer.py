"""Sliding-window transformer of the 12 Hz speech decoder (``pre_transformer``), streamable.

Each layer attends to at most ``sliding_window`` keys including the current frame (transformers'
``create_sliding_window_causal_mask``: ``q - window < k <= q``). For incremental decoding a layer keeps the
post-RoPE K and V of the last ``window - 1`` frames; RoPE uses absolute frame positions, so chunked
decoding reproduces the full forward exactly (up to float round-off).
"""

from __future__ import annotations

import logging
from typing import Callable, Protocol

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import RMSNorm

_LOGGER = logging.getLogger(__name__)

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    "swish": F.silu,
    "gelu": F.gelu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_heads: int, head_dim: int, bias: bool) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(hidden, kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(hidden, kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
    ) -> torch.Tensor:
        b, n, _ = x.shape
        q = _linear(self.q_proj, x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = _linear(self.k_proj, x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = _linear(self.v_proj, x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        keys = torch.cat((k_cache, k), dim=2)
        values = torch.cat((v_cache, v), dim=2)
        ring = k_cache.shape[2]
        if ring:
            k_cache.copy_(keys[:, :, -ring:])
            v_cache.copy_(values[:, :, -ring:])
        if self.kv_heads != self.heads:
            rep = self.heads // self.kv_heads
            keys = keys.repeat_interleave(rep, dim=1)
            values = values.repeat_interleave(rep, dim=1)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.head_dim**-0.5)
        return _linear(self.o_proj, out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


def _linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` for a few frames: on CPU with the weight as the GEMM's left operand, which MKL streams
    ~1.25x faster than ``x @ W^T`` at [4, 512] x [512, 1024] (bench/RESULTS.md, issue 24)."""
    if x.device.type != "cpu":
        return layer(x)
    out = torch.mm(layer.weight, x.reshape(-1, x.shape[-1]).t()).t()
    if layer.bias is not None:
        out = out + layer.bias
    # Row-major again (a few rows: cheap), so that the norms reduce in the same order whatever the step size.
    return out.contiguous().view(*x.shape[:-1], out.shape[-1])


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class Mlp(nn.Module):
    def __init__(self, hidden: int, ffn: int, act: str) -> None:
        super().__init__()
        if act not in _ACTIVATIONS:
            raise ValueError(f"unsupported decoder hidden_act {act!r}")
        self.gate_proj = nn.Linear(hidden, ffn, bias=False)
        self.up_proj = nn.Linear(hidden, ffn, bias=False)
        self.down_proj = nn.Linear(ffn, hidden, bias=False)
        self._act = _ACTIVATIONS[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear(self.down_proj, self._act(_linear(self.gate_proj, x)) * _linear(self.up_proj, x))


class TransformerLayer(nn.Module):
    def __init__(self, cfg: DecoderConfigLike) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.self_attn = Attention(
            h, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.attention_bias
        )
        self.mlp = Mlp(h, cfg.intermediate_size, cfg.hidden_act)
        self.input_layernorm = RMSNorm(h, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(h, cfg.rms_norm_eps)
        self.self_attn_layer_scale = LayerScale(h, cfg.layer_scale_initial_scale)
        self.mlp_layer_scale = LayerScale(h, cfg.layer_scale_initial_scale)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
    ) -> torch.Tensor:
        a = self.self_attn(self.input_layernorm(x), cos, sin, mask, k_cache, v_cache)
        x = x + self.self_attn_layer_scale(a)
        return x + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(x)))


class DecoderConfigLike(Protocol):
    """The config fields the transformer reads (``decoder.DecoderConfig`` provides them)."""

    @property
    def hidden_size(self) -> int: ...
    @property
    def intermediate_size(self) -> int: ...
    @property
    def num_hidden_layers(self) -> int: ...
    @property
    def num_attention_heads(self) -> int: ...
    @property
    def num_key_value_heads(self) -> int: ...
    @property
    def head_dim(self) -> int: ...
    @property
    def attention_bias(self) -> bool: ...
    @property
    def hidden_act(self) -> str: ...
    @property
    def rms_norm_eps(self) -> float: ...
    @property
    def layer_scale_initial_scale(self) -> float: ...
    @property
    def rope_theta(self) -> float: ...
    @property
    def sliding_window(self) -> int: ...
    @property
    def latent_dim(self) -> int: ...


class DecoderTransformer(nn.Module):
    """``pre_transformer``: input_proj -> layers -> RMSNorm -> output_proj, on [B, n, latent] frames."""

    def __init__(self, cfg: DecoderConfigLike) -> None:
        super().__init__()
        self.layers = nn.ModuleList([TransformerLayer(cfg) for _ in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.input_proj = nn.Linear(cfg.latent_dim, cfg.hidden_size)
        self.output_proj = nn.Linear(cfg.hidden_size, cfg.latent_dim)
        self.window = cfg.sliding_window
        self.ring = cfg.sliding_window - 1
        d = cfg.head_dim
        # Same expression as transformers' default RoPE init. Kept out of the buffers so that
        # module.to(bfloat16) cannot round it; the reference computes RoPE in fp32 too. On the CPU
        # explicitly: the engine builds this module on the meta device (loading.py) and loads the weights.
        self._inv_freq = {
            torch.device("cpu"): 1.0
            / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64, device="cpu").float() / d))
        }

    def _inv_freq_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._inv_freq:
            self._inv_freq[device] = self._inv_freq[torch.device("cpu")].to(device)
        return self._inv_freq[device]

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor, keys: list[torch.Tensor], values: list[torch.Tensor]
    ) -> torch.Tensor:
        """x: [B, n, latent]; pos: [B] absolute frame index of x[:, 0]; keys/values: per-layer rings."""
        n = x.shape[1]
        steps = torch.arange(n, device=x.device)
        positions = pos[:, None] + steps  # [B, n]
        # fp32 product equals the reference's fp32 (inv_freq @ position_ids) with a 1-term sum.
        freqs = positions.float()[..., None] * self._inv_freq_on(x.device)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos().to(x.dtype)[:, None]
        sin = emb.sin().to(x.dtype)[:, None]
        mask = self._mask(pos, n, steps)
        h = _linear(self.input_proj, x)
        for layer, k_cache, v_cache in zip(self.layers, keys, values):
            h = layer(h, cos, sin, mask, k_cache, v_cache)
        return _linear(self.output_proj, self.norm(h))

    def _mask(self, pos: torch.Tensor, n: int, steps: torch.Tensor) -> torch.Tensor:
        """Bool [B, 1, n, ring + n]; key m sits at absolute position pos - ring + m."""
        m = torch.arange(self.ring + n, device=pos.device)
        rel = m[None, :] - self.ring - steps[:, None]  # key position - query position
        band = (rel <= 0) & (rel > -self.window)
        valid = m[None, :] >= (self.ring - pos)[:, None]  # key position >= 0: not before the stream start
        return (band[None] & valid[:, None, :])[:, None]
