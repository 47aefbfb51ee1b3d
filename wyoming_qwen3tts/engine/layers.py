"""Shared transformer building blocks: RMSNorm, RoPE, attention over a static KV cache, SwiGLU.

These know nothing about talkers or codecs. Parameter names follow the reference checkpoints
(`self_attn.q_proj`, `mlp.gate_proj`, ...), so the modules load the official weights unchanged.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .config import TransformerConfig


class RMSNorm(nn.Module):
    """Normalises in fp32 and multiplies by the weight after casting back, exactly like the reference."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


class Rotary(nn.Module):
    """NeoX rotate-half RoPE. The talker's interleaved MRoPE is identical to this for TTS (all three
    position rows are equal), which was verified bit-exactly against the reference."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        self.theta = theta
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """positions: integer tensor of any shape -> (cos, sin) of shape positions.shape + (head_dim,)."""
        freqs = positions.to(torch.float32)[..., None] * self.inv_freq.to(torch.float32)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, heads, T, D]; cos/sin: [B, T, D]."""
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    return (x * cos) + (rotate_half(x) * sin)


class KVCache:
    """Preallocated keys/values for every layer of one stack: [layers, slots, kv_heads, max_len, head_dim].

    A slot belongs to one request for its whole life; rows of a decode batch are slots 0..B-1, so the
    attention reads a plain view of the cache (no gather) and the shapes stay static for graph capture.
    """

    def __init__(
        self,
        layers: int,
        slots: int,
        kv_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        shape = (layers, slots, kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.slots = slots

    @property
    def bytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()


class Attention(nn.Module):
    """GQA self-attention with per-head q/k RMSNorm before RoPE (Qwen3), writing into a KVCache."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        self.scale = cfg.head_dim**-0.5
        self.q_proj = nn.Linear(cfg.hidden_size, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, cfg.hidden_size, bias=False)
        self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)

    def _qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        b, t, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(b, t, self.heads, self.head_dim)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(b, t, self.kv_heads, self.head_dim)).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def prefill(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache,
        layer: int,
        slot: int,
        start: int,
    ) -> torch.Tensor:
        """n equal-length sequences (x: [n, T, H]) written to slots slot..slot+n-1 at positions
        start..start+T-1, with causal attention over everything cached before them."""
        q, k, v = self._qkv(x, cos, sin)
        n, t = x.shape[0], x.shape[1]
        end = start + t
        cache.k[layer, slot : slot + n, :, start:end] = k
        cache.v[layer, slot : slot + n, :, start:end] = v
        keys = cache.k[layer, slot : slot + n, :, :end]
        values = cache.v[layer, slot : slot + n, :, :end]
        rep = self.heads // self.kv_heads
        keys = keys.repeat_interleave(rep, dim=1)
        values = values.repeat_interleave(rep, dim=1)
        if start == 0:
            out = F.scaled_dot_product_attention(q, keys, values, is_causal=True, scale=self.scale)
        else:
            allowed = (
                torch.arange(end, device=x.device)[None, :]
                <= torch.arange(start, end, device=x.device)[:, None]
            )
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed, scale=self.scale)
        return self.o_proj(out.transpose(1, 2).reshape(n, t, -1))

    def decode(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache,
        layer: int,
        positions: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """One new token for each of B rows (rows = slots 0..B-1). positions: [B] write index per row;
        mask: [B, 1, 1, L] bool over the first L cache entries (L > max(positions))."""
        b = x.shape[0]
        q, k, v = self._qkv(x, cos, sin)
        rows = torch.arange(b, device=x.device)
        cache.k[layer, rows, :, positions] = k[:, :, 0]
        cache.v[layer, rows, :, positions] = v[:, :, 0]
        length = mask.shape[-1]
        keys = cache.k[layer, :b, :, :length]
        values = cache.v[layer, :b, :, :length]
        # GQA without copying the cache: the queries that share a kv head become extra query rows.
        rep = self.heads // self.kv_heads
        q = q.reshape(b, self.kv_heads, rep, self.head_dim)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scale)
        return self.o_proj(out.reshape(b, 1, self.heads * self.head_dim))


class SwiGLU(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size)

    def _mlp(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.mlp(self.post_attention_layernorm(h))

    def prefill(self, x, cos, sin, cache: KVCache, layer: int, slot: int, start: int) -> torch.Tensor:
        h = x + self.self_attn.prefill(self.input_layernorm(x), cos, sin, cache, layer, slot, start)
        return self._mlp(h)

    def decode(self, x, cos, sin, cache: KVCache, layer: int, positions, mask) -> torch.Tensor:
        h = x + self.self_attn.decode(self.input_layernorm(x), cos, sin, cache, layer, positions, mask)
        return self._mlp(h)


class DecoderStack(nn.Module):
    """`layers` + final `norm` (+ rotary), the shared body of the talker and the code predictor."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary = Rotary(cfg.head_dim, cfg.rope_theta)

    def new_cache(
        self,
        slots: int,
        max_len: int,
        dtype: torch.dtype,
        device: torch.device | str,
        kv_dtype: Optional[torch.dtype] = None,
    ) -> KVCache:
        c = self.cfg
        return KVCache(
            c.num_hidden_layers, slots, c.num_key_value_heads, max_len, c.head_dim, kv_dtype or dtype, device
        )

    def prefill(self, x: torch.Tensor, cache: KVCache, slot: int, start: int = 0) -> torch.Tensor:
        """x: [n, T, H] (slots slot..slot+n-1) -> final-norm hidden states [n, T, H]."""
        positions = torch.arange(start, start + x.shape[1], device=x.device)[None]
        cos, sin = self.rotary(positions, x.dtype)
        for i, layer in enumerate(self.layers):
            x = layer.prefill(x, cos, sin, cache, i, slot, start)
        return self.norm(x)

    def decode(self, x: torch.Tensor, cache: KVCache, positions: torch.Tensor, length: int) -> torch.Tensor:
        """x: [B, 1, H] for rows 0..B-1 at `positions` [B]; attends over the first `length` cache entries."""
        cos, sin = self.rotary(positions[:, None], x.dtype)
        mask = (torch.arange(length, device=x.device)[None, :] <= positions[:, None])[:, None, None, :]
        for i, layer in enumerate(self.layers):
            x = layer.decode(x, cos, sin, cache, i, positions, mask)
        return self.norm(x)
