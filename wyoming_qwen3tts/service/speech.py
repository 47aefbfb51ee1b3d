"""Speaking text with a voice: one PCM pipeline per reply, shared by the Wyoming handler and the HTTP API.

A :class:`Reply` takes text segments (all at once, or as they arrive from a stream) and yields 24 kHz mono
int16 PCM in order, through one path::

    segments ──► parts (language, normalization, pacing cuts) ──► engine streams (LOOKAHEAD ahead)
             ──► PcmShaper (one stretcher at voice × request speed, pauses, blocks) ──► release ──► bytes

It leases the voice's engine from the model pool for its whole life (so the model cannot be unloaded under
it), prepares the voice once (built-in speaker, design instruct, or a clone prompt from the prompt cache in a
worker thread), decides the language once, and keeps ``LOOKAHEAD`` parts submitted so the next one is
prefilled while the current one plays. Closing its PCM generator early (client gone, task cancelled) cancels
the engine streams at once, which frees their KV slots.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncGenerator, AsyncIterator, Callable, Iterable, Optional

from ..core.vocab import ErrorCode
from ..engine import SamplingParams, SpeechRequest, SpeechStream
from ..voices.library import VoiceLibraryError
from .clauses import join_pieces, split_long
from .delivery import PcmShaper
from .errors import ServiceError
from .language import detect_language
from .normalize import normalize_text
from .pacing import Pacer, Upcoming, split_chars
from .release import Piece, paced
from .report import RequestReport
from .segmenter import split_text
from .speedmeter import RateMeter, meter_for
from .state import ServerState, admitted, check_length  # noqa: F401 (API)
from .styles import style_args
from .voice import Voice

_LOGGER = logging.getLogger(__name__)

LOOKAHEAD = 2  # parts submitted ahead, so the next one is prefilled while the current one plays
FRAME_S = 0.08  # seconds of audio per codec frame
MIN_PART_S = 0.3  # a sentence is not cut into pieces shorter than this (playback pacing): about a word
RECUT = (0.8, 1.5)  # the speed changed this much since a sentence was cut: its rest is cut anew


@dataclass
class _Part:
    """One submitted piece of text: a whole segment, or a piece of one cut for pacing (``continues``).
    ``pause`` and ``rate`` come from SSML (ssml.py): applied where a segment starts, not between pieces."""

    text: str
    language: Optional[str]
    continues: bool = False
    pause: Optional[float] = None
    rate: float = 1.0
    limit: Optional[int] = None  # the pacing cut's characters per piece when it was cut (None: not cut)


class _Inbox:
    """The reply's text segments as they arrive, and whether more may come (``close``)."""

    def __init__(self) -> None:
        self.items: "collections.deque[str]" = collections.deque()
        self.closed = False
        self._changed = asyncio.Event()

    def put(self, segment: str) -> None:
        self.items.append(segment)
        self._changed.set()

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    async def wait(self) -> bool:
        """Until a segment is there (True) or the inbox is closed and empty (False)."""
        while not self.items and not self.closed:
            self._changed.clear()
            await self._changed.wait()
        return bool(self.items)

    def take(self) -> Optional[str]:
        return self.items.popleft() if self.items else None


def decide_language(voice: Voice, default_language: str, text: str, requested: Optional[str] = None) -> str:
    """Requested (an HTTP hint) > the voice's own language > configured default > script of the text >
    auto. Called once per reply, so a reply does not switch language (and timbre) between sentences."""
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


