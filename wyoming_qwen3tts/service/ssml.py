"""SSML in, speakable segments out: the subset a voice assistant sends, for both front doors.

Supported: ``speak``, ``p``, ``s`` (segment boundaries), ``break`` (``time="500ms"``/``"1.5s"`` or
``strength``: a pause through the reply's PCM shaper, service/delivery.py), ``prosody rate`` (x-slow ...
x-fast, ``150%``, ``+20%``, ``1.2``: the pitch-preserving stretcher), ``say-as interpret-as`` = characters,
cardinal, ordinal, date, time, telephone (through the normalizer's words for the language), ``sub alias``,
``lang xml:lang`` (and ``xml:lang`` on any element: that text's language). Every other element is dropped and
its text kept.

Safety: a document type declaration (``<!DOCTYPE``/``<!ENTITY``: entity expansion, external entities) is
never parsed; the text is bounded by the caller (``max_text_chars``) and the element depth here. Malformed
SSML is not an error: it falls back to its text without the tags (and entities decoded), with a DEBUG line.

Streaming (Wyoming synthesize-chunk): :class:`SsmlStream` keeps the text until a point where every element
but ``speak`` is closed and a sentence has ended (or before a ``break``, after a ``p``/``s``), parses what
came before, and keeps the rest; ``finish`` parses what remains. So segments are released per complete
sentence, not per clause as plain text is.
"""

from __future__ import annotations

import html
import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from typing import Optional

from ..core.languages import from_bcp47, to_bcp47
from ..core.vocab import ErrorCode
from .errors import ServiceError
from .segmenter import split_text
from .speech import decide_language
from .state import ServerState
from .voice import Voice

_LOGGER = logging.getLogger(__name__)

