"""Code predictor: a 5-layer transformer that turns one codebook-0 token into codebooks 1..15.

Per frame it runs a 2-position prefill ([talker hidden, codec embedding of the codebook-0 token]) and 14
single-token steps, each with its own input table and head. Its KV cache lives only for that frame, so
all rows of a batch share the same positions and one small static cache serves every frame.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from .config import TransformerConfig
from .jit import Traced, traced_decode, traced_prefill
from .layers import DecoderStack, KVCache

# pick(logits [B, vocab] float32, group index 1..15) -> codes [B]
CodePicker = Callable[[torch.Tensor, int], torch.Tensor]


class PredictorModel(DecoderStack):
    def __init__(self, cfg: TransformerConfig, talker_hidden: int, groups: int) -> None:
        super().__init__(cfg)
        # Tables for codebooks 1..15 embed into the *talker* width (their sum feeds the talker).
        self.codec_embedding = nn.ModuleList(
            nn.Embedding(cfg.vocab_size, talker_hidden) for _ in range(groups - 1)
        )


class CodePredictor(nn.Module):
    def __init__(self, cfg: TransformerConfig, talker_hidden: int, groups: int = 16) -> None:
        super().__init__()
        self.groups = groups
        self.model = PredictorModel(cfg, talker_hidden, groups)
        self.lm_head = nn.ModuleList(
            nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False) for _ in range(groups - 1)
        )
        # 1.7B: talker width 2048 -> predictor width 1024; 0.6B: identity (no weights in the checkpoint).
        self.small_to_mtp_projection: nn.Module = (
            nn.Linear(talker_hidden, cfg.hidden_size, bias=True)
            if talker_hidden != cfg.hidden_size
            else nn.Identity()
        )
        self._cache: Optional[KVCache] = None
        self._step: Optional[Traced] = None
        self._prefill: Optional[Traced] = None
        self._positions: dict[int, list[torch.Tensor]] = {}
        self.trace = False  # TorchScript-traced steps (engine/jit.py), set at load time on CPU

    def _frame_cache(self, rows: int, ref: torch.Tensor) -> KVCache:
        cache = self._cache
        if cache is None or cache.slots < rows or cache.k.dtype != ref.dtype or cache.k.device != ref.device:
            cache = self.model.new_cache(max(rows, 1), self.groups, ref.dtype, ref.device)
            self._cache = cache
            self._positions = {}
        if self._step is None or self._step.cache is not cache or self._step.enabled != self.trace:
            self._step = traced_decode(self.model, cache, enabled=self.trace)
            self._prefill = traced_prefill(self.model, cache, enabled=self.trace)
        return cache

    def _position_rows(self, rows: int, device: torch.device) -> list[torch.Tensor]:
        """[rows] tensors of each position 0..groups-1 (every row of a frame is at the same one)."""
        made = self._positions.get(rows)
        if made is None:
            made = [torch.full((rows,), p, dtype=torch.long, device=device) for p in range(self.groups)]
            self._positions[rows] = made
        return made

    def embed(self, j: int, codes: torch.Tensor) -> torch.Tensor:
        """Rows of codebook j + 1's input table, in the activation dtype: on CPU the tables stay in the
        checkpoint's bf16 (loading.py, 63 MB less than fp32 on 0.6B) and widening the rows is exact."""
        return self.model.codec_embedding[j](codes).to(self.model.norm.weight.dtype)

    def group_embeddings(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """codes [B, 15] (codebooks 1..15) -> 15 embeddings [B, 1, H_talker]."""
        return [self.embed(j, codes[:, j : j + 1]) for j in range(self.groups - 1)]

    @torch.inference_mode()
    def generate(
        self,
        past_hidden: torch.Tensor,
        token_embedding: torch.Tensor,
        pick: CodePicker,
        forced: Optional[torch.Tensor] = None,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """past_hidden, token_embedding: [B, H_talker] -> codes [B, 15] (and logits [B, 15, vocab] if asked).

        `forced` [B, 15] feeds given codes instead of the picked ones (teacher forcing for parity tests)."""
        rows = past_hidden.shape[0]
        cache = self._frame_cache(rows, past_hidden)
        positions = self._position_rows(rows, past_hidden.device)
        x = torch.stack((past_hidden, token_embedding), dim=1)
        assert self._prefill is not None and self._step is not None
        hidden = self._prefill(self.small_to_mtp_projection(x))
        codes = []
        all_logits = []
        for j in range(self.groups - 1):
            logits = self.lm_head[j].mm(hidden).float()  # type: ignore[operator]  # a Projection (layers.py)
            code = pick(logits, j + 1) if forced is None else forced[:, j]
            codes.append(code)
            if return_logits:
                all_logits.append(logits)
            if j == self.groups - 2:
                break
            emb = self.small_to_mtp_projection(self.embed(j, code))
            hidden = self._step(emb, positions[j + 2], cache.span[: j + 3])
        out = torch.stack(codes, dim=1)
        return out, (torch.stack(all_logits, dim=1) if return_logits else None)
