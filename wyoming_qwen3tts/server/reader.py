"""A bounded Wyoming event reader and writer for our connections.

wyoming's ``async_read_event`` trusts the peer: it buffers whatever ``payload_length`` announces (a header
saying 2^40 makes the server buffer everything that follows) and ends the connection silently on bad JSON.
A TTS server never needs large inbound events, so here the header line, the data block and the payload
are capped, and a violation is a :class:`FramingError` that the handler answers with ``bad-request``
before closing that one connection. Writes drain with a timeout, so a client that stops reading cannot
hold a synthesis slot forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from wyoming.event import Event, async_write_event

from ..service.connections import ConnectionCounter

_LOGGER = logging.getLogger(__name__)


@dataclass
class Limits:
    """Per-connection limits of the Wyoming port (settings: idle_timeout, write_timeout,
    connection_idle_timeout, max_connections_per_peer, max_connections; the sizes are fixed: clients only
    send text). ``connections`` counts the open connections from accept (service/connections.py)."""

    idle_timeout: float = 60.0  # an open stream or a half-sent event may stall this long
    write_timeout: float = 60.0  # a client may stop reading this long
    connection_idle_timeout: float = 300.0  # a connection without a stream or request may idle this long
    max_header: int = 64 * 1024  # one JSON header line
    max_data: int = 1 << 20  # the data block (the text of a synthesize is at most a few hundred KB)
    max_payload: int = 1 << 20  # binary payload: a TTS client sends none
    connections: ConnectionCounter = field(default_factory=ConnectionCounter)


class IdleConnection(Exception):
    """No event for ``connection_idle_timeout`` seconds on a connection with nothing in progress."""


class FramingError(ValueError):
    """The peer broke the framing or a limit; the message is safe to send back."""


def _length(header: dict[str, Any], key: str, limit: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FramingError(f"{key} must be a non-negative integer")
    if value > limit:
        raise FramingError(f"{key} {value} exceeds the limit of {limit} bytes")
    return value


async def read_event(
    reader: asyncio.StreamReader,
    limits: Limits,
    deadline: Optional[float],
    busy: Callable[[], bool] = lambda: False,
) -> Optional[Event]:
    """The next event, None at EOF. ``deadline`` (seconds) bounds waiting for the whole event; None waits
    for the first byte up to ``limits.connection_idle_timeout`` at a time, as long as ``busy()`` (a request
    in progress), else raises IdleConnection; then the rest must arrive within ``limits.idle_timeout``."""
    if deadline is None:
        while True:  # a connection may idle generously; a started event may not stall
            try:
                first = await asyncio.wait_for(reader.read(1), limits.connection_idle_timeout)
                break
            except asyncio.TimeoutError:  # a cancelled read(1) loses no data
                if not busy():
                    raise IdleConnection() from None
        if not first:
            return None
        return await asyncio.wait_for(_read_rest(reader, first, limits), limits.idle_timeout)
    return await asyncio.wait_for(_read_rest(reader, b"", limits), deadline)


async def _read_rest(reader: asyncio.StreamReader, first: bytes, limits: Limits) -> Optional[Event]:
    if first == b"\n":
        line = first
    else:
        try:
            line = first + await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if not first and not exc.partial:
                return None
            raise FramingError("the connection ended inside an event header") from None
        except asyncio.LimitOverrunError:
            raise FramingError(f"event header longer than {limits.max_header} bytes") from None
    if len(line) > limits.max_header:
        raise FramingError(f"event header longer than {limits.max_header} bytes")
    header = _json_object(line, "event header")
    event_type = header.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise FramingError("the event header has no type")
    data = header.get("data") or {}
    if not isinstance(data, dict):
        raise FramingError("the event data must be a JSON object")
    data_length = _length(header, "data_length", limits.max_data)
    payload_length = _length(header, "payload_length", limits.max_payload)
    try:
        if data_length:
            data = {**data, **_json_object(await reader.readexactly(data_length), "event data")}
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        raise FramingError("the connection ended inside an event") from None
    return Event(type=event_type, data=data, payload=payload)


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: deeply nested JSON
        raise FramingError(f"the {what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise FramingError(f"the {what} must be a JSON object")
    return value


async def write_event(event: Event, writer: asyncio.StreamWriter, timeout: float) -> None:
    """Writes one event; a client that does not take it within ``timeout`` seconds is cut off
    (ConnectionResetError), which frees whatever its request held."""
    try:
        await asyncio.wait_for(async_write_event(event, writer), timeout)
    except asyncio.TimeoutError:
        peer = writer.get_extra_info("peername")
        _LOGGER.warning("Wyoming: %s did not read for %g s; closing", peer[0] if peer else "client", timeout)
        writer.transport.abort()
        raise ConnectionResetError(f"the client did not read for {timeout:g} s") from None
