"""Cleanup of LLM replies before speech: markdown, HTML, URLs and emoji out; words, numbers, punctuation in.

Rules (``clean_text``; ``clean_line`` is the per-line core that the segmenter applies to each segment):

* Fenced code blocks (a line starting with ```` ``` ```` or ``~~~``) are dropped **with their content**:
  code, YAML or JSON read aloud is noise; an unclosed fence drops the rest of the text. A one-line
  ```` ```code``` ```` is treated as inline code.
* Inline code keeps its text (```light.kitchen``` -> ``light.kitchen``).
* Line starts: headings (``#``), block quotes (``>``), list markers (``-``, ``*``, ``+``, ``•``, ``1.``,
  ``1)``), task boxes (``[ ]``, ``[x]``) are removed; horizontal rules and table separator rows vanish;
  table pipes become ", ".
* Emphasis: ``**b**``, ``__b__``, ``*i*``, ``_i_``, ``~~s~~`` keep their text. ``_`` counts as markup only
  at word edges; an underscore inside a word (``snake_case``, ``living_room``) becomes a space so it is
  read as words. Any leftover ``*``, ``_``, backtick, ``~`` or backslash (unpaired markers, e.g. when a
  bold span was cut into two segments) is removed.
* Links: ``[text](url)`` -> ``text``; images ``![alt](url)`` are dropped; citation marks ``[1]`` are
  dropped; other square and curly brackets are removed.
* Bare URLs (``http(s)://``, ``ftp://``, ``www.``) are replaced by their host name without ``www.``
  (``https://www.home-assistant.io/docs/x`` -> ``home-assistant.io``): speakable, language neutral and
  still useful; the path and query are dropped.
* Emoji, pictographs, dingbats, arrows, geometric shapes, variation selectors and ZWJ are removed; common
  HTML tags are removed and entities unescaped; ``#`` is kept only before a digit (``#1``).
* Kept: letters, digits and number punctuation (``3.14``, ``1,000``, ``10:45``, ``-5``, ``50%``, ``$5``,
  ``2024-01-15``), currency and units, ``. , ! ? ; : … — – ' "``, brackets ``( )``, ``& / @ + = °`` and
  all CJK punctuation.
* Whitespace is collapsed; spaces before punctuation and empty ``()`` left by removals are tidied. Lines
  are joined with their own punctuation, or ". " ("。" after CJK) when a line has none, so a heading or
  list item keeps its pause.
* A result without any letter or digit is returned as ``""`` (nothing to speak).
"""

from __future__ import annotations

import html
import logging
import re

from ..core.scripts import is_unspaced

_LOGGER = logging.getLogger(__name__)

# A fence line: ``` or ~~~ (3+) plus an optional info string without backticks.
FENCE_LINE = re.compile(r"^[ \t]*(?:`{3,}[^`]*|~{3,}.*)$")

_RULE_LINE = re.compile(r"^\s*(?:(?:[-*_=]\s*){3,}|\|?(?:\s*:?-{2,}:?\s*\|)+\s*:?-*:?\s*\|?)\s*$")
_QUOTE = re.compile(r"^\s*(?:>\s?)+")
_HEADING = re.compile(r"^\s*#{1,6}(?:\s+|$)")
_HEADING_TAIL = re.compile(r"(?<!\s)\s+#+\s*$")
_LIST = re.compile(r"^\s*(?:[-*+•‣◦]|\d{1,3}[.)])\s+(?:\[[ xX]\]\s+)?")