class Reply:
    """Text segments in (``add`` ... ``close``), the reply's PCM out (``pcm()``), in order.

    ``speed`` is the request's own speed (HTTP ``speed``); it multiplies the voice's speed (else the
    server's ``--speed``) and the product is applied once, by the one stretcher of the shaper. ``block``:
    the size of every PCM chunk but the last (the Wyoming door), None: as stretched. ``paced``: released in
    time for a listener that plays it as it arrives (release.py); False for a whole file."""

    def __init__(
        self,
        state: ServerState,
        voice: Voice,
        language: Optional[str] = None,
        instruct: Optional[str] = None,
        door: str = "http",
        block: Optional[int] = None,
        paced: bool = True,
        speed: float = 1.0,
    ) -> None:
        self.state = state
        self.voice = voice
        self.requested_language = language
        self.instruct = instruct
        self.language: Optional[str] = None  # decided at the first segment
        self.inbox = _Inbox()
        self.parts: "collections.deque[_Part]" = collections.deque()  # cut, not yet submitted
        # The submitted parts and their engine streams, in order: the head is the one being spoken.
        self.inflight: "collections.deque[tuple[_Part, SpeechStream]]" = collections.deque()
        self.meter: Optional[RateMeter] = None  # the leased engine's (pacing.py)
        self.spoken = 0
        self.engine: Any = None  # leased from the model pool while pcm() runs
        self.voice_args: dict[str, Any] = {}
        delivery = state.delivery
        self.report = RequestReport(door, voice.name, speed=delivery.speed_of(voice.speed, speed))
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

    # -- text in -------------------------------------------------------------------------------------------
    def add(self, segment: str) -> None:
        self.report.chars += len(segment)
        self.inbox.put(segment)

    def close(self) -> None:
        self.inbox.close()

    async def wait_first(self) -> bool:
        """Waits for the first segment; False when closed without any. A stream takes its admission slot
        here, at its first text, so an open but silent stream holds nothing."""
        return await self.inbox.wait()

    def cancel(self) -> None:
        for _, stream in self.inflight:
            stream.cancel()

    # -- PCM out -------------------------------------------------------------------------------------------
    async def pcm(self) -> AsyncGenerator[bytes, None]:
        """PCM chunks of all segments until ``close()``; use under ``contextlib.aclosing``. Logs the
        request's line (report.py) when it ends, however it ends."""
        pieces = self._pieces()
        released = paced(pieces, self.pacer) if self.pacer is not None else _as_made(pieces)
        try:
            async with contextlib.aclosing(released) as chunks:
                async for pcm in chunks:
                    self.report.audio(pcm)
                    yield pcm
        except (asyncio.CancelledError, GeneratorExit):
            self.report.outcome = "cancelled"
            raise
        except Exception as exc:
            self.report.outcome = f"error: {getattr(exc, 'code', type(exc).__name__)}"
            raise
        finally:
            self.report.log()

    async def _pieces(self) -> AsyncGenerator[Piece, None]:
        """Each part's engine PCM through the shaper (speed, pauses, blocks) as release.py's pieces: start,
        audio ..., end per part; then the shaper's tail. The engine is leased while parts are spoken."""
        shaper = self.shaper
        async with self.state.models.use(self.voice.role) as engine:
            self.engine = engine
            self.meter = meter_for(engine)
            try:
                self.voice_args = await voice_args(self.state, self.voice, engine, self.instruct)
                while self.inflight or await self._submit_next():
                    self._submit_ready()
                    part, stream = self.inflight[0]
                    yield Piece(
                        "start",
                        chars=len(part.text),
                        meter=self.meter,
                        language=part.language,
                        upcoming=self._upcoming(),
                    )
                    first = True
                    async for chunk in stream:
                        starts = first and not part.continues
                        out = (shaper.sentence(part.pause, part.rate) if starts else []) + shaper.feed(
                            chunk.pcm
                        )
                        yield _audio_piece(stream, chunk, out)
                        first = False
                        self._submit_ready()
                    yield Piece("end")
                    self.inflight.popleft()
                    self.spoken += 1
                    self.report.sentences = self.spoken
                    self.report.truncated += bool(
                        getattr(getattr(stream, "outcome", None), "truncated", False)
                    )
            finally:  # nothing of ours may run on an engine we no longer lease
                self.cancel()
                self.inflight.clear()
                self.engine = None  # nor keep it alive (an idle unload must free its memory)
        tail = shaper.finish()
        if tail:
            yield Piece("audio", tail)

    def _upcoming(self) -> Optional[Callable[[], Optional[Upcoming]]]:
        """How far the engine got with the part after the one starting (release.py smooths pauses with it)."""
        if len(self.inflight) < 2 or self.meter is None:
            return None
        (part, stream), meter = self.inflight[1], self.meter

        def progress() -> Optional[Upcoming]:
            frames = getattr(stream, "max_frames", None)  # None until admitted: the text's estimate alone
            bound = frames * FRAME_S if frames else None
            total = meter.expected_seconds(part.language, len(part.text), bound)
            return Upcoming(total, getattr(stream, "made_s", 0.0), bool(getattr(stream, "done", False)))

        return progress

    # -- parts to the engine -------------------------------------------------------------------------------
    async def _submit_next(self) -> bool:
        """Submits the next part, waiting for text; False when the reply's text has ended."""
        if not self.parts:
            if not await self.inbox.wait():
                return False
            segment = self.inbox.take()
            assert segment is not None  # wait() said one is there
            self._cut(segment)
        self._recut()
        self._submit(self.parts.popleft())
        return True

    def _submit_ready(self) -> None:
        """Submits parts up to the lookahead, without waiting for more text."""
        while len(self.inflight) < LOOKAHEAD:
            if not self.parts:
                segment = self.inbox.take()
                if segment is None:
                    return
                self._cut(segment)
            self._recut()
            self._submit(self.parts.popleft())

    def _cut(self, text: str) -> None:
        """A segment as :class:`_Part` s in ``parts``: where holding a whole sentence back would leave the
        listener silent longer than the bound, it is cut at clauses, then phrases (clauses.py); the pieces
        keep the reply's voice and seed, and only the first carries the segment's SSML pause and rate."""
        if self.language is None:
            self.language, self.report.decided_by = language_and_source(
                self.voice, self.state.default_language, text, self.requested_language
            )
            self.report.language = self.language
        pause, rate = getattr(text, "pause", None), getattr(text, "rate", 1.0)  # SSML (ssml.py)
        language = getattr(text, "language", None) or self.language  # an SSML xml:lang
        if self.state.delivery.normalize and language != "auto":
            text = normalize_text(text, language)
        pieces, limit = self._pieces_of(str(text), language)
        self.parts.append(_Part(pieces[0], language, pause=pause, rate=rate, limit=limit))
        self.parts.extend(_Part(piece, language, continues=True, limit=limit) for piece in pieces[1:])

    def _pieces_of(self, text: str, language: Optional[str]) -> tuple[list[str], Optional[int]]:
        """``text`` cut for pacing at the speed measured now, and the characters per piece used. The
        reply's first piece has no head start (nothing plays while it is made): it is cut shorter."""
        if self.pacer is None or self.pacer.fixed is not None or self.meter is None:
            return [text], None
        limit = split_chars(self.meter, language, self.pacer.speed, self.pacer.max_silence)
        if limit is None:
            return [text], None
        least = max(2, self.meter.chars_for(language, MIN_PART_S * self.pacer.speed))
        pieces = split_long(text, limit, min_chars=least) or [text]
        if self.spoken == 0 and not self.inflight:
            pacer = self.pacer
            cold = split_chars(self.meter, language, pacer.speed, pacer.max_silence, head_start=False)
            if cold is not None and len(pieces[0]) > cold:
                pieces = split_long(pieces[0], cold, min_chars=least) + pieces[1:]
        return pieces, limit

    def _recut(self) -> None:
        """Cuts the rest of the next sentence anew when the speed changed since it was cut (a host that
        slowed down while the reply runs gets shorter pieces at once, one that sped up fewer pauses). Only
        pieces not yet submitted change; the first keeps the sentence's SSML pause and rate."""
        if not self.parts or self.pacer is None or self.pacer.fixed is not None or self.meter is None:
            return
        head = self.parts[0]
        now = split_chars(self.meter, head.language, self.pacer.speed, self.pacer.max_silence)
        old = head.limit
        if now == old or (now is not None and old is not None and RECUT[0] <= now / old <= RECUT[1]):
            return
        group = [self.parts.popleft()]
        while self.parts and self.parts[0].continues:
            group.append(self.parts.popleft())
        pieces, limit = self._pieces_of(join_pieces([p.text for p in group]), head.language)
        fresh = [_Part(pieces[0], head.language, head.continues, head.pause, head.rate, limit)]
        fresh += [_Part(piece, head.language, continues=True, limit=limit) for piece in pieces[1:]]
        self.parts.extendleft(reversed(fresh))

    def _submit(self, part: _Part) -> None:
        sampling = SamplingParams(seed=self.seed)
        request = SpeechRequest(part.text, language=part.language, sampling=sampling, **self.voice_args)
        try:
            self.inflight.append((part, self.engine.submit(request)))
        except ValueError as exc:
            raise ServiceError(ErrorCode.SYNTHESIS_FAILED, str(exc)) from exc


