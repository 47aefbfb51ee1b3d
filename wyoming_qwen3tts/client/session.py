"""The Wyoming exchanges behind ``describe`` and ``say``, with timings. Nothing here assumes our server.

* ``synthesize`` (non-streaming) is complete at the first ``audio-stop`` or an ``error``.
* A stream (``synthesize-start``, ``-chunk`` x n, the compat ``synthesize`` with the whole text as Home
  Assistant sends it, ``synthesize-stop``) is complete at ``synthesize-stopped`` or an ``error``; servers
  may answer with several audio cycles (wyoming-piper: one per sentence), all of them are kept and counted.
* ``--timeout`` bounds the connect, every write, and the wait for the server's next event once all text
  is sent. While text is still coming (a slow stdin) the server may rightly be silent, so that wait is not
  timed then; a server that closes the connection is noticed at once either way.

Times are ``time.monotonic()``; ``ttfa_s`` and ``total_s`` count from the first text sent (the
``synthesize`` event, or the first ``synthesize-chunk``), so describe and connect times are not included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Optional

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from .output import AudioPipeline, PcmFormat
from .textsource import paced, stdin_fragments, string_fragments

_LOGGER = logging.getLogger(__name__)


class UsageProblem(Exception):
    """The request cannot be made as given (exit 2); the message is one line."""


class ConnectionProblem(Exception):
    """Cannot connect, timed out, or the connection broke (exit 3); the message is one line."""


@dataclass
class TextInput:
    """The text of a ``say``: ``text`` from the arguments, or stdin when ``stdin`` is set."""

    text: Optional[str] = None
    stdin: bool = False
    words: int = 3  # words per streamed fragment
    delay: float = 0.0  # seconds between streamed fragments

    async def whole(self) -> str:
        if not self.stdin:
            return self.text or ""
        # Our own daemon reader thread, not to_thread(): asyncio.run() would wait for an executor thread
        # blocked on a stdin that never closes.
        return "".join([fragment async for fragment in stdin_fragments(self.words)])

    def fragments(self) -> AsyncIterator[str]:
        source = stdin_fragments(self.words) if self.stdin else string_fragments(self.text or "", self.words)
        return paced(source, self.delay)


@dataclass
class SayResult:
    uri: str
    mode: str  # "synthesize", "stream", or "synthesize (fallback)" when the server cannot stream
    voice: Optional[SynthesizeVoice] = None
    connect_s: Optional[float] = None
    ttfa_s: Optional[float] = None  # first audio-chunk, from the first text sent
    total_s: Optional[float] = None  # completion, from the first text sent
    input_end_s: Optional[float] = None  # last text sent (synthesize-stop), from the first text sent
    cycles: int = 0  # audio-start ... audio-stop cycles
    chunks: int = 0
    fragments: int = 0  # synthesize-chunk events sent
    text_chars: int = 0
    error_code: Optional[str] = None
    error_text: Optional[str] = None
    notes: list[str] = field(default_factory=list)


def open_client(uri: str, timeout: float) -> AsyncClient:
    """Raises UsageProblem for a URI the client cannot use."""
    if not uri.startswith(("tcp://", "unix://")):  # stdio:// would talk to our own stdin/stdout
        raise UsageProblem(f"unsupported URI {uri!r}: use tcp://HOST:PORT or unix:///PATH")
    try:
        return AsyncClient.from_uri(uri, connect_timeout=timeout)
    except ValueError as err:  # e.g. tcp:// without a port
        raise UsageProblem(f"invalid URI {uri!r}: {err}") from err


@contextlib.asynccontextmanager
async def connected(client: AsyncClient, uri: str, timeout: float) -> AsyncIterator[AsyncClient]:
    """Connects (errors become ConnectionProblem) and always closes, without waiting long on a dead peer."""
    try:
        await client.connect()
    except asyncio.TimeoutError as err:
        raise ConnectionProblem(f"timeout: could not connect to {uri} within {timeout:g} s") from err
    except ConnectionRefusedError as err:
        raise ConnectionProblem(f"connection refused: {uri} (is the server running?)") from err
    except FileNotFoundError as err:
        raise ConnectionProblem(f"socket not found: {uri}") from err
    except OSError as err:
        raise ConnectionProblem(f"cannot connect to {uri}: {err.strerror or err}") from err
    try:
        yield client
    except (ConnectionError, asyncio.IncompleteReadError) as err:
        raise ConnectionProblem(f"connection to {uri} lost: {err}") from err
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 2)


async def fetch_info(client: AsyncClient, uri: str, timeout: float) -> Info:
    await asyncio.wait_for(client.write_event(Describe().event()), timeout)
    while True:  # skip anything else a server may send first
        try:
            event = await asyncio.wait_for(client.read_event(), timeout)
        except asyncio.TimeoutError as err:
            raise ConnectionProblem(
                f"timeout: no answer to describe from {uri} within {timeout:g} s"
            ) from err
        if event is None:
            raise ConnectionProblem(f"{uri} closed the connection without answering describe")
        if Info.is_type(event.type):
            return _decode(Info, event)


async def describe(uri: str, timeout: float) -> Info:
    client = open_client(uri, timeout)
    async with connected(client, uri, timeout):
        return await fetch_info(client, uri, timeout)


def streaming_support(info: Info) -> Optional[str]:
    """None if the TTS program a client would use (the first installed one, as Home Assistant picks it)
    supports streaming, else the reason why not."""
    programs = [p for p in info.tts if p.installed] or list(info.tts)
    if not programs:
        return "the server advertises no TTS program"
    if not programs[0].supports_synthesize_streaming:
        return f"{programs[0].name!r} does not support streaming (supports_synthesize_streaming is false)"
    return None


def _decode(cls: Any, event: Event) -> Any:
    """``cls.from_event(event)``; a foreign server's malformed event becomes one clear line (exit 3)."""
    try:
        decoded = cls.from_event(event)
    except Exception as err:  # noqa: BLE001 - from_event raises whatever the bad data provokes
        raise ConnectionProblem(f"malformed {event.type} event from the server: {err!r}") from err
    if isinstance(decoded, (AudioStart, AudioChunk)):
        fields = (decoded.rate, decoded.width, decoded.channels)
        if not all(isinstance(value, int) and value > 0 for value in fields):
            raise ConnectionProblem(f"malformed {event.type} event from the server: format {fields}")
    return decoded


