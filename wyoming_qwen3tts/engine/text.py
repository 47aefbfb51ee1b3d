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


# Token layout of the chat templates below, which the reference slices by position (MODEL_NOTES 5.1):
#
#   target     <|im_start|> assistant \n  t_0 t_1 ... t_{N-1}  <|im_end|> \n <|im_start|> assistant \n
#              '-------- ROLE --------'  '---- TARGET_TEXT ---'  '------------ TARGET_TAIL -----------'
#                                         FIRST_TEXT  REST_TEXT
#   reference  <|im_start|> assistant \n  r_0 ... r_{M-1}       <|im_end|> \n
#              '-------- ROLE --------'  '- REFERENCE_TEXT -'    '- REFERENCE_TAIL -'
#
# "assistant" and "\n" are single tokens in the Qwen2 vocabulary; the text is tokenised inside the template
# (BPE merges across the newline can differ from the bare text's).
ROLE_TOKENS = 3  # <|im_start|> assistant \n
TARGET_TAIL_TOKENS = 5  # <|im_end|> \n <|im_start|> assistant \n
REFERENCE_TAIL_TOKENS = 2  # <|im_end|> \n
TARGET_TEMPLATE_TOKENS = ROLE_TOKENS + TARGET_TAIL_TOKENS  # a target's length minus its N text tokens
ROLE = slice(0, ROLE_TOKENS)
TARGET_TEXT = slice(ROLE_TOKENS, -TARGET_TAIL_TOKENS)  # t_0 .. t_{N-1}
FIRST_TEXT = slice(ROLE_TOKENS, ROLE_TOKENS + 1)  # t_0 (streaming text: fed with the prefill)
REST_TEXT = slice(ROLE_TOKENS + 1, -TARGET_TAIL_TOKENS)  # t_1 .. t_{N-1} (streaming text: one per frame)
REFERENCE_TEXT = slice(ROLE_TOKENS, -REFERENCE_TAIL_TOKENS)  # r_0 .. r_{M-1}


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
        """Full assistant template; [ROLE] role prefix, [TARGET_TEXT] the text tokens (layout above)."""
        ids = self.encode(assistant_text(text))
        if ids.numel() <= TARGET_TEMPLATE_TOKENS:
            raise ValueError("text is empty after tokenisation")
        return ids

    def reference_ids(self, text: str) -> torch.Tensor:
        """Full reference template; [REFERENCE_TEXT] the reference text tokens (layout above)."""
        return self.encode(reference_text(text))

    def instruct_ids(self, instruct: str) -> torch.Tensor:
        return self.encode(instruct_text(instruct))
