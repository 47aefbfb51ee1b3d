"""One Wyoming connection: a plain dispatcher (as wyoming-piper's handler), each event type to a small method.
Synthesis never runs on the event loop: each audio cycle is an asyncio task (:class:`AudioJob`) that speaks
the reply (service/speech.py, the pipeline shared with the HTTP API) and writes its PCM as audio-chunk events,
so `describe`, `ping` and new text keep being read meanwhile.

Error codes (stable, see service/errors.py): voice-not-found, empty-text, text-too-long, server-busy,
synthesis-failed, bad-request, server-stopping, model-not-loaded, model-loading, voice-unusable, timeout.
``text_format: "ssml"`` on synthesize / synthesize-start: service/ssml.py. A stream still
ends with synthesize-stopped after an error; a non-streaming synthesize that fails gets its error and then
the connection is closed (as wyoming-piper does: Home Assistant before 2026.9 waits for audio-stop
otherwise). The engine of a cycle is leased from the model pool (service/models.py) for the whole cycle,
so it cannot be unloaded under it. Events are read with our bounded reader (reader.py); admission is taken
at the first text actually synthesized, not at synthesize-start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Optional, Union

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

from ..core.audio import CHANNELS, SAMPLE_RATE, SAMPLE_WIDTH
from ..core.errors import wyoming_code
from ..core.vocab import ErrorCode
from ..service.connections import LINGER_BYTES, LINGER_SECONDS
from ..service.errors import ServiceError
from ..service.logsafe import safe
from ..service.public import redact_paths
from ..service.segmenter import StreamSegmenter
from ..service.speech import Reply, decide_language, segments_of
from ..service.ssml import SsmlStream, ssml_segments
from ..service.state import ServerState, admitted, check_length, check_unicode
from ..service.voice import Voice
from . import requests
from .reader import FramingError, IdleConnection, Limits, read_event, write_event

_LOGGER = logging.getLogger(__name__)

WIDTH = SAMPLE_WIDTH


class AudioJob:
    """One audio cycle (audio-start ... audio-stop) fed with text segments, speaking them in order: the
    reply's PCM comes already cut to ``--samples-per-chunk`` (service/delivery.py), one audio-chunk each."""

    def __init__(
        self, handler: "Qwen3TtsEventHandler", voice: Voice, streaming: bool, language: Optional[str] = None
    ) -> None:
        self.handler = handler
        self.state = handler.state
        self.voice = voice
        self.streaming = streaming
        # Constant audio-chunk sizes whatever the speed (service/delivery.py); "wyoming" in the log line.
        self.reply = Reply(
            self.state, voice, language=language, door="wyoming", block=self.state.samples_per_chunk * WIDTH
        )
        self.audio_started = False
        self.cancelled = False
        self.task = asyncio.create_task(self._run(), name="qwen3tts audio job")

    def add(self, segment: str) -> None:
        self.reply.add(segment)

    def close(self) -> None:
        self.reply.close()

    def cancel(self) -> None:
        self.cancelled = True
        self.reply.cancel()
        self.task.cancel()

    async def _write(self, event: Event) -> None:
        if self.cancelled:  # Python 3.11's wait_for (reader.write_event) can swallow a cancel that lands
            raise asyncio.CancelledError()  # as a write completes: no audio after an error or stopped event
        await self.handler.write_event(event)

    async def _write_audio(self, pcm: bytes) -> None:
        if not self.audio_started:
            await self._write(AudioStart(rate=SAMPLE_RATE, width=WIDTH, channels=CHANNELS).event())
            self.audio_started = True
        await self._write(AudioChunk(rate=SAMPLE_RATE, width=WIDTH, channels=CHANNELS, audio=pcm).event())

    async def _run(self) -> None:
        try:
            if not await self.reply.wait_first():  # a stream closed without text: nothing to admit
                if not self.streaming:
                    raise ServiceError(ErrorCode.EMPTY_TEXT, "nothing to speak after text cleanup")
                return
            with admitted(self.state):
                async with contextlib.aclosing(self.reply.pcm()) as chunks:
                    async for pcm in chunks:
                        await self._write_audio(pcm)
            if self.audio_started:
                await self._write(AudioStop().event())
            elif not self.streaming:
                raise ServiceError(ErrorCode.EMPTY_TEXT, "nothing to speak after text cleanup")
        except ServiceError as exc:
            await self._fail(exc.code, exc.message)
        except asyncio.CancelledError:
            raise
        except ConnectionError as exc:
            _LOGGER.debug("client went away: %s", exc)
        except Exception as exc:  # never let one request take the connection down
            _LOGGER.exception("synthesis failed")
            await self._fail(ErrorCode.SYNTHESIS_FAILED, str(exc))

    async def _fail(self, code: str, text: str) -> None:
        await self.handler.send_error(code, text)
        if not self.streaming:  # error, then close: what every Home Assistant version handles
            await self.handler.stop()
        elif self.audio_started:  # close the cycle a client may be waiting on
            try:
                await self.handler.write_event(AudioStop().event())
            except (ConnectionError, RuntimeError):
                pass


