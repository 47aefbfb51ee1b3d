"""Health check: a real ``describe`` -> ``info`` round trip against a running server.

    python -m wyoming_qwen3tts.health_check --uri tcp://127.0.0.1:10200 [--timeout 5]

Exit 0 when the info lists at least one installed TTS program with at least one installed voice (what
Home Assistant needs to create its TTS entity), else 1 with a one-line reason on stderr. A connect-only
check would stay green while the event loop is wedged (the OS accepts connections); this one needs the
server to answer. Meant for Docker ``HEALTHCHECK`` and the add-on discovery script, so it imports
nothing heavy (no torch).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Optional, Sequence
from urllib.parse import urlparse

from wyoming.client import AsyncClient
from wyoming.info import Describe, Info

DEFAULT_URI = "tcp://127.0.0.1:10200"
DEFAULT_TIMEOUT = 5.0


class HealthCheckError(Exception):
    """Unhealthy; the message is the one-line reason."""


def check_info(info: Info) -> str:
    """Summary of a healthy info; raises HealthCheckError when it offers no usable TTS voice."""
    programs = [p for p in info.tts if p.installed]
    if not programs:
        raise HealthCheckError(f"no installed TTS program in info ({len(info.tts)} advertised)")
    for program in programs:
        voices = [v for v in program.voices if v.installed]
        if voices:
            return f"{program.name}: {len(voices)} voice(s)"
    raise HealthCheckError(f"TTS program {programs[0].name!r} has no installed voice")


async def fetch_info(uri: str, timeout: float) -> Info:
    """Connect, send describe, return the first info event; the whole exchange is bounded by ``timeout``."""
    if urlparse(uri).scheme not in ("tcp", "unix"):  # stdio:// would talk to our own stdin/stdout
        raise HealthCheckError(f"unsupported URI {uri!r}: use tcp://HOST:PORT or unix:///PATH")
    try:
        client = AsyncClient.from_uri(uri, connect_timeout=timeout, read_timeout=timeout)
    except ValueError as err:  # e.g. tcp:// without a port
        raise HealthCheckError(f"invalid URI {uri!r}: {err}") from err

    async def exchange() -> Info:
        await client.connect()
        try:
            await client.write_event(Describe().event())
            while True:  # skip anything else a server might send first (e.g. a pong)
                event = await client.read_event()
                if event is None:
                    raise HealthCheckError("connection closed before an info event arrived")
                if Info.is_type(event.type):
                    try:
                        return Info.from_event(event)
                    except Exception as err:  # noqa: BLE001 - any decoding problem is "unhealthy"
                        raise HealthCheckError(f"malformed info event: {err!r}") from err
        finally:
            with contextlib.suppress(Exception):  # the answer counts, not a clean close
                await client.disconnect()

    try:
        return await asyncio.wait_for(exchange(), timeout)
    except asyncio.TimeoutError as err:
        raise HealthCheckError(f"timeout: no info from {uri} within {timeout:g} s") from err
    except ConnectionRefusedError as err:
        raise HealthCheckError(f"connection refused: {uri}") from err
    except FileNotFoundError as err:
        raise HealthCheckError(f"socket not found: {uri}") from err
    except OSError as err:
        raise HealthCheckError(f"cannot connect to {uri}: {err.strerror or err}") from err


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wyoming_qwen3tts.health_check",
        description="Exit 0 if the Wyoming server answers describe with a TTS program that has voices.",
    )
    parser.add_argument("--uri", default=DEFAULT_URI, help=f"server URI, tcp:// or unix:// ({DEFAULT_URI})")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds for the whole round trip (5)"
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.timeout <= 0:
        print("unhealthy: --timeout must be positive", file=sys.stderr)
        return 1
    try:
        summary = check_info(asyncio.run(fetch_info(args.uri, args.timeout)))
    except HealthCheckError as err:
        print(f"unhealthy: {err}", file=sys.stderr)
        return 1
    print(f"healthy: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
