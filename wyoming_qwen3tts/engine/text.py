"""Qwen2 byte-level BPE tokenizer and the three prompt templates of the reference wrapper.

The reference tokenises each full template string and slices by position; doing the same (instead of
tokenising the bare text) keeps BPE merges at the template boundaries identical.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from packaging.version import InvalidVersion, Version

_LOGGER = logging.getLogger(__name__)

# qwen-tts loads its processor with `fix_mistral_regex=True`. Under transformers 4.57.3 that swaps the first
# pre-tokenizer split of a *local* checkpoint with a vocab over 100000 for this pattern whenever config.json's
# transformers_version is missing or newer than 4.57.2 (the released Qwen3-TTS configs say 4.57.3), so that is
# what the reference tokenises with. We apply the same rule, whatever transformers version is installed.
REFERENCE_SPLIT_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_MISTRAL_TYPES = ("mistral", "mistral3", "voxtral", "ministral", "pixtral")

# transformers 4.57.x logs "The tokenizer you are loading from '...' with an incorrect regex pattern ... This
# will lead to incorrect tokenization" for every local checkpoint whose config.json names a transformers
# version above 4.57.2 (all released Qwen3-TTS checkpoints) unless `fix_mistral_regex` is passed. It is
# misleading here: TextTokenizer applies the reference's split rule itself (reference_swaps_split), so the
# tokenisation is the reference's either way. Only that one message of that one logger is dropped.
_TRANSFORMERS_TOKENIZER_LOGGER = "transformers.tokenization_utils_base"
_REGEX_WARNING = "with an incorrect regex pattern"


class _DropRegexWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _REGEX_WARNING not in record.getMessage()


def _silence_regex_warning() -> None:
    """Adds the filter once (idempotent: models load from several threads)."""
    logger = logging.getLogger(_TRANSFORMERS_TOKENIZER_LOGGER)
    if not any(isinstance(existing, _DropRegexWarning) for existing in logger.filters):
        logger.addFilter(_DropRegexWarning())


def reference_swaps_split(config: dict, vocab_size: int) -> bool:
    """Whether qwen-tts 0.1.1 (transformers 4.57.3) replaces the split regex for a local checkpoint."""
    if vocab_size <= 100000:
        return False
    raw = config.get("transformers_version")
    try:
        version = Version(raw) if raw else None
    except InvalidVersion:
        version = None
    if version is not None and version <= Version("4.57.2"):
        return config.get("model_type") in _MISTRAL_TYPES
    if version is not None and version >= Version("5.0.0"):
        return False
    return True


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

        _silence_regex_warning()
        self._tok = Qwen2TokenizerFast.from_pretrained(str(model_dir))
        config_path = Path(model_dir) / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
        self.reference_split = reference_swaps_split(config, self._tok.vocab_size)
        if self.reference_split:
            from tokenizers import Regex
            from tokenizers.pre_tokenizers import Split

            self._tok.backend_tokenizer.pre_tokenizer[0] = Split(
                pattern=Regex(REFERENCE_SPLIT_PATTERN), behavior="isolated"
            )

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
