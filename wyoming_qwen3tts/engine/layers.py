"""Shared transformer building blocks: RMSNorm, RoPE, attention over a static KV cache, SwiGLU.

These know nothing about talkers or codecs. Parameter names follow the reference checkpoints
(`self_attn.q_proj`, `mlp.gate_proj`, ...), so the modules load the official weights unchanged; after
loading, `DecoderStack.fuse()` merges q/k/v and gate/up into single matrices (one GEMV instead of three or
two). Fusion does not change a single bit: each output element is still the same dot product.

Decoding one token is a chain of GEMVs bound by memory bandwidth with small ops in between; on a CPU each
small op costs far more than its arithmetic (dispatch, and caches just flushed by the weight stream), so
the decode path (`DecoderStack.decode`) works on 2-D [B, H] rows with as few ops as possible: `mm` on the
fused matrices, cache views reused, RoPE tables computed once. fp32 stays bit-identical to the reference
formulation; bf16/fp16 use a one-kernel RMSNorm (`fast_rms_norm`) that rounds once instead of twice.
"""

from __future__ import annotations

import math
from typing import Optional, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from .config import TransformerConfig
from .kvcache import KVCache


class Matrix(Protocol):
    """What a layer's weight matrix is after load (Projection, or quant.py's Int8/Int4/DynamicInt8/Fp16/
    Packed linears): `mm` for the 2-D decode path, a call for any leading dimensions."""

    in_features: int
    out_features: int

    def mm(self, x: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class FusedLayers(Protocol):
    """A stack's layer loops run elsewhere (ortblocks.LayerBlocks: onnxruntime graphs per layer boundary)."""

    def decode(self, stack, x, cos, sin, cache: KVCache, at, mask) -> torch.Tensor: ...

    def prefill(self, stack, x, cos, sin, cache: KVCache, slot: int, start: int) -> torch.Tensor: ...


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """The reference's RMSNorm (normalise in fp32, cast back, then scale), bit-identical to
    `w * (h * rsqrt(mean(h^2) + eps)).to(dtype)`."""
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def fast_rms_norm(x: torch.Tensor, eps: float, weight2: Optional[torch.Tensor] = None) -> torch.Tensor:
    """RMSNorm as one LayerNorm over [x, -x]: its mean is 0, so LayerNorm's first half is x / rms(x).
    Two kernels instead of eight, fp32 math inside, one rounding at the end (the reference rounds before
    and after the weight), so it is used for bf16/fp16 only. `weight2` = the weight repeated twice."""
    n = x.shape[-1]
    return F.layer_norm(torch.cat((x, -x), dim=-1), (2 * n,), weight2, None, eps).narrow(-1, 0, n)


class RMSNorm(nn.Module):
    """Normalises in fp32 and multiplies by the weight after casting back, exactly like the reference;
    after `prepare()`, bf16/fp16 inputs take `fast_rms_norm`."""

    weight2: Optional[torch.Tensor]

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps
        self.register_buffer("weight2", None, persistent=False)

    def prepare(self, fast: bool = True) -> None:
        """Enables (or disables) the one-kernel form for bf16/fp16 inputs."""
        self.weight2 = torch.cat((self.weight.detach(), self.weight.detach())) if fast else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight2 is not None and x.dtype != torch.float32:
            return fast_rms_norm(x, self.eps, self.weight2)
        return rms_norm(x, self.weight, self.eps)


class Projection(nn.Linear):
    """A bias-free nn.Linear with `mm`, the 2-D decode path: one dispatch instead of linear's five. The
    quantized matrices of quant.py have the same method."""

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mm(x, self.weight.t())


def as_projection(*parts: nn.Linear) -> Projection:
    """One Projection computing the concatenated outputs of `parts` (shares the weight if just one)."""
    weight = parts[0].weight if len(parts) == 1 else torch.cat([p.weight.detach() for p in parts])
    if any(p.bias is not None for p in parts):
        raise ValueError("fused projections have no bias")
    out = Projection(weight.shape[1], weight.shape[0], bias=False, device="meta")
    out.weight = weight if isinstance(weight, nn.Parameter) else nn.Parameter(weight, requires_grad=False)
    return out


class Rotary(nn.Module):
    """NeoX rotate-half RoPE. The talker's interleaved MRoPE is identical to this for TTS (all three
    position rows are equal), which was verified bit-exactly against the reference."""

    inv_freq: torch.Tensor

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        self.theta = theta
        # On the CPU explicitly: built under torch.device("meta") (loading.py), the same expression would go
        # through the meta kernels, whose first use imports torch._dynamo (~1.5 s of a 2-core load).
        steps = torch.arange(0, head_dim, 2, dtype=torch.int64, device="cpu")
        inv_freq = 1.0 / (theta ** (steps.float() / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._tables: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """positions: integer tensor of any shape -> (cos, sin) of shape positions.shape + (head_dim,)."""
        freqs = positions.to(torch.float32)[..., None] * self.inv_freq.to(torch.float32)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def tables(
        self, length: int, dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, signed sin) for positions 0..length-1, [length, head_dim], computed once per dtype and
        device with the same elementwise expression as forward (so the same bits). The sign of the first
        half of sin is folded in, which turns rotate-half into a plain swap of the halves (apply_rope)."""
        key = (dtype, torch.device(device))
        have = self._tables.get(key)
        if have is None or have[0].shape[0] < length:
            cos, sin = self.forward(torch.arange(length, device=device), dtype)
            half = sin.shape[-1] // 2
            have = (cos, torch.cat((-sin[:, :half], sin[:, half:]), dim=-1))
            self._tables[key] = have
        return have

    def reset(self) -> None:
        """Forget the tables (after inv_freq was replaced)."""
        self._tables.clear()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin with the sign already in `signed_sin` (Rotary.tables): swapping the
    halves is one op, and (-a) * b == a * (-b) exactly, so the result equals the reference bit for bit."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((x.narrow(-1, half, half), x.narrow(-1, 0, half)), dim=-1) * signed_sin


class Attention(nn.Module):
    """GQA self-attention with per-head q/k RMSNorm before RoPE (Qwen3), writing into a KVCache.

    Runs on the fused form only (`fuse()`): one qkv matrix, and the q and k norms and RoPE applied to
    all q and k heads at once ([..., heads + kv_heads, head_dim]).
    """

    qk_norm: torch.Tensor

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        self.scale = cfg.head_dim**-0.5
        self.eps = cfg.rms_norm_eps
        self.q_proj = nn.Linear(cfg.hidden_size, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, self.kv_heads * self.head_dim, bias=False)
        self.o_proj = cast(Matrix, nn.Linear(self.heads * self.head_dim, cfg.hidden_size, bias=False))
        self.q_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(self.head_dim, cfg.rms_norm_eps)
        self.qkv_proj: Optional[Matrix] = None
        self.fast_norm = False  # set by DecoderStack.prepare_norms

    def fuse(self) -> None:
        """Merge q/k/v into `qkv_proj` and the two head norms into one [heads + kv_heads, D] weight."""
        if self.qkv_proj is not None:
            return
        self.qkv_proj = as_projection(self.q_proj, self.k_proj, self.v_proj)
        self.o_proj = as_projection(cast(nn.Linear, self.o_proj))
        qk_norm = torch.cat(
            (
                self.q_norm.weight.detach().expand(self.heads, -1),
                self.k_norm.weight.detach().expand(self.kv_heads, -1),
            )
        )
        self.register_buffer("qk_norm", qk_norm.contiguous(), persistent=False)
        del self.q_proj, self.k_proj, self.v_proj, self.q_norm, self.k_norm

    def _rotated(self, qk: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Per-head RMSNorm of q and k heads together, then RoPE."""
        if qk.dtype == torch.float32 or not self.fast_norm:
            normed = rms_norm(qk, self.qk_norm, self.eps)
        else:
            normed = fast_rms_norm(qk, self.eps) * self.qk_norm
        return apply_rope(normed, cos, sin)

    def _qkv(self) -> Matrix:
        if self.qkv_proj is None:
            raise RuntimeError("Attention.fuse() must run after the weights are loaded")
        return self.qkv_proj

    def _split(self, qkv: torch.Tensor):
        if self.qkv_proj is None:
            raise RuntimeError("Attention.fuse() must run after the weights are loaded")
        qk_heads = self.heads + self.kv_heads
        qkv = qkv.unflatten(-1, (qk_heads + self.kv_heads, self.head_dim))
        return qkv.narrow(-2, 0, qk_heads), qkv.narrow(-2, qk_heads, self.kv_heads)

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
        start..start+T-1, with causal attention over everything cached before them. cos/sin: [T, 1, D]."""
        return self.o_proj(self.attend_prefill(self._qkv()(x), cos, sin, cache, layer, slot, start))

    def attend_prefill(
        self,
        qkv: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache,
        layer: int,
        slot: int,
        start: int,
    ) -> torch.Tensor:
        """`prefill` from the fused q/k/v projection [n, T, (heads + 2 kv_heads) D] to the attention output
        before o_proj [n, T, heads D]."""
        qk, v = self._split(qkv)
        qk = self._rotated(qk, cos, sin)
        q, k, v = (
            qk[:, :, : self.heads].transpose(1, 2),
            qk[:, :, self.heads :].transpose(1, 2),
            v.transpose(1, 2),
        )
        n, t = qkv.shape[0], qkv.shape[1]
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
                torch.arange(end, device=qkv.device)[None, :]
                <= torch.arange(start, end, device=qkv.device)[:, None]
            )
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed, scale=self.scale)
        return out.transpose(1, 2).reshape(n, t, -1)

    def decode(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache,
        layer: int,
        at: "int | torch.Tensor",
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """One new token for each of B rows (x [B, H], rows = slots 0..B-1) -> [B, H], attending over the
        first L cache entries (mask [B, 1, 1, L] bool). `at`: the write index shared by all rows (an int),
        or a [B] tensor of per-row positions."""
        return self.o_proj.mm(self.attend(self._qkv().mm(x), cos, sin, cache, layer, at, mask))

    def attend(
        self,
        qkv: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache,
        layer: int,
        at: "int | torch.Tensor",
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """`decode` from the fused q/k/v projection [B, (heads + 2 kv_heads) D] to the attention output
        before o_proj [B, heads D]."""
        b = qkv.shape[0]
        qk, v = self._split(qkv)
        qk = self._rotated(qk, cos, sin)
        k = qk.narrow(1, self.heads, self.kv_heads)
        if isinstance(at, int):
            keys, values = cache.append(layer, b, at, k, v)
        else:
            keys, values = cache.scatter(layer, at, mask.shape[-1], k, v)
        # GQA without copying the cache: the queries that share a kv head become extra query rows.
        q = qk.narrow(1, 0, self.heads).unflatten(1, (self.kv_heads, -1))
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scale)
        return out.view(b, self.heads * self.head_dim)


class SwiGLU(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.intermediate = intermediate
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = cast(Matrix, nn.Linear(intermediate, hidden, bias=False))
        self.gate_up_proj: Optional[Matrix] = None

    def fuse(self) -> None:
        if self.gate_up_proj is None:
            self.gate_up_proj = as_projection(self.gate_proj, self.up_proj)
            self.down_proj = as_projection(cast(nn.Linear, self.down_proj))
            del self.gate_proj, self.up_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up_proj is None:
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        gate_up = self.gate_up_proj(x)
        i = self.intermediate
        return self.down_proj(F.silu(gate_up[..., :i]) * gate_up[..., i:])

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, H] (fused form)."""
        assert self.gate_up_proj is not None, "SwiGLU.fuse() must run after the weights are loaded"
        gate_up = self.gate_up_proj.mm(x)
        i = self.intermediate
        return self.down_proj.mm(F.silu(gate_up.narrow(1, 0, i)) * gate_up.narrow(1, i, i))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size)

    def prefill(self, x, cos, sin, cache: KVCache, layer: int, slot: int, start: int) -> torch.Tensor:
        h = x + self.self_attn.prefill(self.input_layernorm(x), cos, sin, cache, layer, slot, start)
        return h + self.mlp(self.post_attention_layernorm(h))

    def decode(self, x, cos, sin, cache: KVCache, layer: int, at, mask) -> torch.Tensor:
        h = x + self.self_attn.decode(self.input_layernorm(x), cos, sin, cache, layer, at, mask)
        return h + self.mlp.decode(self.post_attention_layernorm(h))


class DecoderStack(nn.Module):
    """`layers` + final `norm` (+ rotary), the shared body of the talker and the code predictor."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary = Rotary(cfg.head_dim, cfg.rope_theta)
        self.version = 0  # bumped by every load-time rewrite: traced steps (jit.py) are retaken
        self.blocks: Optional[FusedLayers] = None  # set by ortblocks.attach (all-8-bit onnxruntime stacks)

    def fuse(self) -> None:
        """Load-time: fused q/k/v and gate/up matrices, 2-D decode paths and fast norms in every layer."""
        for layer in cast("list[DecoderLayer]", self.layers):
            layer.self_attn.fuse()
            layer.mlp.fuse()
        self.prepare_norms(True)

    def prepare_norms(self, fast: bool) -> None:
        """`fast`: bf16/fp16 norms as one kernel (`fast_rms_norm`); False: the reference's formulation."""
        self.version += 1
        for layer in cast("list[DecoderLayer]", self.layers):
            layer.self_attn.fast_norm = fast
            layer.input_layernorm.prepare(fast)
            layer.post_attention_layernorm.prepare(fast)
        self.norm.prepare(fast)

    def new_cache(
        self,
        slots: int,
        max_len: int,
        dtype: torch.dtype,
        device: torch.device | str,
        kv_dtype: Optional[torch.dtype] = None,
    ) -> KVCache:
        c = self.cfg
        self.rotary.tables(max_len, dtype, torch.device(device))
        return KVCache(
            c.num_hidden_layers, slots, c.num_key_value_heads, max_len, c.head_dim, kv_dtype or dtype, device
        )

    def prefill(self, x: torch.Tensor, cache: KVCache, slot: int, start: int = 0) -> torch.Tensor:
        """x: [n, T, H] (slots slot..slot+n-1) -> final-norm hidden states [n, T, H]."""
        end = start + x.shape[1]
        cos, sin = self.rotary.tables(max(end, cache.max_len), x.dtype, x.device)
        cos, sin = cos[start:end, None], sin[start:end, None]
        if self.blocks is not None:
            return self.blocks.prefill(self, x, cos, sin, cache, slot, start)
        for i, layer in enumerate(cast("list[DecoderLayer]", self.layers)):
            x = layer.prefill(x, cos, sin, cache, i, slot, start)
        return self.norm(x)

    def decode(
        self,
        x: torch.Tensor,
        cache: KVCache,
        positions: "torch.Tensor | int",
        length: Optional[int] = None,
    ) -> torch.Tensor:
        """x: [B, H] for rows 0..B-1 at `positions` -> final-norm hidden states [B, H].

        `positions`: an int when every row writes at the same index (the code predictor, one request);
        it then attends over positions 0..positions. Otherwise a [B] tensor, attending over the first
        `length` cache entries with a per-row mask."""
        if not isinstance(positions, int):
            if length is None:
                raise ValueError("length is required with per-row positions")
            return self.decode_rows(x, cache, positions, cache.span[:length])
        cos_table, sin_table = self.rotary.tables(cache.max_len, x.dtype, x.device)
        cos, sin = cos_table[positions], sin_table[positions]
        # An all-true mask rather than none: SDPA's unmasked kernel rounds differently in fp32.
        mask = torch.ones((x.shape[0], 1, 1, positions + 1), dtype=torch.bool, device=x.device)
        if self.blocks is not None:
            return self.blocks.decode(self, x, cos, sin, cache, positions, mask)
        for i, layer in enumerate(cast("list[DecoderLayer]", self.layers)):
            x = layer.decode(x, cos, sin, cache, i, positions, mask)
        return self.norm(x)

    def decode_rows(
        self, x: torch.Tensor, cache: KVCache, positions: torch.Tensor, span: torch.Tensor
    ) -> torch.Tensor:
        """The per-row form of `decode`, written to be traced (engine/jit.py): every size comes from an
        input's shape (`span` = cache.span[:L] gives the attention length), none from a Python int."""
        cos_table, sin_table = self.rotary.tables(cache.max_len, x.dtype, x.device)
        cos, sin = cos_table[positions].unsqueeze(1), sin_table[positions].unsqueeze(1)
        # Additive mask, made once per step (SDPA would turn a bool mask into this in every layer).
        hidden = (span.unsqueeze(0) > positions.unsqueeze(1)).unsqueeze(1).unsqueeze(1)
        mask = torch.zeros(hidden.shape, dtype=x.dtype, device=x.device).masked_fill_(hidden, -math.inf)
        if self.blocks is not None:
            return self.blocks.decode(self, x, cos, sin, cache, positions, mask)
        for i, layer in enumerate(cast("list[DecoderLayer]", self.layers)):
            x = layer.decode(x, cos, sin, cache, i, positions, mask)
        return self.norm(x)
