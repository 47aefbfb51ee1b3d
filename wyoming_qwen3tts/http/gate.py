"""Admission of HTTP connections at accept, before aiohttp sees a byte of them.

aiohttp starts counting a request once its headers are complete, so connections that never finish their
headers used to pile up without limit. Here every accepted connection is counted against the per-client and
total caps (service/connections.py) at once; one over a cap never reaches aiohttp: it gets a complete
``503 server-busy`` answer (the same JSON as every other error), the server half-closes and reads and discards
what the client still sends, briefly and up to a bound, then closes: the client reads its 503, not a reset.

:class:`GatedSite` is aiohttp's ``TCPSite`` with this gate as the protocol factory.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable, Optional

from aiohttp import web

from ..core.vocab import ErrorCode
from ..service.connections import LINGER_BYTES, LINGER_SECONDS, MAX_LINGERING, client_of
from ..service.logsafe import safe

_LOGGER = logging.getLogger(__name__)


def busy_answer(message: str) -> bytes:
    body = json.dumps(
        {
            "error": {
                "message": message,
                "type": "server_error",
                "param": None,
                "code": str(ErrorCode.SERVER_BUSY),
            }
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class ConnectionGate:
    """Counts the connections of an aiohttp ``web.Server`` from accept; makes the protocols of a site."""

    def __init__(self, max_per_client: int, max_total: int) -> None:
        self.max_per_client = max_per_client
        self.max_total = max_total
        self.server: Optional[web.Server] = None
        self.lingering = 0
        self.refused = 0  # connections refused so far (tests, logs)

    def refusal(self, address: Optional[str]) -> Optional[str]:
        """None, or why a new connection from ``address`` is refused (aiohttp's own list is the count: it
        holds every connection from accept until its handler is done, unfinished headers included)."""
        assert self.server is not None
        connections = self.server.connections
        if len(connections) >= self.max_total:
            return f"the server has {self.max_total} connections open"
        client = client_of(address)
        same = 0
        for handler in connections:
            peer = handler.transport.get_extra_info("peername") if handler.transport is not None else None
            if peer and client_of(str(peer[0])) == client:
                same += 1
                if same >= self.max_per_client:
                    return f"too many connections from {client}"
        return None

    def protocol(self) -> asyncio.Protocol:
        return _Gate(self)


class _Gate(asyncio.Protocol):
    """The first protocol of every connection: hands an admitted one to aiohttp, answers a refused one."""

    def __init__(self, gate: ConnectionGate) -> None:
        self.gate = gate
        self.transport: Optional[asyncio.Transport] = None
        self.budget = LINGER_BYTES
        self.lingers = False  # counted in gate.lingering
        self.timer: Optional[asyncio.TimerHandle] = None

    def connection_made(self, transport: Any) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, (tuple, list)) and peer else None
        assert self.gate.server is not None
        reason = self.gate.refusal(address)
        if reason is None:
            handler = self.gate.server()
            transport.set_protocol(handler)
            handler.connection_made(transport)
            return
        self.gate.refused += 1
        _LOGGER.warning("HTTP: refusing a connection from %s: %s", safe(address), reason)
        self.transport = transport
        if self.gate.lingering >= MAX_LINGERING:
            transport.abort()
            return
        self.gate.lingering += 1
        self.lingers = True
        transport.write(busy_answer(reason))
        if transport.can_write_eof():
            transport.write_eof()
        self.timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:  # the refused client's request: read and discarded
        self.budget -= len(data)
        if self.budget < 0 and self.transport is not None:
            self.transport.close()

    def eof_received(self) -> bool:
        return False  # the transport closes (our answer is already written)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.lingers:
            self.gate.lingering -= 1
            self.lingers = False
        self.transport = None


class GatedSite(web.BaseSite):
    """``web.TCPSite`` whose connections pass :class:`ConnectionGate` first."""

    def __init__(self, runner: web.BaseRunner, gate: ConnectionGate, host: Optional[str], port: int) -> None:
        super().__init__(runner)
        self._gate = gate
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        return f"http://{self._host or '0.0.0.0'}:{self._port}"

    async def start(self) -> None:
        await super().start()
        assert self._runner.server is not None
        self._gate.server = self._runner.server
        factory: Callable[[], asyncio.Protocol] = self._gate.protocol
        self._server = await asyncio.get_running_loop().create_server(
            factory, self._host, self._port, reuse_address=True
        )