class _Exchange:
    """One request's event loop: a sender coroutine writes, this reads until the request is complete."""

    def __init__(
        self, client: AsyncClient, uri: str, timeout: float, pipeline: AudioPipeline, result: SayResult
    ) -> None:
        self.client = client
        self.uri = uri
        self.timeout = timeout
        self.pipeline = pipeline
        self.result = result
        self.streaming = result.mode == "stream"
        self.t_request = time.monotonic()
        self.t0: Optional[float] = None  # first text sent
        self.last_activity = self.t_request
        self.in_cycle = False

    def elapsed(self) -> float:
        return time.monotonic() - (self.t0 if self.t0 is not None else self.t_request)

    async def send(self, event: Event, text: bool = False) -> None:
        if text and self.t0 is None:
            self.t0 = time.monotonic()
        try:
            await asyncio.wait_for(self.client.write_event(event), self.timeout)
        except asyncio.TimeoutError as err:
            raise ConnectionProblem(f"timeout: {self.uri} stopped reading for {self.timeout:g} s") from err
        self.last_activity = time.monotonic()

    def handle(self, event: Event) -> bool:
        """Returns True when the request is complete."""
        result = self.result
        if AudioStart.is_type(event.type):
            start = _decode(AudioStart, event)
            result.cycles += 1
            self.in_cycle = True
            self.pipeline.start(PcmFormat(start.rate, start.width, start.channels))
        elif AudioChunk.is_type(event.type):
            if not self.in_cycle:  # tolerate a server that skips audio-start
                result.cycles += 1
                self.in_cycle = True
            if result.ttfa_s is None:
                result.ttfa_s = self.elapsed()
            result.chunks += 1
            self.pipeline.write(_decode(AudioChunk, event))
        elif AudioStop.is_type(event.type):
            self.in_cycle = False
            return not self.streaming
        elif SynthesizeStopped.is_type(event.type):
            return self.streaming
        elif Error.is_type(event.type):
            error = _decode(Error, event)
            result.error_code, result.error_text = error.code, error.text
            return True
        else:
            _LOGGER.debug("ignoring %s event", event.type)
        return False

    async def run(self, sender: Awaitable[None]) -> None:
        sender_task = asyncio.ensure_future(sender)
        read_task: Optional[asyncio.Task] = None
        write_error: Optional[BaseException] = None
        try:
            while True:
                if read_task is None:
                    read_task = asyncio.ensure_future(self.client.read_event())
                waiting: set[asyncio.Future] = {read_task}
                wait_s: Optional[float] = None
                if not sender_task.done():
                    waiting.add(sender_task)
                else:
                    wait_s = max(0.0, self.last_activity + self.timeout - time.monotonic())
                done, _ = await asyncio.wait(waiting, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    raise ConnectionProblem(f"timeout: no answer from {self.uri} within {self.timeout:g} s")
                if sender_task in done:
                    self.last_activity = time.monotonic()  # the server gets a full --timeout after the text
                    error = sender_task.exception()
                    if isinstance(error, ConnectionError):
                        write_error = error  # keep reading: an error event may explain it
                    elif error is not None:
                        raise error
                if read_task not in done:
                    continue
                event, read_task = read_task.result(), None
                if event is None:
                    why = f" ({write_error})" if write_error else ""
                    raise ConnectionProblem(
                        f"{self.uri} closed the connection before the end of the audio{why}"
                    )
                self.last_activity = time.monotonic()
                if self.handle(event):
                    self.result.total_s = self.elapsed()
                    return
        finally:
            for task in (sender_task, read_task):
                if task is None:
                    continue
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task  # also retrieves a failure nobody looked at (no "never retrieved" noise)


async def say(
    uri: str,
    text: TextInput,
    voice: Optional[SynthesizeVoice],
    stream: bool,
    pipeline: AudioPipeline,
    timeout: float,
    notify: Callable[[str], None],
) -> SayResult:
    """Speaks ``text``; the audio goes to ``pipeline``. Server errors land in the result, not exceptions."""
    result = SayResult(uri=uri, mode="stream" if stream else "synthesize", voice=voice)
    client = open_client(uri, timeout)
    t_connect = time.monotonic()
    async with connected(client, uri, timeout):
        result.connect_s = time.monotonic() - t_connect
        if stream:
            why_not = streaming_support(await fetch_info(client, uri, timeout))
            if why_not:
                notify(f"note: {why_not}; falling back to one synthesize with the whole text")
                result.mode = "synthesize (fallback)"
        exchange = _Exchange(client, uri, timeout, pipeline, result)

        async def send_whole() -> None:
            whole = await text.whole()
            result.text_chars = len(whole)
            await exchange.send(Synthesize(text=whole, voice=voice).event(), text=True)
            result.input_end_s = exchange.elapsed()

        async def send_stream() -> None:
            await exchange.send(SynthesizeStart(voice=voice).event())
            parts: list[str] = []
            async for fragment in text.fragments():
                await exchange.send(SynthesizeChunk(text=fragment).event(), text=True)
                parts.append(fragment)
                result.fragments += 1  # counted as sent: an early error still reports how far it got
                result.text_chars += len(fragment)
            whole = "".join(parts)
            # Home Assistant's backwards-compatibility copy; a streaming server must not speak it again.
            await exchange.send(Synthesize(text=whole, voice=voice).event(), text=True)
            await exchange.send(SynthesizeStop().event())
            result.input_end_s = exchange.elapsed()

        await exchange.run(send_stream() if result.mode == "stream" else send_whole())
    return result