_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|~<>])")
_HTML_TAG = re.compile(
    r"</?(?:a|abbr|b|big|blockquote|br|center|code|del|details|div|em|font|h[1-6]|hr|i|img|ins|kbd|li|mark|"
    r"ol|p|pre|q|s|small|span|strike|strong|sub|summary|sup|table|tbody|td|th|thead|tr|tt|u|ul)"
    r"(?:\s[^<>]*)?/?>",
    re.IGNORECASE,
)
_IMAGE = re.compile(r"!\[[^\[\]]*\]\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"]*\")?\)")
_LINK = re.compile(r"\[([^\[\]]+)\]\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"]*\")?\)")
_REF_LINK = re.compile(r"\[([^\[\]]+)\]\[[^\[\]]*\]")
_LINK_TAIL = re.compile(r"\]\((?:[^()\s]|\([^()\s]*\))*\)")  # "](url)" whose "[" went to an earlier segment
_AUTOLINK = re.compile(r"<((?:https?|ftp)://[^>\s]+|www\.[^>\s]+)>", re.IGNORECASE)
# URLs end at whitespace, brackets, quotes or any CJK character / full-width punctuation (text glued to them).
_URL_STOP = "\\s<>\"'\\[\\]()\u3000-\u303f\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uff00-\uffef"
_HOST = "A-Za-z0-9\u00c0-\u024f\u0400-\u04ff"
_URL = re.compile(
    rf"(?:(?<![A-Za-z0-9])(?:https?|ftp)://(?:www\.)?|(?<![\w.])www\.)"
    rf"(?P<host>[{_HOST}][{_HOST}.-]*?)(?::\d+)?"
    rf"(?:[/?#][^{_URL_STOP}]*?)?(?P<trail>[.,;:!?]*)(?=[{_URL_STOP}]|$)",
    re.IGNORECASE,
)
_CITATION = re.compile(r"\[\d+(?:,\s*\d+)*\]")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
_STRONG_STAR = re.compile(r"\*\*(?=\S)((?:[^*]|\*(?!\*))+?)(?<=\S)\*\*")
_STRONG_UNDER = re.compile(r"(?<!\w)__(?=\S)((?:[^_]|_(?!_))+?)(?<=\S)__(?!\w)")
_EM_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*]+?)(?<=[^\s*])\*(?![\w*])")
_EM_UNDER = re.compile(r"(?<!\w)_(?=[^\s_])([^_]+?)(?<=[^\s_])_(?!\w)")
_STRIKE = re.compile(r"~~(?=\S)((?:[^~]|~(?!~))+?)(?<=\S)~~")
_INTRA_WORD = re.compile(r"(?<=[^\W_])[*_]+(?=[^\W_])")
_LEFTOVER = re.compile(r"[*_`~\\\[\]{}]+|#(?!\d)")
_ARROW = re.compile(r"(?<!\s)\s*(?:-{1,2}>|<-{1,2}|=>)\s*")
_EMOJI = re.compile(
    "["
    "\U0001f000-\U0001faff"  # mahjong, cards, enclosed supplements, flags, pictographs, emoticons, ...
    "\U0001fb00-\U0001fbff"  # legacy computing
    "\u2190-\u21ff"  # arrows
    "\u2300-\u23ff"  # misc technical (watch, hourglass, play buttons)
    "\u25a0-\u25ff"  # geometric shapes
    "\u2600-\u27bf"  # misc symbols, dingbats
    "\u2b00-\u2bff"  # misc symbols and arrows (star, big squares)
    "\u2022\u2023\u2043\u2139\u3030\u303d\u3297\u3299"
    "\ufe0e\ufe0f\u200d\u20e3"  # variation selectors, zero width joiner, keycap
    "\U000e0020-\U000e007f"  # emoji tag sequences
    "]+"
)
_SPACE = re.compile(r"\s+")
_PIPE = re.compile(r"(?<!\s)\s*\|\s*")
_EMPTY_PARENS = re.compile(r"\(\s*\)|（\s*）")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.!?;:…])(?=[\s\"'”’)\]]|$)")
_SPACE_BEFORE_CJK_PUNCT = re.compile(r"\s+([。，、！？；：」』）】》])")
_PUNCT_RUN = re.compile(r"([,;:，、；：])(?:\s*[,;:，、；：])+")
_LEADING_PUNCT = re.compile(r"^(?:[,;:!?、，；：！？]|[.。](?!\d))+\s*")
_SPEAKABLE = re.compile(r"[^\W_]")
_LINE_END_PUNCT = re.compile(r"[.!?;:,…。！？；：，、—–-][\"'”’»)\]」』）】》]*$")
_CJK_PUNCT = "。！？；：，、」』）】》"


def _url_host(match: re.Match) -> str:
    return match.group("host") + match.group("trail")


def _table_row(text: str) -> str:
    text = text.strip()
    if text.startswith("|"):
        text = text[1:]
    if text.endswith("|"):
        text = text[:-1]
    return _PIPE.sub(", ", text)


def clean_line(text: str, at_line_start: bool = True) -> str:
    """Clean one line (or a piece of one); line-start markers are only stripped when ``at_line_start``."""
    if at_line_start:
        if _RULE_LINE.match(text):
            return ""
        text = _QUOTE.sub("", text, count=1)
        if _HEADING.match(text):
            text = _HEADING_TAIL.sub("", _HEADING.sub("", text, count=1))
        text = _LIST.sub("", text, count=1)
    text = _ESCAPE.sub(r"\1", text)
    text = _HTML_TAG.sub(" ", text)
    text = html.unescape(text)
    text = _EMOJI.sub(" ", text)
    text = _IMAGE.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_LINK.sub(r"\1", text)
    text = _LINK_TAIL.sub("", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _URL.sub(_url_host, text)
    text = _CITATION.sub("", text)
    text = _INLINE_CODE.sub(r"\2", text)  # inner spaces kept: a "pair" may span two pieces of code
    for pattern in (_STRONG_STAR, _STRONG_UNDER, _EM_STAR, _EM_UNDER, _STRIKE):
        text = pattern.sub(r"\1", text)
    text = _INTRA_WORD.sub(" ", text)
    text = _LEFTOVER.sub("", text)
    if "|" in text:
        text = _table_row(text)
    text = _ARROW.sub(" ", text)
    text = _SPACE.sub(" ", text)
    text = _EMPTY_PARENS.sub("", text)
    text = _PUNCT_RUN.sub(lambda m: m.group(1) + (" " if " " in m.group() else ""), text)
    text = text.replace("( ", "(").replace(" )", ")")
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _SPACE_BEFORE_CJK_PUNCT.sub(r"\1", text)
    text = _LEADING_PUNCT.sub("", text.strip())
    text = _SPACE.sub(" ", text).strip()
    return text if _SPEAKABLE.search(text) else ""


def join_lines(lines: list[str]) -> str:
    """Join cleaned lines into one text, giving each line without final punctuation a sentence end."""
    joined = ""
    for index, line in enumerate(lines):
        if index < len(lines) - 1 and not _LINE_END_PUNCT.search(line):
            line += "。" if is_unspaced(line[-1]) else "."
        if joined and not (joined[-1] in _CJK_PUNCT or (is_unspaced(joined[-1]) and is_unspaced(line[0]))):
            joined += " "
        joined += line
    return joined


def clean_text(text: str) -> str:
    """Whole text (any number of lines) -> one speakable line; see the module doc for the rules."""
    lines: list[str] = []
    in_fence = False
    for line in (text or "").splitlines():
        if FENCE_LINE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        cleaned = clean_line(line, at_line_start=True)
        if cleaned:
            lines.append(cleaned)
    return join_lines(lines)
