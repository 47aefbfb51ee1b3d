"""The real server process, the real health check and the real wyoming-bench."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from wyoming.audio import AudioStart
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.tts import SynthesizeChunk, SynthesizeStart, SynthesizeStopped

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(uri: str) -> bool:
    proc = subprocess.run(
        [sys.executable, "-m", "wyoming_qwen3tts.health_check", "--uri", uri, "--timeout", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0


@pytest.fixture()
def server_process(tiny_custom_voice, tmp_path):
    port = _free_port()
    uri = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wyoming_qwen3tts",
            "--uri",
            uri,
            "--model",
            str(tiny_custom_voice),
            "--device",
            "cpu",
            "--threads",
            "2",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while not _healthy(uri):
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        assert time.monotonic() < deadline, "server did not become healthy"
        time.sleep(0.5)
    yield proc, port, tmp_path / "server.log"
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    log.close()


def test_ready_log_and_clean_sigterm(server_process):
    proc, port, log = server_process
    assert "Ready: serving" in log.read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert "Stopping" in log.read_text()


def test_sigterm_during_a_stream_sends_error_and_synthesize_stopped(server_process):
    proc, port, _ = server_process

    async def go():
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(SynthesizeStart().event())
            await client.write_event(
                SynthesizeChunk(text="This is a long sentence that keeps going. " * 5).event()
            )
            first = await asyncio.wait_for(client.read_event(), 60)
            assert AudioStart.is_type(first.type)
            proc.send_signal(signal.SIGTERM)
            events = []
            while True:
                event = await asyncio.wait_for(client.read_event(), 30)
                if event is None:
                    return events
                events.append(event)

    events = asyncio.run(go())
    errors = [Error.from_event(e) for e in events if Error.is_type(e.type)]
    assert errors and errors[0].code == "server-stopping"
    assert SynthesizeStopped.is_type(events[-1].type)
    assert proc.wait(30) == 0


@pytest.mark.skipif(shutil.which("wyoming-bench") is None, reason="wyoming-bench is not installed")
def test_wyoming_bench_succeeds_in_both_modes(server_process):
    _, port, _ = server_process
    proc = subprocess.run(
        [
            "wyoming-bench",
            "tts",
            f"127.0.0.1:{port}",
            "--mode",
            "both",
            "--rounds",
            "2",
            "--warmup",
            "0",
            "--texts",
            "Hi there.",
            "Good morning!",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[non_streaming] ok=4 fail=0" in proc.stdout, proc.stdout
    assert "[streaming] ok=4 fail=0" in proc.stdout, proc.stdout
