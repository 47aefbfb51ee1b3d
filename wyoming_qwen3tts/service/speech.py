"""Speaking text with a voice: the synthesis path shared by the Wyoming handler and the HTTP API.

An :class:`Utterance` takes text segments (all at once, or as they arrive from a stream) and yields 24 kHz
mono int16 PCM in order. It leases the voice's engine from the model pool for its whole life (so the model
cannot be unloaded under it), prepares the voice once (built-in speaker, design instruct, or a clone prompt
from the prompt cache in a worker thread), decides the language once, and keeps ``LOOKAHEAD`` segments
submitted so the next one is prefilled while the current one plays. Closing its PCM generator early (client
gone, task cancelled) cancels the engine streams at once, which frees their KV slots.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncGenerator, Iterable, Optional, cast

from ..core.vocab import ErrorCode
from ..engine import SamplingParams, SpeechRequest, SpeechStream
from ..voices.library import VoiceLibraryError
from .clauses import split_long
from .delivery import PcmShaper
from .errors import ServiceError
from .language import detect_language
from .normalize import normalize_text
from .pacing import Pacer, RateMeter, meter_for, split_chars
from .release import Piece, paced
from .report import RequestReport
from .segmenter import split_text
from .state import ServerState, admitted, check_length  # noqa: F401 (API)
from .styles import style_args
from .voice import Voice

_LOGGER = logging.getLogger(__name__)

LOOKAHEAD = 2  # segments submitted ahead, so the next one is prefilled while the current one plays
FRAME_S = 0.08  # seconds of audio per codec frame
MIN_PART_S = 0.5  # a sentence is not cut into pieces shorter than this (playback pacing)
_END = object()


@dataclass
class _Part:
    """One submitted piece of text: a whole segment, or a piece of one cut for pacing (``continues``).
    ``pause`` and ``rate`` come from SSML (ssml.py): applied where a segment starts, not between pieces."""

    text: str
    language: Optional[str]
    continues: bool = False
    pause: Optional[float] = None
    rate: float = 1.0


def decide_language(voice: Voice, default_language: str, text: str, requested: Optional[str] = None) -> str:
    """Requested (an HTTP hint) > the voice's own language > configured default > script of the text >
    auto. Called once per utterance, so a reply does not switch language (and timbre) between sentences."""
    return language_and_source(voice, default_language, text, requested)[0]


def language_and_source(
    voice: Voice, default_language: str, text: str, requested: Optional[str] = None
) -> tuple[str, str]:
    """The language (see :func:`decide_language`) and how it was decided, for the request's log line."""
    if requested:
        return requested, "requested"
    if voice.language:
        return voice.language, "voice"
    if default_language != "auto":
        return default_language, "default"
    detected = detect_language(text)
    return (detected, "detected") if detected else ("auto", "model")


def segments_of(text: str) -> list[str]:
    """A whole text's speakable segments; raises empty-text."""
    segments = split_text(text)
    if not segments:
        raise ServiceError(ErrorCode.EMPTY_TEXT, "nothing to speak after text cleanup")
    return segments


async def voice_args(
    state: ServerState, voice: Voice, engine: Any, instruct: Optional[str] = None
) -> dict[str, Any]:
    """How to ask the leased engine for ``voice``. ``instruct`` (style instructions of a request) goes to
    built-in speakers as is and is appended to a design voice's description; Base models cannot take it."""
    if voice.kind == "style":
        return style_args(voice, engine, instruct)
    if voice.kind == "builtin":
        return {"speaker": voice.speaker, "instruct": instruct} if instruct else {"speaker": voice.speaker}
    if voice.kind == "design":
        text = voice.profile.instruct if not instruct else f"{voice.profile.instruct} {instruct}"
        return {"instruct": text}
    if instruct:
        _LOGGER.debug("clone voice %s: ignoring instructions (Base models take none)", voice.name)
    model_id = state.models.models[voice.role]
    try:  # memory, disk, else the encoders: in a worker thread, the event loop keeps serving
        assert state.prompts is not None and model_id is not None
        prompt = await asyncio.to_thread(state.prompts.get, voice.profile, engine, model_id)
    except (VoiceLibraryError, OSError, ValueError) as exc:
        raise ServiceError(ErrorCode.VOICE_UNUSABLE, f"voice {voice.name!r} is unusable: {exc}") from exc
    return {"voice": prompt}