def _audio_piece(stream: SpeechStream, chunk: Any, out: list[bytes]) -> Piece:
    """Shaped audio of one engine chunk, with the timings the release needs (getattr: a stream wrapped by a
    caller may not carry the engine's timings)."""
    frames = getattr(stream, "max_frames", None)
    bound = frames * FRAME_S if frames else None
    since = getattr(stream, "prefilled_at", None)
    made = getattr(chunk, "made", None) or time.monotonic()
    return Piece("audio", out, chunk.seconds, made, bound, since=since)


async def _as_made(pieces: AsyncIterator[Piece]) -> AsyncGenerator[bytes, None]:
    """The pieces' bytes as they are made (no playback pacing)."""
    async with contextlib.aclosing(pieces):  # type: ignore[type-var]
        async for piece in pieces:
            for out in piece.pcm:
                yield out


async def speak(
    state: ServerState,
    voice: Voice,
    segments: Iterable[str],
    language: Optional[str] = None,
    instruct: Optional[str] = None,
    paced: bool = True,
    speed: float = 1.0,
) -> AsyncGenerator[bytes, None]:
    """Admits one request and yields the PCM of ``segments`` (see :func:`segments_of`); closing the
    generator early cancels the synthesis. Errors are ServiceErrors, raised before the first chunk when
    the request cannot start (busy, voice unusable, model not loaded). ``paced``: see :class:`Reply`;
    ``speed``: the request's speed, times the voice's."""
    reply = Reply(state, voice, language, instruct, paced=paced, speed=speed)
    for segment in segments:
        reply.add(segment)
    reply.close()
    with admitted(state):
        async with contextlib.aclosing(reply.pcm()) as chunks:
            async for pcm in chunks:
                yield pcm
