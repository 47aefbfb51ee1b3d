"""Text normalization before synthesis: numbers, decimals, ordinals, temperatures, percentages, units,
times, dates and currency become words in the request's language (the model reads digits unreliably:
digits inside English text read in Chinese, QwenLM/Qwen3-TTS issues 68 and 265).

* rules.py: the language-independent matcher (what is a number, a time, a date ...).
* european.py: en, de, fr, es, it, pt, ru (num2words + our word tables).
* cjk.py: zh (our own numbers: num2words has none), ja, ko.

On when the request's language is known (``--no-normalize`` turns it off); with language ``auto`` the text
goes as written. It never raises: any failure leaves the text unchanged (and is logged at debug).
"""

from __future__ import annotations

import functools
import logging
from typing import Optional

from ...core.languages import to_bcp47
from .rules import Normalizer

_LOGGER = logging.getLogger(__name__)

LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "ru", "zh", "ja", "ko")


@functools.lru_cache(maxsize=None)
def normalizer(code: str) -> Normalizer:
    """The compiled rules of a BCP-47 primary code (built once per language)."""
    if code in ("zh", "ja", "ko"):
        from .cjk import lexicon
    else:
        from .european import lexicon
    return Normalizer(lexicon(code))


def normalize_text(text: str, language: Optional[str]) -> str:
    """``text`` with its numeric expressions spoken in ``language`` (engine name or BCP-47 code); unchanged
    for auto, unknown languages and text without digits."""
    code = to_bcp47(language) or (language if language in LANGUAGES else None)
    if code not in LANGUAGES or not any(ch.isdigit() for ch in text):
        return text
    try:
        return normalizer(code)(text)
    except Exception:  # noqa: BLE001 - normalization is a nicety; never fail a request over it
        _LOGGER.debug("normalization failed for %r; using the text as written", text[:80], exc_info=True)
        return text
