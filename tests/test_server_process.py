"""The real server process, the real health check and the real wyoming-bench."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess

import pytest
from wyoming.audio import AudioStart
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.tts import SynthesizeChunk, SynthesizeStart, SynthesizeStopped

from tests.fixtures.server_process import start_server


@pytest.fixture()
def server_process(tiny_custom_voice, tmp_path):
    log_path = tmp_path / "server.log"
    with open(log_path, "w+") as log:
        try:
            proc, port = start_server(
                str(tiny_custom_voice), ["--threads", "2", "--data-dir", str(tmp_path / "data")], log
            )
        except RuntimeError as exc:
            pytest.fail(f"{exc}: {log_path.read_text()}")
        yield proc, port, log_path
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_ready_log_and_clean_sigterm(server_process):
    proc, port, log = server_process
    assert "Ready in" in log.read_text()
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
