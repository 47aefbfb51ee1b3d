"""The one home of the Unicode script ranges the text code needs (language guess, segmentation, cleanup,
word counts), as regex character-class bodies and compiled single-character patterns."""

from __future__ import annotations

import re

KANA = "\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f"  # hiragana, katakana (+ phonetic extensions, halfwidth)
HAN = (
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"  # CJK ideographs (+ ext. A, compat., B-F)
)
HANGUL = "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"  # syllables, jamo, compatibility jamo
CYRILLIC = "\u0400-\u04ff"
LATIN = "A-Za-z\u00c0-\u024f"

KANA_RE = re.compile(f"[{KANA}]")
HAN_RE = re.compile(f"[{HAN}]")
HANGUL_RE = re.compile(f"[{HANGUL}]")
CYRILLIC_RE = re.compile(f"[{CYRILLIC}]")
LATIN_RE = re.compile(f"[{LATIN}]")
HAN_KANA_RE = re.compile(f"[{KANA}{HAN}]")  # Chinese and Japanese: no spaces between words
CJK_RE = re.compile(f"[{KANA}{HAN}{HANGUL}]")  # one character ~ one word


def is_cjk(char: str) -> bool:
    """Han, kana or Hangul (segmentation: a sentence may end right before one, without a space)."""
    return bool(CJK_RE.match(char))


def is_unspaced(char: str) -> bool:
    """Han or kana: scripts written without spaces between words (Hangul uses spaces, so it is not one)."""
    return bool(HAN_KANA_RE.match(char))
