"""Talker: a Qwen3 decoder that predicts codebook 0 once per 80 ms frame, plus its embeddings.

Module names mirror the checkpoint (`talker.model.layers.N...`, `talker.text_projection...`,
`talker.codec_head`, `talker.code_predictor...`), so the official weights load strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import TalkerConfig
from .layers import DecoderStack, as_projection
from .predictor import CodePredictor


class TalkerModel(DecoderStack):
    def __init__(self, cfg: TalkerConfig) -> None:
        super().__init__(cfg.transformer)
        self.codec_embedding = nn.Embedding(cfg.transformer.vocab_size, cfg.transformer.hidden_size)
        self.text_embedding = nn.Embedding(cfg.text_vocab_size, cfg.text_hidden_size)


class TextProjection(nn.Module):
    """Linear -> SiLU -> Linear from the text width (2048) to the talker width."""

    def __init__(self, text_hidden: int, hidden: int) -> None:
        super().__init__()
        self.linear_fc1 = nn.Linear(text_hidden, text_hidden, bias=True)
        self.linear_fc2 = nn.Linear(text_hidden, hidden, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_fc2(F.silu(self.linear_fc1(x)))


class Talker(nn.Module):
    def __init__(self, cfg: TalkerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hidden = cfg.transformer.hidden_size
        self.model = TalkerModel(cfg)
        self.text_projection = TextProjection(cfg.text_hidden_size, hidden)
        self.codec_head = nn.Linear(hidden, cfg.transformer.vocab_size, bias=False)
        self.code_predictor = CodePredictor(cfg.predictor, hidden, cfg.num_code_groups)

    @property
    def dtype(self) -> torch.dtype:
        """Activation dtype (the weights of the per-frame matrices may be quantized, see quant.py)."""
        return self.model.norm.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.norm.weight.device

    @property
    def hidden_size(self) -> int:
        return self.cfg.transformer.hidden_size

    def fuse(self) -> None:
        """Load-time: fused projections in the talker and the code predictor (same numbers, fewer ops)."""
        self.model.fuse()
        self.code_predictor.model.fuse()
        # Heads get the 2-D `mm` path too (same weights, no copy).
        self.codec_head = as_projection(self.codec_head)
        heads = self.code_predictor.lm_head
        for i in range(len(heads)):
            heads[i] = as_projection(heads[i])  # type: ignore[arg-type]  # the heads are nn.Linear

    def prepare_norms(self, fast: bool) -> None:
        """Switches the one-kernel bf16/fp16 RMSNorm on or off in both stacks (tests compare the two)."""
        self.model.prepare_norms(fast)
        self.code_predictor.model.prepare_norms(fast)

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids [..., T] -> projected text embeddings [..., T, H]."""
        rows = self.model.text_embedding(ids)  # may be kept in the checkpoint's bf16 (see Engine.load)
        return self.text_projection(rows.to(self.text_projection.linear_fc1.weight.dtype))

    def embed_codec(self, ids: torch.Tensor) -> torch.Tensor:
        # The table may be kept in the checkpoint's bf16 (loading.py); widening the rows is exact.
        return self.model.codec_embedding(ids).to(self.dtype)

    def frame_embedding(self, token: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Talker input of the next step: sum of the 16 code embeddings of a frame, [B, 1, H].

        Summed as one stacked `.sum` in the reference's order, so the rounding matches it."""
        parts = [self.embed_codec(token[:, None])] + self.code_predictor.group_embeddings(codes)
        return torch.cat(parts, dim=1).sum(1, keepdim=True)
