"""Connection timeouts and the per-peer limit of the HTTP port.

aiohttp has no header, body or write timeout: a client that sends half a header, stalls in the middle of
a body or stops reading a streamed answer keeps its connection (and, while it streams, a synthesis slot)
forever. A watchdog task looks at every connection a few times per timeout and aborts one that is

* idle (no request in progress) for ``idle_timeout`` seconds: slow headers and idle keep-alive alike;
* in a request whose body has not grown for ``idle_timeout`` seconds and is not complete;
* not taking its response: bytes waiting in the send buffer that have not gone down for
  ``write_timeout`` seconds.

Aborting the transport cancels the request handler (``handler_cancellation``), which frees the engine
streams and the admission slot; ``/readyz`` shows it. The per-client and total connection caps are counted
from accept by gate.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..service.logsafe import safe

_LOGGER = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _OneLineProtocolErrors(logging.Filter):
    """aiohttp logs every malformed request (a client's garbage) at ERROR with a traceback: log flooding.
    Such records become one WARNING line; genuine server errors are left alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            reason = " ".join(str(exc.message or exc).split())[:200]
            record.msg, record.args = f"{record.getMessage()}: {reason}", ()
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_protocol_errors() -> None:
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _OneLineProtocolErrors) for f in logger.filters):
        logger.addFilter(_OneLineProtocolErrors())


@dataclass
class _Conn:
    since: float  # first seen, or when its last request ended
    body_bytes: int = -1
    body_since: float = 0.0
    buffered: int = 0
    stalled_since: Optional[float] = None


class ConnectionWatchdog:
    def __init__(self, idle_timeout: float, write_timeout: float) -> None:
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.server: Optional[web.Server] = None
        self.active: dict[Any, web.BaseRequest] = {}  # transport -> its request in progress
        self.conns: dict[Any, _Conn] = {}  # transport -> what the watchdog knows of it
        self._task: Optional[asyncio.Task] = None

    def start(self, server: web.Server) -> None:
        self.server = server
        self._task = asyncio.create_task(self._run(), name="qwen3tts http watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        tick = max(0.2, min(self.idle_timeout, self.write_timeout) / 4)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(tick)
            try:
                self.check(loop.time())
            except Exception:  # noqa: BLE001 - the watchdog must outlive any surprise
                _LOGGER.exception("HTTP watchdog check failed")

    def check(self, now: float) -> None:
        assert self.server is not None
        seen: dict[Any, _Conn] = {}
        for proto in self.server.connections:
            transport = proto.transport
            if transport is None or transport.is_closing():
                continue
            conn = self.conns.get(transport) or _Conn(since=now)
            seen[transport] = conn
            reason = self._verdict(transport, conn, now)
            if reason:
                peer = transport.get_extra_info("peername")
                _LOGGER.warning(
                    "HTTP: closing the connection of %s: %s", safe(peer[0] if peer else "?"), reason
                )
                transport.abort()
        self.conns = seen

    def _verdict(self, transport: Any, conn: _Conn, now: float) -> Optional[str]:
        request = self.active.get(transport)
        buffered = transport.get_write_buffer_size()
        if request is None:
            if buffered:  # an answer still going out: the write rule below watches it
                conn.since = now
            elif now - conn.since > self.idle_timeout:
                return f"no complete request for {self.idle_timeout:g} s"
        elif not request.content.is_eof():
            received = request.content.total_bytes
            if received != conn.body_bytes:
                conn.body_bytes, conn.body_since = received, now
            elif now - conn.body_since > self.idle_timeout:
                return f"request body stalled for {self.idle_timeout:g} s"
        if buffered == 0 or buffered < conn.buffered:
            conn.stalled_since = None
        elif conn.stalled_since is None:
            conn.stalled_since = now
        elif now - conn.stalled_since > self.write_timeout:
            return f"the client has not read its answer for {self.write_timeout:g} s"
        conn.buffered = buffered
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        self.active[transport] = request
        try:
            return await handler(request)
        finally:
            self.active.pop(transport, None)
            conn = self.conns.get(transport)
            if conn is not None:  # idle from now on
                conn.since = asyncio.get_running_loop().time()
                conn.body_bytes, conn.stalled_since = -1, None
