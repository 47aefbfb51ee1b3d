"""Qwen2 byte-level BPE tokenizer and the three prompt templates of the reference wrapper.

The reference tokenises each full template string and slices by position; doing the same (instead of
tokenising the bare text) keeps BPE merges at the template boundaries identical.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

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


# The pre-tokenizer transformers' Qwen2Converter gives a checkpoint without tokenizer.json (the released
# snapshots): the Qwen2 split regex, then byte-level mapping (convert_slow_tokenizer.py, transformers 4.57).
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _qwen2_from_vocab(model_dir: Path) -> Any:
    """vocab.json + merges.txt -> the tokenizers.Tokenizer that transformers' Qwen2Converter builds."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = json.loads((model_dir / "vocab.json").read_text(encoding="utf-8"))
    merges = []
    with open(model_dir / "merges.txt", encoding="utf-8") as handle:  # read as Qwen2Tokenizer reads it
        for i, line in enumerate(handle):
            line = line.strip()
            if (i == 0 and line.startswith("#version:")) or not line:
                continue
            merges.append(tuple(line.split()))
    bpe = models.BPE(
        vocab=vocab,
        merges=merges,
        dropout=None,
        unk_token=None,
        continuing_subword_prefix="",
        end_of_word_suffix="",
        fuse_unk=False,
        byte_fallback=False,
    )
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def _backend(model_dir: Path) -> Optional[Any]:
    """The checkpoint's tokenizer built by `tokenizers` alone, as transformers' Qwen2TokenizerFast builds it,
    or None where this checkpoint needs something it does not do (then transformers loads it).

    Importing transformers costs ~1.9 s and ~70 MB of a 2-core load (issue 24), and building the fast
    tokenizer from vocab.json + merges.txt through its slow tokenizer more. Same steps as transformers 4.57:
    tokenizer.json (or the Qwen2 converter's pipeline), no truncation or padding, then the added tokens of
    tokenizer_config.json in id order; every added and special token must land on its id, or None."""
    from tokenizers import AddedToken, Tokenizer

    config = _read_json(model_dir / "tokenizer_config.json")
    if config.get("tokenizer_class") not in ("Qwen2Tokenizer", "Qwen2TokenizerFast") or config.get(
        "add_prefix_space"
    ):
        return None
    file = model_dir / "tokenizer.json"
    if file.is_file():
        tok = Tokenizer.from_file(str(file))
    elif (model_dir / "vocab.json").is_file() and (model_dir / "merges.txt").is_file():
        tok = _qwen2_from_vocab(model_dir)
    else:
        return None
    tok.no_truncation()
    tok.no_padding()
    tok.encode_special_tokens = bool(config.get("split_special_tokens", False))
    added = sorted(
        ((int(i), t) for i, t in config.get("added_tokens_decoder", {}).items()), key=lambda x: x[0]
    )
    fields = ("single_word", "lstrip", "rstrip", "normalized", "special")
    present = tok.get_added_tokens_decoder()
    for index, spec in added:
        if not all(k in spec for k in fields):
            return None
        flags = {k: bool(spec[k]) for k in fields}
        if tok.token_to_id(spec["content"]) is None:
            tok.add_tokens([AddedToken(spec["content"], **flags)])
        elif index not in present or any(getattr(present[index], k) != v for k, v in flags.items()):
            return None  # transformers would re-add it with the config's flags
        if tok.token_to_id(spec["content"]) != index:
            return None
    specials = [config.get(k) for k in ("bos_token", "eos_token", "unk_token", "pad_token")]
    specials += list(config.get("additional_special_tokens") or [])
    if any(isinstance(t, str) and tok.token_to_id(t) is None for t in specials) or any(
        t is not None and not isinstance(t, str) for t in specials
    ):
        return None
    return tok


def _transformers_backend(model_dir: Path) -> Any:
    """The class the reference's AutoProcessor resolves to (tokenizer_class Qwen2Tokenizer, fast)."""
    from transformers import Qwen2TokenizerFast

    _silence_regex_warning()
    return Qwen2TokenizerFast.from_pretrained(str(model_dir)).backend_tokenizer


class TextTokenizer:
    """Wraps the checkpoint's Qwen2 tokenizer (vocab.json + merges.txt, tokenizer.json optional)."""

    def __init__(self, model_dir: Path) -> None:
        model_dir = Path(model_dir)
        tok = _backend(model_dir)
        self._tok = tok if tok is not None else _transformers_backend(model_dir)
        tok = self._tok
        config = _read_json(model_dir / "config.json")
        self.reference_split = reference_swaps_split(config, tok.get_vocab_size(with_added_tokens=False))
        if self.reference_split:
            from tokenizers import Regex
            from tokenizers.pre_tokenizers import Split

            tok.pre_tokenizer[0] = Split(pattern=Regex(REFERENCE_SPLIT_PATTERN), behavior="isolated")

    def encode(self, text: str) -> torch.Tensor:
        """-> LongTensor [T] (no special tokens added beyond those written in the text)."""
        ids = self._tok.encode(text, add_special_tokens=False).ids
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
