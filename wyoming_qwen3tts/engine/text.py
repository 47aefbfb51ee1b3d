"""Qwen2 byte-level BPE tokenizer and the three prompt templates of the reference wrapper.

The reference tokenises each full template string and slices by position; doing the same (instead of
tokenising the bare text) keeps BPE merges at the template boundaries identical.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

_LOGGER = logging.getLogger(__name__)


def assistant_text(text: str) -> str:
    return f"<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n"


def reference_text(text: str) -> str:
    return f"<|im_start|>assistant\n{text}<|im_end|>\n"


def instruct_text(instruct: str) -> str:
    return f"<|im_start|>user\n{instruct}<|im_end|>\n"


class TextTokenizer:
    """Wraps the checkpoint's Qwen2 tokenizer (vocab.json + merges.txt, tokenizer.json optional)."""

    def __init__(self, model_dir: Path) -> None:
        # The class the reference's AutoProcessor resolves to (tokenizer_class Qwen2Tokenizer, fast).
        from transformers import Qwen2TokenizerFast

        self._tok = Qwen2TokenizerFast.from_pretrained(str(model_dir))

    def encode(self, text: str) -> torch.Tensor:
        """-> LongTensor [T] (no special tokens added beyond those written in the text)."""
        ids = self._tok(text, add_special_tokens=False)["input_ids"]
        return torch.tensor(ids, dtype=torch.long)

    def target_ids(self, text: str) -> torch.Tensor:
        """Full assistant template; [:3] role prefix, [3:-5] the text tokens."""
        ids = self.encode(assistant_text(text))
        if ids.numel() < 9:
            raise ValueError("text is empty after tokenisation")
        return ids

    def reference_ids(self, text: str) -> torch.Tensor:
        """Full reference template; [3:-2] the reference text tokens."""
        return self.encode(reference_text(text))

    def instruct_ids(self, instruct: str) -> torch.Tensor:
        return self.encode(instruct_text(instruct))