MAX_DEPTH = 32
MAX_PAUSE_S = 10.0
RATE_MIN, RATE_MAX = 0.5, 2.0  # what --speed allows
STRENGTHS = {"none": 0.0, "x-weak": 0.1, "weak": 0.25, "medium": 0.5, "strong": 0.75, "x-strong": 1.25}
RATES = {"x-slow": 0.6, "slow": 0.8, "medium": 1.0, "default": 1.0, "fast": 1.25, "x-fast": 1.5}
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_TAG = re.compile(r"<[^<>]*>")
_DTD = re.compile(r"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_DOCTYPE = re.compile(r"<!DOCTYPE[^\[>]*(?:\[.*?\])?\s*>", re.IGNORECASE | re.DOTALL)
_ENTITY = re.compile(r"&[A-Za-z_][\w.-]*;")  # entities html does not know (a DTD's own): dropped
_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)


class Segment(str):
    """A speakable segment with what the SSML said about it (a plain str everywhere else)."""

    pause: Optional[float] = None  # seconds of silence before it (a break); None: the reply's own gap
    rate: float = 1.0  # times the voice's speed
    language: Optional[str] = None  # engine language from xml:lang


def segment(
    text: str, pause: Optional[float] = None, rate: float = 1.0, language: Optional[str] = None
) -> str:
    out = Segment(text)
    out.pause, out.rate, out.language = pause, rate, language
    return out


@dataclass(frozen=True)
class _Ctx:
    rate: float = 1.0
    language: Optional[str] = None  # engine name


class _Builder:
    """Collects text runs with their context; boundaries (p, s, break) end a run."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, _Ctx, Optional[float]]] = []
        self.text: list[str] = []
        self.ctx = _Ctx()
        self.pause: Optional[float] = None

    def add(self, text: Optional[str], ctx: _Ctx) -> None:
        if not text:
            return
        if ctx != self.ctx and "".join(self.text).strip():
            self.boundary()
        self.ctx = ctx
        self.text.append(text)

    def boundary(self, pause: Optional[float] = None) -> None:
        words = "".join(self.text)
        if words.strip():
            self.runs.append((words, self.ctx, self.pause))
            self.pause = None
        self.text = []
        if pause is not None:
            self.pause = min(MAX_PAUSE_S, (self.pause or 0.0) + pause)

    def segments(self) -> list[str]:
        self.boundary()
        out: list[str] = []
        for words, ctx, pause in self.runs:
            for i, piece in enumerate(split_text(words)):
                out.append(segment(piece, pause if i == 0 else None, ctx.rate, ctx.language))
        return out  # a trailing break adds nothing: the reply ends there anyway


def parse(text: str, language: Optional[str] = None) -> list[str]:
    """The segments of an SSML document (or fragment); ``language`` (engine name): the reply's language for
    say-as when no xml:lang says otherwise. Never raises: malformed SSML is spoken as its text."""
    root = _root(text)
    if root is None:
        return split_text(plain_text(text))
    builder = _Builder()
    try:
        _walk(root, _Ctx(language=from_bcp47(root.get(_XML_LANG)) or language), builder, 0)
    except _TooDeep:
        _LOGGER.debug("SSML nested deeper than %d elements; speaking its text", MAX_DEPTH)
        return split_text(plain_text(text))
    return builder.segments()


def plain_text(text: str) -> str:
    """SSML without its tags (entities decoded): the fallback, and what language detection reads."""
    text = _DOCTYPE.sub(" ", _DECL.sub("", text))
    return _ENTITY.sub(" ", html.unescape(_TAG.sub(" ", text)))


def _root(text: str) -> Optional[ET.Element]:
    if _DTD.search(text):
        _LOGGER.debug("SSML with a document type declaration is not parsed; speaking its text")
        return None
    body = _DECL.sub("", text, count=1)
    try:
        return ET.fromstring(f"<speak>{body}</speak>")
    except ET.ParseError as exc:
        _LOGGER.debug("malformed SSML (%s); speaking its text", exc)
        return None


class _TooDeep(Exception):
    pass


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _walk(elem: ET.Element, ctx: _Ctx, out: _Builder, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise _TooDeep()
    tag = _local(elem.tag)
    lang = from_bcp47(elem.get(_XML_LANG))
    if lang:
        ctx = replace(ctx, language=lang)
    if tag == "break":
        out.boundary(_pause(elem))
        return
    if tag in ("p", "s", "paragraph", "sentence"):
        out.boundary()
    if tag == "prosody":
        ctx = replace(ctx, rate=_clamp(ctx.rate * _rate(elem.get("rate"))))
    if tag == "sub":
        out.add(elem.get("alias") or "".join(elem.itertext()), ctx)
        return
    if tag == "say-as":
        out.add(
            say_as("".join(elem.itertext()), elem.get("interpret-as") or "", elem.get("format"), ctx), ctx
        )
        return
    out.add(elem.text, ctx)
    for child in elem:
        _walk(child, ctx, out, depth + 1)
        out.add(child.tail, ctx)
    if tag in ("p", "s", "paragraph", "sentence"):
        out.boundary()


def _pause(elem: ET.Element) -> float:
    time = (elem.get("time") or "").strip().lower()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s)", time)
    if match:
        value = float(match.group(1)) / (1000.0 if match.group(2) == "ms" else 1.0)
        return min(MAX_PAUSE_S, value)
    return STRENGTHS.get((elem.get("strength") or "medium").strip().lower(), STRENGTHS["medium"])


def _rate(value: Optional[str]) -> float:
    key = (value or "").strip().lower()
    if key in RATES:
        return RATES[key]
    match = re.fullmatch(r"([+-]?)(\d+(?:\.\d+)?)(%?)", key)
    if not match:
        return 1.0
    sign, number, percent = match.group(1), float(match.group(2)), match.group(3)
    if not percent:
        return 1.0 if sign else number  # "1.2"; a signed bare number means nothing here
    if sign:  # "+20%" / "-10%": relative to the current rate
        return 1.0 + (number if sign == "+" else -number) / 100.0
    return number / 100.0  # "150%"


def _clamp(rate: float) -> float:
    return max(RATE_MIN, min(RATE_MAX, rate))


def say_as(text: str, interpret: str, fmt: Optional[str], ctx: _Ctx) -> str:
    """The words for a say-as element in ``ctx.language`` (digits stay digits where no language is known; the
    normalizer then reads them, or the model does)."""
    kind = interpret.strip().lower()
    text = text.strip()
    if kind in ("characters", "spell-out", "verbatim"):
        return " ".join(ch for ch in text if not ch.isspace())
    if kind == "telephone":  # digit by digit, groups apart
        groups = [" ".join(g) for g in re.findall(r"\d+", text)]
        return ("+ " if text.startswith("+") else "") + ", ".join(groups)
    lex = _lexicon(ctx.language)
    try:
        if kind in ("cardinal", "number") and re.fullmatch(r"-?\d{1,15}", text):
            n = int(text)
            return lex.cardinal(n) if lex else str(n)
        if kind == "ordinal":
            digits = re.sub(r"\D", "", text)
            if 0 < len(digits) <= 9:
                return lex.ordinal(int(digits)) if lex else f"{int(digits)}."
        if kind == "time":
            match = re.fullmatch(r"(\d{1,2})[:.h](\d{2})(?::\d{2})?", text)
            if match and lex and int(match.group(1)) < 24 and int(match.group(2)) < 60:
                return lex.time(int(match.group(1)), int(match.group(2)))
        if kind == "date":
            ymd = _date(text, (fmt or "").lower())
            if ymd and lex:
                return lex.date(*ymd)
    except Exception:  # noqa: BLE001 - a reading we cannot make leaves the text as written
        _LOGGER.debug("say-as %s failed for %r", kind, text, exc_info=True)
    return text


def _date(text: str, fmt: str) -> Optional[tuple[int, int, int]]:
    """(year, month, day) of an ISO date or of ``text`` read by the SSML format (dmy, mdy, ymd)."""
    parts = [int(p) for p in re.findall(r"\d+", text)]
    if len(parts) != 3:
        return None
    order = fmt if fmt in ("dmy", "mdy", "ymd") else ("ymd" if parts[0] > 31 else "dmy")
    values = dict(zip(order, parts))
    y, m, d = values["y"], values["m"], values["d"]
    return (y, m, d) if 1 <= m <= 12 and 1 <= d <= 31 else None


def _lexicon(language: Optional[str]):
    from .normalize import LANGUAGES, normalizer

    code = to_bcp47(language) if language else None
    return normalizer(code).lex if code in LANGUAGES else None


_SPEAK_LANG = re.compile(r"<speak\b[^>]*?xml:lang\s*=\s*[\"']([^\"']+)", re.IGNORECASE)
_BREAK_END = re.compile(r"(?:[.!?。！？]\s|</(?:s|p|speak)>|<break\b[^>]*/>)", re.IGNORECASE)


class SsmlStream:
    """SSML arriving in chunks (Wyoming synthesize-chunk): releases the segments of each complete part."""

    def __init__(self, language: Optional[str] = None) -> None:
        self.language = language
        self.buffer = ""

    def feed(self, text: str) -> list[str]:
        self.buffer += text
        speak = _SPEAK_LANG.search(self.buffer)
        if speak is not None:  # the root's language holds for every part (each is parsed on its own)
            self.language = from_bcp47(speak.group(1)) or self.language
        cut = self._safe_cut()
        if cut <= 0:
            return []
        head, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return parse(_without_speak(head), self.language)

    def finish(self) -> list[str]:
        rest, self.buffer = self.buffer, ""
        return parse(_without_speak(rest), self.language) if rest.strip() else []

    def _safe_cut(self) -> int:
        """The end of the last sentence (or break, p, s) at which only ``speak`` is open; 0 when none."""
        best, depth, pos = 0, 0, 0
        buffer = self.buffer
        for match in re.finditer(r"<(/?)([A-Za-z][\w:.-]*)[^<>]*?(/?)>|[.!?。！？]\s", buffer):
            pos = match.end()
            if match.group(2):
                name = _local(match.group(2))
                if name == "speak":
                    continue
                if match.group(1):
                    depth -= 1
                elif not match.group(3):
                    depth += 1
            if depth == 0 and match.group(2) and _local(match.group(2)) == "break":
                best = match.start()  # before a break: its pause goes with the text after it
            elif depth == 0 and _BREAK_END.match(buffer, match.start()):
                best = pos
            elif depth == 0 and not match.group(2):
                best = pos
        return best


def _without_speak(text: str) -> str:
    """A stream's part without the speak tags it opens or closes (each part is wrapped anew)."""
    return re.sub(r"</?speak\b[^>]*>", " ", _DECL.sub("", text), flags=re.IGNORECASE)


def is_ssml(text_format: object, field: str = "text_format") -> bool:
    """A request's text format: "text" (or none) or "ssml"; anything else is a bad-request."""
    if text_format is None or text_format == "text":
        return False
    if text_format == "ssml":
        return True
    raise ServiceError(
        ErrorCode.BAD_REQUEST, f"{field} must be 'text' or 'ssml', got {str(text_format)[:40]!r}"
    )


def ssml_segments(state: ServerState, voice: Voice, text: str, requested: Optional[str] = None) -> list[str]:
    """The segments of a whole SSML request, say-as read in the language the reply will speak; raises
    empty-text as speech.segments_of does."""
    language = decide_language(voice, state.default_language, plain_text(text), requested)
    segments = parse(text, None if language == "auto" else language)
    if not segments:
        raise ServiceError(ErrorCode.EMPTY_TEXT, "nothing to speak after text cleanup")
    return segments
