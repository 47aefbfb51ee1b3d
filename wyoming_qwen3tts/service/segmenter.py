"""Streaming text -> speakable segments: sentence splitting that is safe for numbers and abbreviations.

Home Assistant streams LLM replies as arbitrary fragments (mid-word, mid-number, mid-markdown).
:class:`StreamSegmenter` buffers them and releases a segment as soon as it is certainly complete;
:func:`split_text` runs the same machine over a whole text. Every segment is cleaned with
:func:`~.textclean.clean_line` (markdown, URLs, emoji out); segments with nothing speakable are dropped.

Boundaries (in the raw text, before cleanup):

* A newline always ends a segment (headings, list items, paragraphs are spoken separately). Fenced code
  blocks are dropped whole, also across fragments.
* ``!`` / ``?`` (runs like ``?!``, plus closing quotes, brackets, ``*``, ``_`` or backticks) end a sentence
  once the next character is whitespace or a CJK character (or anything but a digit when the mark follows
  a Han/kana character: half-width punctuation in unspaced Chinese/Japanese).
* ``.`` / ``...`` / ``…`` end a sentence when followed by whitespace and then a character that is not a
  lowercase letter (``approx. five`` or ``wait... what`` stay together); so a period is decided one
  non-space character after it. Never after: a known abbreviation (``Dr. Mr. Mrs. Ms. Prof. St. Mt. vs.
  e.g. i.e. etc.``... see ``ABBREVIATIONS``), dotted initials (``U.S.``, ``a.m.``, ``z.B.``), a single
  capital (``J. R. R. Tolkien``), or a number of at most 3 digits (list markers ``1.``, German ordinals
  ``3. Oktober``). A period followed by a non-space (``3.14``, ``example.com``) is never a boundary.
* CJK ``。！？；．`` end a sentence once any non-closing character follows.
* At :meth:`StreamSegmenter.finish` the end of the text is a boundary.
* First-clause flush (``StreamSegmenter`` default; ``split_text`` only on request): until the first
  non-empty segment has been emitted (a short "Sure!" counts: its audio already starts early), clause
  punctuation (``, ; :`` + whitespace, ``— –``, `` - ``, ``，、：``) ends a segment once the text before it
  has ``first_clause_words`` words (CJK characters count half a word), so the first audio starts before
  the LLM finishes its first sentence. ``1,000`` and ``10:45`` are never split (no whitespace).
* A sentence longer than ``max_chars`` (raw characters) is cut at the last clause punctuation (or
  ``.!?`` + space) in its first ``max_chars`` characters if that is past a quarter of it, else at the last
  whitespace, or between two CJK characters; never inside a word. A single token longer than
  ``max_chars`` is cut at the first whitespace after it (or kept whole at the end of the text).
"""

from __future__ import annotations

import logging
import re
from typing import Optional

from ..core.scripts import HAN_KANA_RE, is_cjk
from .textclean import FENCE_LINE, clean_line, clean_text

__all__ = ["ABBREVIATIONS", "StreamSegmenter", "clean_text", "split_text"]

_LOGGER = logging.getLogger(__name__)

# Words whose trailing "." does not end a sentence (lowercase, without the dot).
ABBREVIATIONS = frozenset(
    "mr mrs ms mx dr prof st mt ft sr sra srta jr vs etc eg ie cf ca approx appr no nr vol fig figs pp "
    "dept inc ltd corp jan feb apr jun jul aug sep sept oct nov dec hr fr frl bzw usw ggf evtl inkl mme "
    "mlle ud uds dña gen col lt sgt capt".split()
)
_CLOSERS = "\"'”’»)]}*_`」』）】》〉"
_CJK_TERMINATORS = "。！？；．｡"
_CANDIDATE = re.compile(r"\n|[.!?…。！？；．｡]+")
_CLAUSE = re.compile(r"[,;:，、：；]|[—–]| - ")
_OVERLONG = re.compile(r"[,;:，、：；.!?…。！？．｡]+|[—–]| - ")
_TOKEN_BEFORE = re.compile(r"[\w.]*$")
_DOTTED = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")
_LAST_HAN_KANA = re.compile(rf".*{HAN_KANA_RE.pattern}", re.DOTALL)
_WORDS = re.compile(r"[^\W_]+")
_SPACE = re.compile(r"\s")

FENCE_MAX = 256  # an unfinished line longer than this is text, not a fence line still arriving
_WAIT = -1  # decision: the boundary cannot be decided until more text arrives
_NO = -2  # decision: not a boundary


def _word_units(text: str) -> float:
    """Words in ``text``; Han/kana characters count half a word each (they are written without spaces)."""
    han_kana = len(HAN_KANA_RE.findall(text))
    return len(_WORDS.findall(HAN_KANA_RE.sub(" ", text))) + han_kana / 2