class Utterance:
    """Text segments in (``add`` ... ``close``), PCM out (``pcm()``), in order."""

    def __init__(
        self,
        state: ServerState,
        voice: Voice,
        language: Optional[str] = None,
        instruct: Optional[str] = None,
        door: str = "http",
        block: Optional[int] = None,
        paced: bool = True,
    ) -> None:
        self.state = state
        self.voice = voice
        self.requested_language = language
        self.instruct = instruct
        self.language: Optional[str] = None  # decided at the first segment
        self.segments: "asyncio.Queue[object]" = asyncio.Queue()
        self.inflight: "collections.deque[SpeechStream]" = collections.deque()
        self.texts: "collections.deque[_Part]" = collections.deque()  # what each inflight stream speaks
        self.parts: "collections.deque[_Part]" = collections.deque()  # cut, not yet submitted
        self.meter: Optional[RateMeter] = None  # the leased engine's (pacing.py)
        self.spoken = 0
        self.engine: Any = None  # leased from the model pool while pcm() runs
        self.voice_args: dict[str, Any] = {}
        delivery = state.delivery
        self.report = RequestReport(door, voice.name, speed=voice.speed or delivery.speed)
        self.seed = delivery.request_seed()  # one seed for every sentence of the reply
        self.report.seed = delivery.seed
        self.shaper = PcmShaper(self.report.speed, delivery.sentence_silence, block)
        # Playback-aware release (pacing.py): off for whole files and with --prebuffer off.
        self.pacer: Optional[Pacer] = None
        if paced and delivery.prebuffer != "off":
            fixed = None if delivery.prebuffer == "auto" else float(delivery.prebuffer)
            self.pacer = Pacer(
                self.report.started, delivery.max_silence, fixed=fixed, speed=self.report.speed
            )
            self.report.pacer = self.pacer
        self._first: Optional[object] = None  # taken by wait_first, handed to pcm()

    def add(self, segment: str) -> None:
        self.report.chars += len(segment)
        self.segments.put_nowait(segment)

    async def wait_first(self) -> bool:
        """Waits for the first segment; False when closed without any. A stream takes its admission slot
        here, at its first text, so an open but silent stream holds nothing."""
        if self._first is None:
            self._first = await self.segments.get()
        return self._first is not _END

    async def _next(self) -> object:
        if self.parts:
            return self.parts.popleft()
        if self._first is not None:
            item, self._first = self._first, None
            return self._cut(item)
        return self._cut(await self.segments.get())

    def close(self) -> None:
        self.segments.put_nowait(_END)

    def cancel(self) -> None:
        for stream in self.inflight:
            stream.cancel()

    async def pcm(self) -> AsyncGenerator[bytes, None]:
        """PCM chunks of all segments until ``close()``; use under ``contextlib.aclosing``. Logs the
        request's line (report.py) when it ends, however it ends."""
        try:
            async for pcm in self._shaped():
                self.report.audio(pcm)
                yield pcm
        except asyncio.CancelledError:
            self.report.outcome = "cancelled"
            raise
        except GeneratorExit:
            self.report.outcome = "cancelled"
            raise
        except Exception as exc:
            self.report.outcome = f"error: {getattr(exc, 'code', type(exc).__name__)}"
            raise
        finally:
            self.report.log()

    async def _shaped(self) -> AsyncGenerator[bytes, None]:
        """The reply's PCM: as generated, or released in time for the listener (release.py)."""
        if self.pacer is not None:
            async with contextlib.aclosing(paced(self._pieces(), self.pacer)) as chunks:
                async for pcm in chunks:
                    yield pcm
            return
        async for piece in self._pieces():
            for out in piece.pcm:
                yield out

    async def _pieces(self) -> AsyncGenerator[Piece, None]:
        """The engine's PCM per segment through the shaper (speed, pauses, constant blocks), in order."""
        shaper = self.shaper
        async for piece in self._engine_pieces():
            yield piece
        tail = shaper.finish()
        if tail:
            yield Piece("audio", tail)

    async def _engine_pieces(self) -> AsyncGenerator[Piece, None]:
        shaper = self.shaper
        async with self.state.models.use(self.voice.role) as engine:
            self.engine = engine
            self.meter = meter_for(engine)
            try:
                self.voice_args = await voice_args(self.state, self.voice, engine, self.instruct)
                while True:
                    if not self.inflight:
                        item = await self._next()
                        if item is _END:
                            break
                        self._submit(cast(_Part, item))
                    self._take_ready()
                    part = self.texts[0]
                    stream = self.inflight[0]
                    yield Piece("start", chars=len(part.text), meter=self.meter, language=part.language)
                    first = True
                    async for chunk in stream:
                        starts = first and not part.continues
                        out = (shaper.sentence(part.pause, part.rate) if starts else []) + shaper.feed(
                            chunk.pcm
                        )
                        # (getattr: a stream wrapped by a caller may not carry the engine's timings)
                        frames = getattr(stream, "max_frames", None)
                        bound = frames * FRAME_S if frames else None
                        since = getattr(stream, "prefilled_at", None)
                        made = getattr(chunk, "made", None) or time.monotonic()
                        yield Piece("audio", out, chunk.seconds, made, bound, since=since)
                        first = False
                        self._take_ready()
                    yield Piece("end")
                    done = self.inflight.popleft()
                    self.texts.popleft()
                    self.spoken += 1
                    self.report.sentences = self.spoken
                    self.report.truncated += bool(getattr(getattr(done, "outcome", None), "truncated", False))
            finally:  # nothing of ours may run on an engine we no longer lease
                self.cancel()
                self.inflight.clear()
                self.texts.clear()
                self.engine = None  # nor keep it alive (an idle unload must free its memory)

    def _cut(self, item: object) -> object:
        """A segment from the queue as a :class:`_Part`: its first piece, the rest kept in ``parts``.
        Where holding a whole sentence back would leave the listener silent longer than the bound, it is
        cut at clauses, then phrases (clauses.py); the pieces keep the reply's voice and seed."""
        if item is _END:
            return item
        text = cast(str, item)
        if self.language is None:
            self.language, self.report.decided_by = language_and_source(
                self.voice, self.state.default_language, text, self.requested_language
            )
            self.report.language = self.language
        pause, rate = getattr(text, "pause", None), getattr(text, "rate", 1.0)  # SSML (ssml.py)
        language = getattr(text, "language", None) or self.language  # an SSML xml:lang
        if self.state.delivery.normalize and language != "auto":
            text = normalize_text(text, language)
        pieces = [str(text)]
        if self.pacer is not None and self.pacer.fixed is None and self.meter is not None:
            limit = split_chars(self.meter, language, self.pacer.speed, self.pacer.max_silence)
            if limit is not None:
                least = int(MIN_PART_S / self.meter.seconds_per_char(language))
                pieces = split_long(pieces[0], limit, min_chars=max(2, least)) or pieces
        self.parts.extend(_Part(piece, language, continues=True) for piece in pieces[1:])
        return _Part(pieces[0], language, pause=pause, rate=rate)

    def _submit(self, part: _Part) -> None:
        sampling = SamplingParams(seed=self.seed)
        request = SpeechRequest(part.text, language=part.language, sampling=sampling, **self.voice_args)
        try:
            self.inflight.append(self.engine.submit(request))
        except ValueError as exc:
            raise ServiceError(ErrorCode.SYNTHESIS_FAILED, str(exc)) from exc
        self.texts.append(part)

    def _take_ready(self) -> None:
        """Submits queued segments up to the lookahead, without waiting for more."""
        while len(self.inflight) < LOOKAHEAD:
            if self.parts:
                self._submit(self.parts.popleft())
                continue
            if self._first is None and self.segments.empty():
                return
            item = self._first if self._first is not None else self.segments.get_nowait()
            self._first = None
            if item is _END:
                self.segments.put_nowait(_END)  # keep it for the main loop
                return
            self._submit(cast(_Part, self._cut(item)))


async def speak(
    state: ServerState,
    voice: Voice,
    segments: Iterable[str],
    language: Optional[str] = None,
    instruct: Optional[str] = None,
    paced: bool = True,
) -> AsyncGenerator[bytes, None]:
    """Admits one request and yields the PCM of ``segments`` (see :func:`segments_of`); closing the
    generator early cancels the synthesis. Errors are ServiceErrors, raised before the first chunk when
    the request cannot start (busy, voice unusable, model not loaded). ``paced``: released in time for a
    listener that plays it as it arrives (a stream); False for a whole file."""
    utterance = Utterance(state, voice, language, instruct, paced=paced)
    for segment in segments:
        utterance.add(segment)
    utterance.close()
    with admitted(state):
        async with contextlib.aclosing(utterance.pcm()) as chunks:
            async for pcm in chunks:
                yield pcm
