"""12 Hz speech-token decoder (``Qwen3TTSTokenizerV2Decoder``): 16 x T codes -> 24 kHz audio.

Plain PyTorch re-implementation of the qwen-tts 0.1.1 decoder with an exact stateful incremental mode:

* ``decode(codes)``: the causal forward over the whole utterance (reference ``forward``), run internally in
  exact stateful chunks so that long inputs do not need gigabytes of activations.
* ``decode_reference(codes)``: the reference ``decode()`` path, ``chunked_decode(300, 25)``: chunks of 300
  frames each re-decoded with up to 25 frames of left context. Equal to ``decode`` for T <= 300.
* ``new_state(B)`` + ``step(codes, state)``: incremental decode. Each transformer layer keeps the K/V of the
  last ``sliding_window - 1`` frames (absolute RoPE positions), every causal conv keeps its last
  ``(k - 1) * d`` input samples and every overlapping transposed conv its previous input sample. Any
  chunking of ``step`` gives the same samples as ``decode`` (float round-off only).

Parameter names equal the ``decoder.``-prefixed checkpoint keys without the prefix.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from .modules import (
    CausalConv,
    CausalTransConv,
    DecoderBlock,
    SnakeBeta,
    SplitResidualVectorQuantizer,
    UpsampleStage,
)
from .transformer import DecoderTransformer

_LOGGER = logging.getLogger(__name__)

REFERENCE_CHUNK_SIZE = 300
REFERENCE_LEFT_CONTEXT = 25


@dataclass(frozen=True)
class DecoderConfig:
    """``decoder_config`` of speech_tokenizer/config.json with the reference defaults."""

    codebook_size: int = 2048
    codebook_dim: int = 512  # no reference default (the key is required there); real value
    num_quantizers: int = 16
    latent_dim: int = 1024
    decoder_dim: int = 1536
    hidden_size: int = 1024
    intermediate_size: int = 3072
    num_hidden_layers: int = 8
    num_attention_heads: int = 16
    num_key_value_heads: int = 16
    head_dim: int = 0  # 0: hidden_size // num_attention_heads, like the reference
    attention_bias: bool = False
    hidden_act: str = "silu"
    rms_norm_eps: float = 1e-5
    layer_scale_initial_scale: float = 0.01
    rope_theta: float = 10000.0
    sliding_window: int = 72
    upsample_rates: tuple[int, ...] = (8, 5, 4, 3)
    upsampling_ratios: tuple[int, ...] = (2, 2)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "DecoderConfig":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: raw[k] for k in names if k in raw and raw[k] is not None}
        for key in ("upsample_rates", "upsampling_ratios"):
            if key in kwargs:
                kwargs[key] = tuple(int(v) for v in kwargs[key])
        rope_scaling = raw.get("rope_scaling")
        if isinstance(rope_scaling, dict) and rope_scaling.get("rope_type", rope_scaling.get("type")) not in (
            None,
            "default",
        ):
            raise ValueError(f"decoder rope_scaling {rope_scaling!r} is not supported")
        cfg = cls(**kwargs, extra={k: v for k, v in raw.items() if k not in names})
        if not cfg.head_dim:
            cfg = dataclasses.replace(cfg, head_dim=cfg.hidden_size // cfg.num_attention_heads)
        if cfg.num_quantizers < 2 or cfg.codebook_dim % 2 or cfg.sliding_window < 1:
            raise ValueError(f"invalid decoder_config: {raw!r}")
        return cfg

    @property
    def total_upsample(self) -> int:
        total = 1
        for r in self.upsample_rates + self.upsampling_ratios:
            total *= r
        return total


class DecoderState:
    """Streaming state of a batch of B independent streams (all tensors have batch first)."""

    def __init__(
        self,
        pos: torch.Tensor,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        convs: list[torch.Tensor],
    ) -> None:
        self.pos = pos  # [B] int64: frames consumed per row (absolute RoPE position of the next frame)
        self.keys = keys  # per layer [B, kv_heads, window - 1, head_dim]
        self.values = values
        self.convs = convs  # per stateful conv [B, C, cache_len]

    @property
    def batch_size(self) -> int:
        return int(self.pos.shape[0])

    def tensors(self) -> list[torch.Tensor]:
        return [self.pos, *self.keys, *self.values, *self.convs]

    @torch.inference_mode()
    def reset_rows(self, rows: torch.Tensor | Sequence[int]) -> None:
        """Restart the given rows (bool mask [B] or indices) as fresh streams; no host sync."""
        if isinstance(rows, torch.Tensor) and rows.dtype == torch.bool:
            mask = rows.to(self.pos.device)
        else:
            mask = torch.zeros(self.batch_size, dtype=torch.bool, device=self.pos.device)
            mask[torch.as_tensor(rows, dtype=torch.long, device=self.pos.device)] = True
        for t in self.tensors():
            t.masked_fill_(mask.view(-1, *([1] * (t.dim() - 1))), 0)

    def clone(self) -> "DecoderState":
        return DecoderState(
            self.pos.clone(),
            [t.clone() for t in self.keys],
            [t.clone() for t in self.values],
            [t.clone() for t in self.convs],
        )


class SpeechDecoder(nn.Module):
    """Codes [B, 16, T] -> 24 kHz audio [B, T * 1920]; see the module docstring for the three modes.

    Streams of one ``DecoderState`` advance together (same n per call). A finished or cancelled row can be
    fed any valid codes (output ignored) until ``state.reset_rows`` restarts it for a new stream.
    """

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.total_upsample = cfg.total_upsample
        self.quantizer = SplitResidualVectorQuantizer(
            cfg.num_quantizers, cfg.codebook_dim // 2, cfg.codebook_dim, cfg.codebook_size
        )
        self.pre_conv = CausalConv(cfg.codebook_dim, cfg.latent_dim, 3)
        self.pre_transformer = DecoderTransformer(cfg)
        self.upsample = nn.ModuleList([UpsampleStage(cfg.latent_dim, f) for f in cfg.upsampling_ratios])
        blocks: list[nn.Module] = [CausalConv(cfg.latent_dim, cfg.decoder_dim, 7)]
        for i, rate in enumerate(cfg.upsample_rates):
            blocks.append(DecoderBlock(cfg.decoder_dim // 2**i, cfg.decoder_dim // 2 ** (i + 1), rate))
        out_dim = cfg.decoder_dim // 2 ** len(cfg.upsample_rates)
        blocks += [SnakeBeta(out_dim), CausalConv(out_dim, 1, 7)]
        self.decoder = nn.ModuleList(blocks)
        self._stateful = [
            m for m in self.modules() if isinstance(m, (CausalConv, CausalTransConv)) and m.cache_len > 0
        ]
        for slot, m in enumerate(self._stateful):
            m.slot = slot
        rate = 1  # samples per codec frame at each transposed conv's input (modules() is in forward order)
        for trans in self.modules():
            if isinstance(trans, CausalTransConv):
                trans.frame_samples, rate = rate, rate * trans.stride
        self._snakes = [m for m in self.modules() if isinstance(m, SnakeBeta)]
        self._codebooks = self.quantizer.codebooks()
        self._prepared_key: tuple | None = None
        self._prepared_src: list[torch.Tensor] = []
        self._usage = torch.empty(0, 1, device="cpu")  # real even when built on the meta device
        self.decode_chunk_frames = 64  # exact internal chunking of decode(): bounds activation memory

    @classmethod
    def from_config(cls, decoder_config: dict[str, Any]) -> "SpeechDecoder":
        return cls(DecoderConfig.from_dict(decoder_config))

    # --- derived tensors (codebook vectors, SnakeBeta exps): computed once per weight version ---

    def _derived_from(self) -> list[torch.Tensor]:
        params: list[torch.Tensor] = [
            p for cb in self._codebooks for p in (cb.embedding_sum, cb.cluster_usage)
        ]
        return params + [p for s in self._snakes for p in (s.alpha, s.beta)]

    def _weights_key(self) -> tuple:
        return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in self._derived_from())

    @torch.no_grad()
    def prepare(self) -> None:
        """(Re)compute the codebooks' clamped usage counts and the SnakeBeta factors from the weights."""
        # The lookup divides by the clamped usage counts as EuclideanCodebook.vectors() does (same dtype).
        work = torch.promote_types(self._codebooks[0].embedding_sum.dtype, torch.float32)
        self._usage = torch.cat([cb.cluster_usage.to(work).clamp(min=1e-5) for cb in self._codebooks])[
            :, None
        ]
        for s in self._snakes:
            s.refresh()
        # Holding the source storages (detach shares storage and version counter) keeps their addresses
        # from being reused by other weights, so (data_ptr, version) identifies the weights soundly.
        self._prepared_src = [p.detach() for p in self._derived_from()]
        self._prepared_key = self._weights_key()

    def _ensure_prepared(self) -> None:
        # Cheap (storage, version) check of the weights involved: catches load_state_dict, copy_, .to().
        if self._prepared_key != self._weights_key():
            self.prepare()

    def keep_packed_only(self) -> int:
        """Transposed convs that a one-frame streaming chunk already runs as a packed GEMM (CPU fp32: the
        upsample stages and the 1536 -> 768 block, ~92 MB on 0.6B) keep only their packed matrix, not the
        plain weight beside it (modules.CausalTransConv.keep_packed_only). Returns the bytes freed."""
        freed = 0
        for m in self.modules():
            if isinstance(m, CausalTransConv) and m.frame_samples * m.gemm_ratio <= m.conv.in_channels:
                freed += m.keep_packed_only()
        return freed

    # --- public API ---

    def new_state(self, batch_size: int) -> DecoderState:
        """Zeroed state for ``batch_size`` fresh streams, on the decoder's device and in its dtype."""
        ref = self.pre_conv.conv.weight
        device, dtype = ref.device, ref.dtype
        cfg = self.cfg
        kv_shape = (batch_size, cfg.num_key_value_heads, cfg.sliding_window - 1, cfg.head_dim)
        layers = cfg.num_hidden_layers
        return DecoderState(
            torch.zeros(batch_size, dtype=torch.long, device=device),
            [torch.zeros(kv_shape, device=device, dtype=dtype) for _ in range(layers)],
            [torch.zeros(kv_shape, device=device, dtype=dtype) for _ in range(layers)],
            [torch.zeros((batch_size, *m.cache_shape()), device=device, dtype=dtype) for m in self._stateful],
        )

    @torch.inference_mode()
    def step(
        self, codes: torch.Tensor, state: DecoderState, *, clamp: bool = True, check: bool = True
    ) -> torch.Tensor:
        """Decode the next n frames of every row: codes [B, 16, n] -> audio [B, n * 1920].

        ``check=False`` skips the code-range check (it syncs with the device).
        """
        self._check(codes, check)
        if codes.shape[0] != state.batch_size:
            raise ValueError(f"codes batch {codes.shape[0]} != state batch {state.batch_size}")
        self._ensure_prepared()
        return self._forward(codes, state, clamp)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, *, clamp: bool = True) -> torch.Tensor:
        """Full causal decode of codes [B, 16, T] -> audio [B, T * 1920], clamped to [-1, 1] by default."""
        self._check(codes, True)
        self._ensure_prepared()
        return self._decode_fresh(codes, clamp)

    @torch.inference_mode()
    def decode_reference(
        self,
        codes: torch.Tensor,
        *,
        clamp: bool = True,
        chunk_size: int = REFERENCE_CHUNK_SIZE,
        left_context: int = REFERENCE_LEFT_CONTEXT,
    ) -> torch.Tensor:
        """Emulation of the reference ``chunked_decode(chunk_size, left_context)`` (its ``decode()`` path)."""
        self._check(codes, True)
        self._ensure_prepared()
        total = codes.shape[-1]
        wavs, start = [], 0
        while start < total:
            end = min(start + chunk_size, total)
            context = left_context if start - left_context > 0 else start  # same rule as D:891
            wav = self._decode_fresh(codes[..., start - context : end], clamp)
            wavs.append(wav[:, context * self.total_upsample :])
            start = end
        if not wavs:
            return self._decode_fresh(codes, clamp)
        return torch.cat(wavs, dim=-1)

    # --- internals ---

    def _check(self, codes: torch.Tensor, check_values: bool) -> None:
        cfg = self.cfg
        if codes.dim() != 3 or codes.shape[1] != cfg.num_quantizers:
            raise ValueError(f"expected codes [B, {cfg.num_quantizers}, T], got {tuple(codes.shape)}")
        if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
            raise ValueError(f"codes must be an integer tensor, got {codes.dtype}")
        if check_values and codes.numel():
            lo, hi = int(codes.min()), int(codes.max())
            if lo < 0 or hi >= cfg.codebook_size:
                raise ValueError(f"code ids must be in [0, {cfg.codebook_size}), got [{lo}, {hi}]")

    def _decode_fresh(self, codes: torch.Tensor, clamp: bool) -> torch.Tensor:
        state = self.new_state(codes.shape[0])
        chunk = max(1, self.decode_chunk_frames)
        total = codes.shape[-1]
        if total <= chunk:
            return self._forward(codes, state, clamp)
        return torch.cat(
            [self._forward(codes[..., s : s + chunk], state, clamp) for s in range(0, total, chunk)], -1
        )

    def _forward(self, codes: torch.Tensor, state: DecoderState, clamp: bool) -> torch.Tensor:
        b, q, n = codes.shape
        ref = self.pre_conv.conv.weight
        dtype, device = ref.dtype, ref.device
        if n == 0:
            return torch.zeros(b, 0, device=device, dtype=dtype)
        index = codes.to(device).transpose(1, 2)  # [B, n, 16]
        # The 16 codebook vectors (embedding_sum / clamped usage) [B, n, 16, dim], divided per lookup: the
        # same division of the same numbers as a precomputed table (so the same values), without the table
        # (33 MB on 0.6B) and from sums a CPU engine keeps in the file's dtype, memory-mapped (loading.py).
        sums = [
            nn.functional.embedding(index[..., i], cb.embedding_sum) for i, cb in enumerate(self._codebooks)
        ]
        offsets = torch.arange(q, device=device) * self.cfg.codebook_size
        usage = nn.functional.embedding(index + offsets, self._usage)  # [B, n, 16, 1]
        vectors = (torch.stack(sums, dim=2).to(usage.dtype) / usage).to(dtype)
        qz = self.quantizer
        hidden = qz.rvq_first.project(vectors[:, :, 0]) + qz.rvq_rest.project(vectors[:, :, 1:].sum(dim=2))
        caches = state.convs
        hidden = self.pre_conv(hidden.transpose(1, 2), caches)  # [B, latent, n]
        hidden = self.pre_transformer(hidden.transpose(1, 2), state.pos, state.keys, state.values)
        state.pos += n
        hidden = hidden.transpose(1, 2)
        for stage in self.upsample:
            hidden = stage(hidden, caches)
        hidden = self.decoder[0](hidden, caches)
        for block in self.decoder[1:-2]:
            hidden = block(hidden, caches)
        wav = self.decoder[-1](self.decoder[-2](hidden), caches)[:, 0]
        return wav.clamp_(-1.0, 1.0) if clamp else wav
