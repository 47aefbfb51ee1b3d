"""The model's languages: engine names, BCP-47 codes and the one parser of a language setting."""

from __future__ import annotations

import logging
import re
from typing import Optional

_LOGGER = logging.getLogger(__name__)

# The model's 10 languages (engine names, as in the checkpoint's codec_language_id) -> BCP-47 codes.
BCP47: dict[str, str] = {
    "english": "en",
    "chinese": "zh",
    "german": "de",
    "italian": "it",
    "portuguese": "pt",
    "spanish": "es",
    "japanese": "ja",
    "korean": "ko",
    "french": "fr",
    "russian": "ru",
}
_FROM_CODE = {code: name for name, code in BCP47.items()}
# ISO 639-2/3 codes people type in configs ("cmn" is Mandarin; "yue" Cantonese is not a model language).
_FROM_CODE.update(
    {
        "eng": "english",
        "zho": "chinese",
        "chi": "chinese",
        "cmn": "chinese",
        "deu": "german",
        "ger": "german",
        "ita": "italian",
        "por": "portuguese",
        "spa": "spanish",
        "jpn": "japanese",
        "kor": "korean",
        "fra": "french",
        "fre": "french",
        "rus": "russian",
    }
)
# The CustomVoice dialect "languages" are Chinese for BCP-47 purposes.
_DIALECTS = {"sichuan_dialect": "zh", "beijing_dialect": "zh"}


def to_bcp47(name: Optional[str]) -> Optional[str]:
    """Engine language name (any case) -> BCP-47 code; ``None`` for ``auto`` / unknown names."""
    if not name:
        return None
    key = name.strip().lower()
    return BCP47.get(key) or _DIALECTS.get(key)


def from_bcp47(code: Optional[str]) -> Optional[str]:
    """BCP-47 tag ("en", "en-US", "zh_CN", "pt-BR", any case) or engine name -> engine language name.

    Only the primary subtag matters (the model has one Chinese, one Portuguese ...). Returns ``None`` for
    ``auto``, empty and unsupported languages.
    """
    if not code:
        return None
    key = code.strip().lower()
    if key in BCP47:  # already an engine name
        return key
    primary = re.split(r"[-_]", key, maxsplit=1)[0]
    return _FROM_CODE.get(primary)


def parse_language(value: Optional[str]) -> Optional[str]:
    """A language as configured or requested: 'auto' or empty -> None (the model decides); an engine name or
    a BCP-47 tag (en, en-US, zh_Hans) -> the engine name; anything else raises ValueError."""
    if value is None or not value.strip() or value.strip().lower() == "auto":
        return None
    name = from_bcp47(value)
    if name is None:
        raise ValueError(
            f"unknown language {value!r}; use auto or one of "
            + ", ".join(f"{name} ({code})" for name, code in BCP47.items())
        )
    return name
