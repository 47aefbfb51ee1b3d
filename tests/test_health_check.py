"""Health check: the real CLI (a subprocess) against real wyoming servers started in-process.

The servers are the wyoming library's own ``AsyncTcpServer`` / ``AsyncUnixServer`` on 127.0.0.1 or a Unix
socket; only the event handler is a test double (``FakeTtsInfoHandler``), so the describe -> info exchange
crosses a real socket with real framing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import AsyncIterator, Optional

import pytest
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncEventHandler, AsyncServer, AsyncTcpServer, AsyncUnixServer

from wyoming_qwen3tts import health_check

REPO_ROOT = Path(__file__).resolve().parents[1]
PROCESS_TIMEOUT = 30.0  # hard bound on one health-check subprocess


def _tts_info(voices: int = 1, installed: bool = True) -> Info:
    attribution = Attribution(name="test", url="https://example.invalid")
    return Info(
        tts=[
            TtsProgram(
                name="qwen3-tts",
                description="test program",
                attribution=attribution,
                installed=installed,
                version="0.0.0",
                voices=[
                    TtsVoice(
                        name=f"voice{i}",
                        description=f"Voice {i}",
                        attribution=attribution,
                        installed=True,
                        version=None,
                        languages=["en"],
                    )
                    for i in range(voices)
                ],
            )
        ]
    )


class FakeTtsInfoHandler(AsyncEventHandler):
    """Protocol-level test double: answers ``describe`` with a fixed Info (or never, when ``info`` is None).

    It stands in for the real server handler so that the health check can be tested against every kind of
    answer (healthy, no TTS, no voices, silence) without loading a model.
    """

    def __init__(
        self, info: Optional[Info], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super().__init__(reader, writer)
        self.info = info

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type) and self.info is not None:
            await self.write_event(self.info.event())
        return True  # everything else (and describe when silent) is ignored; the connection stays open


@contextlib.asynccontextmanager
async def _serve(server: AsyncServer, info: Optional[Info]) -> AsyncIterator[AsyncServer]:
    await server.start(partial(FakeTtsInfoHandler, info))
    try:
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def _tcp_server(info: Optional[Info]) -> AsyncIterator[str]:
    server = AsyncTcpServer("127.0.0.1", 0)  # port 0: the OS picks a free one
    async with _serve(server, info):
        port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield f"tcp://127.0.0.1:{port}"


async def _health_check(uri: str, timeout: float = 3.0) -> tuple[int, str, str]:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wyoming_qwen3tts.health_check",
        "--uri",
        uri,
        "--timeout",
        str(timeout),
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), PROCESS_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


def _check_against(info: Optional[Info], timeout: float = 3.0) -> tuple[int, str, str]:
    async def body() -> tuple[int, str, str]:
        async with _tcp_server(info) as uri:
            return await _health_check(uri, timeout)

    return asyncio.run(body())


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {text!r}"
    return lines[0]


def test_healthy_tcp_server_exits_0() -> None:
    rc, stdout, stderr = _check_against(_tts_info(voices=2))
    assert rc == 0, stderr
    assert _one_line(stdout) == "healthy: qwen3-tts: 2 voice(s)"
    assert stderr == ""


def test_healthy_unix_socket_server_exits_0() -> None:
    async def body(path: Path) -> tuple[int, str, str]:
        async with _serve(AsyncUnixServer(path), _tts_info()):
            return await _health_check(f"unix://{path}")

    # A short directory: Unix socket paths are limited to ~107 bytes, pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="hc-") as tmp:
        rc, stdout, stderr = asyncio.run(body(Path(tmp) / "wyoming.sock"))
    assert rc == 0, stderr
    assert stdout.startswith("healthy:")


def test_closed_port_exits_1_with_connection_refused() -> None:
    # A bound but not listening socket: the port is reserved for us and every connect is refused.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        rc, stdout, stderr = asyncio.run(_health_check(f"tcp://127.0.0.1:{port}"))
    assert rc == 1
    assert _one_line(stderr) == f"unhealthy: connection refused: tcp://127.0.0.1:{port}"
    assert stdout == ""


def test_missing_unix_socket_exits_1() -> None:
    with tempfile.TemporaryDirectory(prefix="hc-") as tmp:
        rc, _, stderr = asyncio.run(_health_check(f"unix://{tmp}/absent.sock"))
    assert rc == 1
    assert "socket not found" in _one_line(stderr)


def test_info_without_tts_exits_1() -> None:
    rc, _, stderr = _check_against(Info())
    assert rc == 1
    assert _one_line(stderr) == "unhealthy: no installed TTS program in info (0 advertised)"


def test_tts_program_without_voices_or_not_installed_exits_1() -> None:
    rc, _, stderr = _check_against(_tts_info(voices=0))
    assert rc == 1
    assert "has no installed voice" in _one_line(stderr)

    rc, _, stderr = _check_against(_tts_info(installed=False))
    assert rc == 1
    assert "no installed TTS program" in _one_line(stderr)


def test_server_that_never_answers_times_out_with_exit_1() -> None:
    rc, _, stderr = _check_against(None, timeout=0.5)
    assert rc == 1
    assert _one_line(stderr).startswith("unhealthy: timeout: no info from tcp://127.0.0.1:")


@pytest.mark.parametrize(
    ("uri", "reason"),
    [("stdio://", "unsupported URI"), ("tcp://127.0.0.1", "invalid URI"), ("http://x:1", "unsupported URI")],
)
def test_bad_uri_exits_1(uri: str, reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert health_check.main(["--uri", uri, "--timeout", "1"]) == 1
    assert reason in _one_line(capsys.readouterr().err)
