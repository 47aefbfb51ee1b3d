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
from typing import Any, AsyncGenerator, Iterable, Optional, cast

from ..engine import SamplingParams, SpeechRequest, SpeechStream
from ..voices.library import VoiceLibraryError
from .delivery import PcmShaper
from .errors import ServiceError
from .language import detect_language
from .normalize import normalize_text
from .report import RequestReport
from .segmenter import split_text
from .state import ServerState, admitted, check_length  # noqa: F401 (API)
from .styles import style_args
from .voice import Voice

_LOGGER = logging.getLogger(__name__)

LOOKAHEAD = 2  # segments submitted ahead, so the next one is prefilled while the current one plays
_END = object()


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
        raise ServiceError("empty-text", "nothing to speak after text cleanup")
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
        raise ServiceError("voice-unusable", f"voice {voice.name!r} is unusable: {exc}") from exc
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
    ) -> None:
        self.state = state
        self.voice = voice
        self.requested_language = language
        self.instruct = instruct
        self.language: Optional[str] = None  # decided at the first segment
        self.segments: "asyncio.Queue[object]" = asyncio.Queue()
        self.inflight: "collections.deque[SpeechStream]" = collections.deque()
        self.spoken = 0
        self.engine: Any = None  # leased from the model pool while pcm() runs
        self.voice_args: dict[str, Any] = {}
        delivery = state.delivery
        self.report = RequestReport(door, voice.name, speed=voice.speed or delivery.speed)
        self.seed = delivery.request_seed()  # one seed for every sentence of the reply
        self.report.seed = delivery.seed
        self.shaper = PcmShaper(self.report.speed, delivery.sentence_silence, block)
        self._first: Optional[object] = None  # taken by wait_first, handed to pcm()
        self.marks: list[tuple[Optional[float], float]] = []  # per submitted segment: SSML pause and rate

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
        if self._first is not None:
            item, self._first = self._first, None
            return item
        return await self.segments.get()

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
        """The engine's PCM per sentence through the shaper: speed, pauses, constant blocks."""
        shaper = self.shaper
        async for first, pcm in self._engine_pcm():
            # self.spoken: the index of the segment this PCM belongs to (counted when its stream ends)
            mark = self.marks[self.spoken] if first and self.spoken < len(self.marks) else (None, 1.0)
            for out in (shaper.sentence(*mark) if first else []) + shaper.feed(pcm):
                yield out
        for out in shaper.finish():
            yield out

    async def _engine_pcm(self) -> AsyncGenerator[tuple[bool, bytes], None]:
        """(starts a sentence, PCM) from the engine streams, in order."""
        async with self.state.models.use(self.voice.role) as engine:
            self.engine = engine
            try:
                self.voice_args = await voice_args(self.state, self.voice, engine, self.instruct)
                while True:
                    if not self.inflight:
                        item = await self._next()
                        if item is _END:
                            break
                        self._submit(cast(str, item))
                    self._take_ready()
                    first = True
                    async for chunk in self.inflight[0]:
                        yield first, chunk.pcm
                        first = False
                        self._take_ready()
                    done = self.inflight.popleft()
                    self.spoken += 1
                    self.report.sentences = self.spoken
                    self.report.truncated += bool(getattr(getattr(done, "outcome", None), "truncated", False))
            finally:  # nothing of ours may run on an engine we no longer lease
                self.cancel()
                self.inflight.clear()
                self.engine = None  # nor keep it alive (an idle unload must free its memory)

    def _submit(self, text: str) -> None:
        if self.language is None:
            self.language, self.report.decided_by = language_and_source(
                self.voice, self.state.default_language, text, self.requested_language
            )
            self.report.language = self.language
        self.marks.append((getattr(text, "pause", None), getattr(text, "rate", 1.0)))  # SSML (ssml.py)
        language = getattr(text, "language", None) or self.language  # an SSML xml:lang
        if self.state.delivery.normalize and language != "auto":
            text = normalize_text(text, language)
        sampling = SamplingParams(seed=self.seed)
        request = SpeechRequest(str(text), language=language, sampling=sampling, **self.voice_args)
        try:
            self.inflight.append(self.engine.submit(request))
        except ValueError as exc:
            raise ServiceError("synthesis-failed", str(exc)) from exc

    def _take_ready(self) -> None:
        """Submits queued segments up to the lookahead, without waiting for more."""
        while len(self.inflight) < LOOKAHEAD and (self._first is not None or not self.segments.empty()):
            item = self._first if self._first is not None else self.segments.get_nowait()
            self._first = None
            if item is _END:
                self.segments.put_nowait(_END)  # keep it for the main loop
                return
            self._submit(cast(str, item))


async def speak(
    state: ServerState,
    voice: Voice,
    segments: Iterable[str],
    language: Optional[str] = None,
    instruct: Optional[str] = None,
) -> AsyncGenerator[bytes, None]:
    """Admits one request and yields the PCM of ``segments`` (see :func:`segments_of`); closing the
    generator early cancels the synthesis. Errors are ServiceErrors, raised before the first chunk when
    the request cannot start (busy, voice unusable, model not loaded)."""
    utterance = Utterance(state, voice, language, instruct)
    for segment in segments:
        utterance.add(segment)
    utterance.close()
    with admitted(state):
        async with contextlib.aclosing(utterance.pcm()) as chunks:
            async for pcm in chunks:
                yield pcm