@dataclass
class StreamState:
    """The open stream, synthesize-start ... synthesize-stop: its segmenter (SsmlStream for text_format
    ssml), the characters received so far, and whether it failed (its further chunks are then ignored)."""

    segmenter: Union[StreamSegmenter, SsmlStream] = field(default_factory=StreamSegmenter)
    chars: int = 0
    failed: bool = False


class Qwen3TtsEventHandler(AsyncEventHandler):
    def __init__(self, state: ServerState, *args, limits: Optional[Limits] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.state = state
        self.limits = limits or Limits()
        self.job: Optional[AudioJob] = None  # the non-streaming cycle or the stream's cycle
        self.stream: Optional[StreamState] = None  # between synthesize-start and -stop
        self.stopping = False  # stop() was called: read no further event
        self.closed = False  # the connection is gone: write nothing more
        state.handlers.add(self)

    # -- output ----------------------------------------------------------------------------------------------
    async def write_event(self, event: Event) -> None:
        if self.closed:
            raise ConnectionResetError("connection closed")
        await write_event(event, self.writer, self.limits.write_timeout)

    async def send_error(self, code: str, text: str) -> None:
        _LOGGER.info("error %s: %s", code, safe(text))
        try:
            await self.write_event(Error(text=redact_paths(text), code=wyoming_code(code)).event())
        except (ConnectionError, RuntimeError):
            pass

    # -- input -----------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Upstream's loop with our bounded reader. wyoming reads events only in ``AsyncEventHandler.run``
        (with ``async_read_event``, which buffers whatever ``payload_length`` announces and never times
        out) and offers no hook to replace the reader, so ``run`` (public, what the server calls per
        connection) is overridden here with upstream's contract kept: events go to ``handle_event`` until it
        returns False, the peer closes or ``stop()`` is called; then ``disconnect()`` and the writer closes.
        Added: the per-peer and total connection caps, the idle timeouts, and a yield between pipelined
        events (one client cannot starve the others)."""
        peer = _peer_of(self.writer)
        refusal = self.limits.connections.admit(peer)
        if refusal is not None:
            await self._refuse(peer, refusal)
            return
        try:
            while not self.stopping:
                event = await self._read(peer)
                if event is None or not await self.handle_event(event):
                    break
                await asyncio.sleep(0)
        finally:
            self.limits.connections.release(peer)
            await self.disconnect()
            self.writer.close()

    async def stop(self) -> None:
        self.stopping = True
        await super().stop()

    async def _read(self, peer: str) -> Optional[Event]:
        """The next event; None ends the connection (the peer closed, broke a limit or went idle)."""
        try:
            return await read_event(
                self.reader,
                self.limits,
                self.limits.idle_timeout if self.stream is not None else None,
                busy=lambda: self.job is not None and not self.job.task.done(),
            )
        except IdleConnection:
            _LOGGER.info(
                "Wyoming: closing the connection of %s: idle for %g s",
                peer,
                self.limits.connection_idle_timeout,
            )
        except FramingError as exc:
            _LOGGER.warning("Wyoming: bad event from %s: %s", peer, exc)
            await self.send_error(ErrorCode.BAD_REQUEST, str(exc))
        except asyncio.TimeoutError:
            _LOGGER.warning("Wyoming: %s idle for %g s; closing", peer, self.limits.idle_timeout)
            await self._timed_out()
        except (ConnectionError, OSError):
            pass
        return None

    async def _refuse(self, peer: str, reason: str) -> None:
        """Over a connection cap: ``server-busy``, then half-close and read and discard what the client still
        sends (bounded in bytes and time) before closing, so that it reads the error instead of a reset."""
        _LOGGER.warning("Wyoming: refusing a connection from %s: %s", peer, reason)
        self.state.handlers.discard(self)
        counter = self.limits.connections
        if counter.may_linger():
            counter.lingering += 1
            try:
                await self.send_error(ErrorCode.SERVER_BUSY, reason)
                with contextlib.suppress(OSError, RuntimeError):
                    if self.writer.can_write_eof():
                        self.writer.write_eof()
                with contextlib.suppress(OSError, asyncio.TimeoutError):
                    await asyncio.wait_for(_discard(self.reader, LINGER_BYTES), LINGER_SECONDS)
            finally:
                counter.lingering -= 1
        self.closed = True
        self.writer.close()

    async def _timed_out(self) -> None:
        if self.job is not None:
            self.job.cancel()
        await self.send_error(ErrorCode.TIMEOUT, f"no event for {self.limits.idle_timeout:g} s")
        if self.stream is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.write_event(SynthesizeStopped().event())

    # -- dispatch --------------------------------------------------------------------------------------------
    async def handle_event(self, event: Event) -> bool:
        """One event to its method; False closes the connection. A ServiceError becomes an error event."""
        try:
            if Describe.is_type(event.type):
                await self._describe()
            elif Ping.is_type(event.type):
                await self.write_event(Pong(text=requests.ping_text(event)).event())
            elif Synthesize.is_type(event.type):
                await self._synthesize(event)
            elif not self.state.streaming:
                pass  # streaming not advertised: its events are ignored
            elif SynthesizeStart.is_type(event.type):
                await self._stream_start(event)
            elif SynthesizeChunk.is_type(event.type):
                await self._stream_chunk(event)
            elif SynthesizeStop.is_type(event.type):
                await self._stream_stop()
            # select-program and anything unknown: ignored, the connection stays
        except ServiceError as exc:
            if exc.code == ErrorCode.BAD_REQUEST:
                _LOGGER.warning("Wyoming: bad %s: %s", safe(event.type, 40), safe(exc.message))
            await self.send_error(exc.code, exc.message)
            # A failed non-streaming synthesize closes the connection (see the module doc).
            return not (Synthesize.is_type(event.type) and self.stream is None)
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def _describe(self) -> None:
        assert self.state.described is not None
        await self.write_event((await self.state.described.get()).event())

    async def _synthesize(self, event: Event) -> None:
        if self.stream is not None:
            return  # Home Assistant's compat copy of the streamed text: never speak it twice
        text, name = requests.text_of(event), requests.voice_name(event)
        language, ssml = requests.voice_language(event), requests.ssml_of(event)
        await self._wait_previous()
        check_length(self.state, text)
        voice = self.state.find_voice(name)
        segments = ssml_segments(self.state, voice, text, language) if ssml else segments_of(text)
        job = AudioJob(self, voice, streaming=False, language=language)
        for segment in segments:
            job.add(segment)
        job.close()
        self.job = job

    async def _stream_start(self, start: Event) -> None:
        if self.stream is not None:
            raise ServiceError(ErrorCode.BAD_REQUEST, "synthesize-start while a stream is open")
        await self._wait_previous()
        self.stream = stream = StreamState()
        try:
            voice = self.state.find_voice(requests.voice_name(start))
            language = requests.voice_language(start)
            if requests.ssml_of(start):  # SSML parts are released per complete sentence (service/ssml.py)
                said = decide_language(voice, self.state.default_language, "", language)
                stream.segmenter = SsmlStream(None if said == "auto" else said)
        except ServiceError:
            stream.failed = True
            raise
        self.job = AudioJob(self, voice, streaming=True, language=language)

    async def _stream_chunk(self, event: Event) -> None:
        stream = self.stream
        if stream is None or stream.failed:
            return
        try:
            text = requests.text_of(event)
            check_unicode(text)
            stream.chars += len(text or "")
            if stream.chars > self.state.max_text_chars:
                raise ServiceError(
                    ErrorCode.TEXT_TOO_LONG, f"streamed text exceeds {self.state.max_text_chars} characters"
                )
        except ServiceError:
            self._fail_stream(stream)
            raise
        assert self.job is not None
        for segment in stream.segmenter.feed(text or ""):
            self.job.add(segment)

    async def _stream_stop(self) -> None:
        stream, job = self.stream, self.job
        if stream is None:
            await self.write_event(SynthesizeStopped().event())  # stray stop: still close the exchange
            return
        self.stream = None
        if job is not None and not stream.failed:
            for segment in stream.segmenter.finish():
                job.add(segment)
            job.close()
            try:
                await asyncio.shield(job.task)
            except asyncio.CancelledError:
                if not job.task.cancelled():
                    raise
        elif job is not None:
            job.cancel()
            if job.audio_started:
                await self.write_event(AudioStop().event())
        self.job = None
        await self.write_event(SynthesizeStopped().event())

    def _fail_stream(self, stream: StreamState) -> None:
        stream.failed = True
        if self.job is not None:
            self.job.cancel()

    async def _wait_previous(self) -> None:
        if self.job is not None:
            await asyncio.shield(self.job.task)
            self.job = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def disconnect(self) -> None:
        """The client went away: cancel its work at once (frees the engine's KV slots)."""
        self.closed = True
        if self.job is not None:
            self.job.cancel()
        self.state.handlers.discard(self)

    async def shutdown(self) -> None:
        """Server stopping: in-flight work gets an error event, a stream still gets synthesize-stopped."""
        if self.job is not None and not self.job.task.done():
            self.job.cancel()
            await self.send_error(ErrorCode.SERVER_STOPPING, "the server is shutting down")
            if self.stream is not None:
                try:
                    await self.write_event(SynthesizeStopped().event())
                except (ConnectionError, RuntimeError):
                    pass
        await self.stop()


async def _discard(reader: asyncio.StreamReader, budget: int) -> None:
    while budget > 0:
        data = await reader.read(min(budget, 1 << 14))
        if not data:
            return
        budget -= len(data)


def _peer_of(writer: asyncio.StreamWriter) -> str:
    """The client's address (no port): what the per-peer limit counts. Unix sockets and stdio: "local"."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, (tuple, list)) and peer:
        return str(peer[0])
    return "local"
