"""First contact (issue 28): both ports open while the model loads, and every start-up failure a user can
cause ends with one line naming the fix and exit code 1, through the real entry point.

The loading test runs the real server coroutine in-process on real ports with a loader that waits on a gate
the test opens: what is seen during loading does not depend on how fast the machine loads."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import aiohttp
import pytest
from wyoming.audio import AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeVoice

from tests.fixtures.server_process import ROOT, free_port
from tests.fixtures.server_thread import load_test_engine
from wyoming_qwen3tts.app import load_models, serve, state_for
from wyoming_qwen3tts.engine import peek_config
from wyoming_qwen3tts.health_check import check_info
from wyoming_qwen3tts.server.info import LOADING
from wyoming_qwen3tts.settings import Settings


class LoadingServer:
    """The real server coroutine on its own loop thread, started as app.run starts it (ports first, then the
    start-up load), with a loader that waits for ``gate``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gate = threading.Event()
        self.engines: list = []

        def loader(model: str):
            assert self.gate.wait(120)
            engine = load_test_engine(model)
            self.engines.append(engine)
            return engine

        self.state = state_for(peek_config(settings.model), settings, loader=loader)
        self.state.loading = True
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        assert self.ready.wait(30)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.stop = asyncio.Event()
        ready = asyncio.Event()

        async def main():
            startup = partial(load_models, self.settings, self.state, time.monotonic())
            task = asyncio.create_task(serve(self.settings, self.state, ready, self.stop, startup=startup))
            await ready.wait()
            self.ready.set()
            await task

        self.loop.run_until_complete(main())

    def close(self) -> None:
        self.gate.set()
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)
        for engine in self.engines:
            engine.close()


async def _describe(port: int) -> Info:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Describe().event())
        return Info.from_event(await asyncio.wait_for(client.read_event(), 5))


async def _speak(port: int, text: str = "Hello there.") -> list:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize(text=text, voice=SynthesizeVoice(name="ryan")).event())
        events = []
        while True:
            event = await asyncio.wait_for(client.read_event(), 120)
            if event is None:
                return events
            events.append(event)
            if AudioStop.is_type(event.type) or Error.is_type(event.type):
                return events


async def _readyz(port: int) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
            return response.status, json.loads(await response.read())


def test_ports_answer_while_the_model_loads(tiny_custom_voice, tmp_path):
    port, http_port = free_port(), free_port()
    settings = Settings(
        uri=f"tcp://127.0.0.1:{port}",
        model=str(tiny_custom_voice),
        data_dir=tmp_path,
        http=True,
        http_host="127.0.0.1",
        http_port=http_port,
    )
    server = LoadingServer(settings)
    try:

        async def during():
            info = await _describe(port)
            program = info.tts[0]
            assert LOADING in program.description and program.installed
            names = {v.name for v in program.voices}
            assert {"ryan@en", "vivian@zh"} <= names  # the checkpoint config's own speakers and languages
            assert all(v.installed and LOADING in v.description for v in program.voices)
            assert "voice(s)" in check_info(info)  # healthy: the add-on's discovery announces it now
            status, body = await _readyz(http_port)
            assert status == 503 and body["error"]["code"] == "not-ready"
            server.state.models.load_wait = 0.2  # bounded: the gate stays shut, so this wait always ends
            events = await _speak(port)
            assert Error.is_type(events[-1].type) and Error.from_event(events[-1]).code == "model-loading"
            server.state.models.load_wait = 120.0
            waiting = asyncio.create_task(_speak(port))  # this one waits for the load, then speaks
            await asyncio.sleep(0.3)
            assert not waiting.done()
            server.gate.set()
            events = await waiting
            assert AudioStop.is_type(events[-1].type), [e.type for e in events]
            info = await _describe(port)
            assert LOADING not in info.tts[0].description
            assert not any(LOADING in v.description for v in info.tts[0].voices)
            status, body = await _readyz(http_port)
            assert status == 200 and body["status"] == "ready"

        asyncio.run(during())
    finally:
        server.close()


# -- start-up failures through `python -m wyoming_qwen3tts` ------------------------------------------------


def _broken_model(source: Path, target: Path) -> Path:
    """A complete-looking model directory whose weights file is cut short (an interrupted copy)."""
    shutil.copytree(source, target, symlinks=True)
    weights = target / "model.safetensors"
    data = weights.read_bytes()
    weights.unlink()
    weights.write_bytes(data[: len(data) // 3])
    return target


@pytest.fixture(scope="module")
def failures(tiny_custom_voice, tmp_path_factory):
    """Starts every failing case at once (they run in parallel), returns {case: (exit code, output)}."""
    tmp = tmp_path_factory.mktemp("startup")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    busy_port = busy.getsockname()[1]
    model = str(tiny_custom_voice)
    cases = {
        "offline": (["--model", "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice", "--cache-dir", str(tmp / "hf")], {}),
        "missing_dir": (["--model", str(tmp / "no-such-model")], {}),
        "broken_dir": (["--model", str(_broken_model(tiny_custom_voice, tmp / "broken"))], {}),
        "port_in_use": (["--model", model, "--uri", f"tcp://127.0.0.1:{busy_port}"], {}),
        "bad_option": (["--model", model, "--max-concurrent", "many"], {}),
        "missing_voice": (["--model", model, "--voice", "bob"], {}),
        "debug": (["--model", model, "--voice", "bob", "--debug"], {}),
    }
    procs = {}
    for name, (args, env) in cases.items():
        uri = [] if "--uri" in args else ["--uri", f"tcp://127.0.0.1:{free_port()}"]
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "wyoming_qwen3tts", "--device", "cpu", "--no-http", "--threads", "1"]
            + ["--data-dir", str(tmp / name)]
            + uri
            + args,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        )
    try:
        yield {name: (proc.wait(120), proc.stdout.read()) for name, proc in procs.items()}  # type: ignore
    finally:
        busy.close()
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()


@pytest.mark.parametrize(
    "case, says",
    [
        ("offline", ["not in the Hugging Face cache", "Download it once"]),
        ("missing_dir", ["no-such-model", "set --model"]),
        ("broken_dir", ["corrupt or incomplete", "download it again"]),
        ("port_in_use", ["cannot serve Wyoming", "choose another --uri port"]),
        ("bad_option", ["--max-concurrent", "many"]),
        ("missing_voice", ["--voice 'bob' is not one of", "ryan", "set --voice"]),
    ],
)
def test_start_up_failure_is_one_line_naming_the_fix(failures, case, says):
    code, output = failures[case]
    last = output.strip().splitlines()[-1]
    assert code == 1, output
    assert "Traceback" not in output, output
    assert sum(bool(re.search(r"\bERROR\b|: error:", line)) for line in output.splitlines()) == 1, output
    for words in says:
        assert words in last, output


def test_broken_model_fails_after_the_ports_opened(failures):
    """The weights load once both ports are open; their failure still ends the process with exit 1."""
    code, output = failures["broken_dir"]
    assert code == 1 and "Serving tcp://" in output and "the model is loading" in output, output


def test_debug_shows_the_traceback(failures):
    code, output = failures["debug"]
    assert code == 1 and "Traceback" in output and "--voice 'bob'" in output.strip().splitlines()[-1]