class StreamSegmenter:
    """Incremental segmenter: ``feed(fragment)`` -> segments complete so far; ``finish()`` -> the rest.

    ``first_clause_words=None`` disables the first-clause flush. After ``finish()`` the object is reset
    and can be fed a new text.
    """

    def __init__(self, max_chars: int = 400, first_clause_words: Optional[float] = 4) -> None:
        if max_chars < 1:
            raise ValueError("max_chars must be positive")
        self.max_chars = max_chars
        self.first_clause_words = first_clause_words
        self._reset()

    def _reset(self) -> None:
        self._buf = ""
        self._line_start = True  # _buf[0] is the first character of a line
        self._in_fence = False
        self._emitted = False  # a non-empty segment was emitted (the first-clause flush is spent)
        self._rescan()

    def _rescan(self) -> None:
        """Forget what was learnt about the buffer (called whenever its head is consumed)."""
        self._sentence_from = 0  # candidates before this index are decided "not a boundary"
        self._clause_from = 0  # first-clause scan position ...
        self._clause_units = 0.0  # ... and the words before it
        self._stuck_at = 0  # over-long: no cut in the window and no whitespace before this index
        self._newline_from = 0  # no newline in the buffer before this index (fence lines wait for theirs)

    def feed(self, fragment: str) -> list[str]:
        if not fragment:
            return []
        self._buf += fragment
        return self._drain(final=False)

    def finish(self) -> list[str]:
        segments = self._drain(final=True)
        self._reset()
        return segments

    # --- the machine ---------------------------------------------------------------------------------

    def _drain(self, final: bool) -> list[str]:
        out: list[str] = []
        while True:
            stripped = self._buf.lstrip()
            if len(stripped) != len(self._buf):
                if "\n" in self._buf[: len(self._buf) - len(stripped)]:
                    self._line_start = True
                self._buf = stripped
                self._rescan()
            if not self._buf:
                break
            if self._line_start or self._in_fence:
                step = self._fence_step(final)
                if step == "wait":
                    break
                if step == "dropped":
                    continue
            cut = self._find_cut(final)
            if cut is None:
                break
            piece, self._buf = self._buf[:cut], self._buf[cut:]
            self._rescan()
            segment = clean_line(piece, at_line_start=self._line_start)
            self._line_start = False
            if segment:
                out.append(segment)
                self._emitted = True
        return out

    def _fence_step(self, final: bool) -> str:
        """At a line start: drop fence lines and fenced content ("dropped"), "wait" for more, or "text"."""
        # Searches resume where the previous feed stopped, and an unfinished line longer than FENCE_MAX is
        # never a fence: a long line fed in small fragments is not rescanned on every feed (linear).
        newline = self._buf.find("\n", self._newline_from)
        self._newline_from = len(self._buf) if newline < 0 else newline
        complete = newline >= 0 or final
        if not complete and not self._in_fence and len(self._buf) > FENCE_MAX:
            return "text"
        line = self._buf if newline < 0 else self._buf[:newline]
        if self._in_fence:
            if not complete:
                return "wait"  # only whole lines are judged: this one may be the closing fence
            if FENCE_LINE.match(line):
                self._in_fence = False
        elif not complete and ("```".startswith(line) or "~~~".startswith(line)):
            return "wait"  # "`" or "``" may still become a fence
        elif FENCE_LINE.match(line):
            if not complete:
                return "wait"  # "```py" may still turn into a one-line "```code```"
            self._in_fence = True
        else:
            return "text"
        self._buf = "" if newline < 0 else self._buf[newline:]
        self._rescan()
        return "dropped"

    def _find_cut(self, final: bool) -> Optional[int]:
        # Only the first max_chars + 1 characters matter: a longer sentence is cut by the over-long rule.
        # Scans resume where the previous feed stopped ("not a boundary" decisions are final), so feeding
        # a text character by character stays linear.
        buf, window = self._buf, min(len(self._buf), self.max_chars + 1)
        sentence_cut: Optional[int] = None
        pending = False  # a sentence end waits for its lookahead: no point in flushing a clause of it
        for match in _CANDIDATE.finditer(buf, self._sentence_from, window):
            if match.group() == "\n":
                sentence_cut = match.start()
                break
            decision = self._sentence_decision(match, final)
            if decision == _WAIT:
                pending = True
                break
            if decision != _NO:
                sentence_cut = decision
                break
            self._sentence_from = match.end()
        if sentence_cut is None and len(buf) > self.max_chars:
            cut = self._overlong_cut(final)
            if cut is not None:
                return cut
        if sentence_cut is not None:
            return sentence_cut
        if self.first_clause_words is not None and not self._emitted and not pending:
            for match in _CLAUSE.finditer(buf, self._clause_from, window):
                cut = self._clause_decision(match, final)
                if cut == _WAIT:
                    break
                end = match.end() if cut == _NO else cut
                units = self._clause_units + _word_units(buf[self._clause_from : end])
                if cut != _NO and units >= self.first_clause_words:
                    return cut
                self._clause_from, self._clause_units = end, units
        return len(buf) if final else None

    def _after_closers(self, index: int) -> int:
        while index < len(self._buf) and self._buf[index] in _CLOSERS:
            index += 1
        return index

    def _sentence_decision(self, match: re.Match, final: bool) -> int:
        """Cut index after a terminator run, or _NO / _WAIT."""
        buf, run = self._buf, match.group()
        cut = self._after_closers(match.end())
        if cut == len(buf):
            return cut if final else _WAIT
        nxt = buf[cut]
        if any(ch in _CJK_TERMINATORS for ch in run) or is_cjk(nxt):
            return cut
        if HAN_KANA_RE.match(buf[match.start() - 1 : match.start()]) and not nxt.isdigit():
            return cut  # "中文!English": half-width punctuation in unspaced CJK text
        if not nxt.isspace():
            return _NO  # 3.14, e.g, example.com
        if "!" in run or "?" in run:
            return cut
        if run == "." and self._dot_is_not_boundary(match.start()):
            return _NO
        look = cut
        while look < len(buf) and buf[look].isspace():
            if buf[look] == "\n":
                return cut
            look += 1
        if look == len(buf):
            return cut if final else _WAIT
        return _NO if buf[look].islower() else cut

    def _dot_is_not_boundary(self, dot: int) -> bool:
        found = _TOKEN_BEFORE.search(self._buf, max(dot - 32, 0), dot)
        token = found.group().lstrip(".") if found is not None else ""
        if not token:
            return False
        if token.isdigit():
            return len(token) <= 3  # list markers, ordinals ("3. Oktober"); joining is harmless
        if token.lower().replace(".", "") in ABBREVIATIONS or _DOTTED.fullmatch(token):
            return True
        return len(token) == 1 and token.isalpha() and token.isupper()  # initials

    def _in_url(self, index: int) -> bool:
        start = max(index - 256, 0)
        token = self._buf[start : index + 1].rsplit(None, 1)[-1]
        return "://" in token or token.lower().startswith("www.")

    def _clause_decision(self, match: re.Match, final: bool) -> int:
        """Cut index after clause punctuation, or _NO / _WAIT."""
        buf, mark = self._buf, match.group()
        if mark == " - ":
            before, cut = match.start(), match.end() - 1
        else:
            before, cut = match.start(), self._after_closers(match.end())
        if cut >= len(buf):
            return cut if final else _WAIT
        if mark in ("—", "–", " - "):
            if mark != " - " and self._in_url(before):
                return _NO  # a dash glued to a URL
            if buf[before - 1 : before].isdigit() and buf[match.end() :].lstrip()[:1].isdigit():
                return _NO  # ranges and arithmetic: 10–20, 5 - 3
            return cut
        if mark in "，、：；":
            return cut
        if buf[before - 1 : before] == ".":
            return _NO  # "e.g.," belongs to what follows
        nxt = buf[cut]
        return cut if nxt.isspace() or is_cjk(nxt) else _NO  # never 1,000 or 10:45

    def _overlong_cut(self, final: bool) -> Optional[int]:
        """Cut for a sentence longer than max_chars; never inside a word."""
        buf, limit = self._buf, self.max_chars
        if self._stuck_at:  # the window had no cut: only whitespace after it can help
            return self._next_space(final)
        best = None
        for match in _OVERLONG.finditer(buf, 0, limit):
            cut = self._clause_decision(match, final) if _CLAUSE.fullmatch(match.group()) else None
            if cut is None:
                cut = self._after_closers(match.end())
                if cut >= len(buf) or not (buf[cut].isspace() or is_cjk(buf[cut])):
                    cut = _NO
            if 0 < cut <= limit:
                best = cut
        if best is not None and best >= limit // 4:
            return best
        space = max(buf.rfind(" ", 0, limit + 1), buf.rfind("\t", 0, limit + 1))
        cjk = 0  # between Han/kana characters (scripts without spaces), never before punctuation
        last = _LAST_HAN_KANA.match(buf, 0, min(limit + 1, len(buf)))
        if last:
            at = last.end() - 1  # the last Han/kana character in the window
            cjk = at + 1 if at < limit and buf[at + 1 : at + 2].isalnum() else at
        cut = max(space, cjk, best or 0)
        if cut > 0:
            return cut
        self._stuck_at = limit
        return self._next_space(final)

    def _next_space(self, final: bool) -> Optional[int]:
        """A single token longer than max_chars: cut at the whitespace after it (never inside it)."""
        match = _SPACE.search(self._buf, self._stuck_at)
        if match:
            return match.start()
        self._stuck_at = len(self._buf)
        return len(self._buf) if final else None


def split_text(text: str, max_chars: int = 400, first_clause_words: Optional[float] = None) -> list[str]:
    """Whole text -> cleaned, speakable segments (same rules as :class:`StreamSegmenter`)."""
    segmenter = StreamSegmenter(max_chars=max_chars, first_clause_words=first_clause_words)
    return segmenter.feed(text or "") + segmenter.finish()
