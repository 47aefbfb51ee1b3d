"""Playback-aware release through the real server (real TCP ports, tiny random checkpoints, the engine
slowed on purpose with --debug-slowdown's RATEx form so that it generates at most that fast). Checked by
the server's own accounting (the request log line and its Pacer), never by wall-clock: a fast engine holds
nothing back; a slowed one holds segments back and its listener never runs dry inside one; a small silence
bound cuts sentences at clauses; the audio bytes and their order are the same whether paced or not, on
the Wyoming port and the HTTP streaming route alike."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import urllib.request

import pytest
from wyoming.audio import AudioChunk, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from tests.fixtures.server_process import free_port
from tests.fixtures.server_thread import ServerThread, load_test_engine
from wyoming_qwen3tts.core.slowdown import Slowdown
from wyoming_qwen3tts.settings import Settings

TEXT = "Hello there, this is the first sentence. And here is the second one!"
LONG = "When the sun goes down, the lights turn on, the door is locked, and the heating goes to night mode."
SEED = 11
LINE = re.compile(
    r"held (?P<held>[\d.]+) s in (?P<segs>\d+) of (?P<of>\d+) segment\(s\), underruns (?P<u>\d+)"
    r"(?:.*generation (?P<rate>[\d.]+)x real time)?"
)


@pytest.fixture(scope="module")
def engine(tiny_custom_voice):
    engine = load_test_engine(str(tiny_custom_voice))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def server(engine, tiny_custom_voice, tmp_path_factory):
    settings = Settings(
        uri=f"tcp://127.0.0.1:{free_port()}",
        model=str(tiny_custom_voice),
        data_dir=tmp_path_factory.mktemp("playback"),
        clone_model=None,
        design_model=None,
        seed=SEED,
        http_port=free_port(),
    )
    srv = ServerThread(settings, engine, http=True)
    yield srv
    srv.close()


def _configure(srv: ServerThread, slowdown: str | None, **delivery) -> None:
    srv.engine.scheduler.slowdown = Slowdown.parse(slowdown) if slowdown else None
    srv.state.delivery = dataclasses.replace(srv.state.delivery, **delivery)


async def _wyoming(port: int, text: str, stream: bool) -> list[bytes]:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        if stream:
            for event in (SynthesizeStart(), SynthesizeChunk(text=text), SynthesizeStop()):
                await client.write_event(event.event())
        else:
            await client.write_event(Synthesize(text=text).event())
        pcm = []
        while True:
            event = await asyncio.wait_for(client.read_event(), 300)
            assert event is not None and not Error.is_type(event.type), event
            if AudioChunk.is_type(event.type):
                pcm.append(AudioChunk.from_event(event).audio)
            if event.type == ("synthesize-stopped" if stream else AudioStop().event().type):
                return pcm


def _say(srv: ServerThread, text: str, stream: bool = False) -> bytes:
    return b"".join(asyncio.run(_wyoming(srv.port, text, stream)))


def _http(srv: ServerThread, text: str) -> bytes:
    body = json.dumps({"input": text, "response_format": "pcm", "stream": True}).encode()
    url = f"http://127.0.0.1:{srv.settings.http_port}/v1/audio/speech"
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return response.read()


def _pacing(caplog) -> list[dict[str, float]]:
    lines = [r.getMessage() for r in caplog.records if r.name == "wyoming_qwen3tts.request"]
    found = [LINE.search(line) for line in lines]
    assert all(found), lines
    return [{k: float(v) for k, v in m.groupdict().items() if v is not None} for m in found if m]


def test_fast_engine_holds_nothing_and_pacing_keeps_the_bytes(server, caplog):
    """At speed 0.5 the tiny engine makes played audio several times faster than real time."""
    caplog.set_level(logging.INFO, logger="wyoming_qwen3tts.request")
    _configure(server, None, prebuffer="off", speed=0.5)
    unpaced = _say(server, TEXT)
    assert not _pacing_lines(caplog)  # --prebuffer off: no pacing part in the line
    _configure(server, None, prebuffer="auto", speed=0.5)
    caplog.clear()
    try:
        assert _say(server, TEXT) == unpaced
        assert _say(server, TEXT, stream=True) == unpaced
        assert _http(server, TEXT) == unpaced
    finally:
        _configure(server, None, speed=1.0)
    lines = _pacing(caplog)
    assert len(lines) == 3
    for line in lines:
        # Nothing held back while the engine is fast (a busy CI machine may make it slow for a moment:
        # then the line says so, and holding back is the right thing).
        assert line["segs"] == 0 or line["rate"] <= 1.25, line  # the line rounds the speed to 0.01
    assert sum(line["segs"] == 0 and line["held"] == 0 for line in lines) >= 1


def _pacing_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "underruns" in r.getMessage()]


def test_slow_engine_holds_segments_back_without_underruns_and_same_bytes(server, caplog):
    caplog.set_level(logging.INFO, logger="wyoming_qwen3tts.request")
    _configure(server, None, prebuffer="auto", max_silence=10.0)
    reference = _say(server, TEXT)  # the engine learns its seconds per character here
    _configure(server, "0.4x", prebuffer="auto", max_silence=10.0)
    caplog.clear()
    try:
        assert _say(server, TEXT, stream=True) == reference
        assert _http(server, TEXT) == reference
    finally:
        _configure(server, None)
    for line in _pacing(caplog):
        assert line["u"] == 0, line  # never dry inside a segment
        assert line["segs"] >= 1 and line["held"] > 0  # the first segment waited for enough audio


def test_a_small_silence_bound_cuts_long_sentences_at_clauses(server, caplog):
    caplog.set_level(logging.INFO, logger="wyoming_qwen3tts.request")
    _configure(server, "0.4x", prebuffer="auto", max_silence=10.0)
    try:
        _say(server, "Warming up the meter at this speed.")  # the engine's speed is known from here on
        caplog.clear()
        _configure(server, "0.4x", prebuffer="auto", max_silence=2.5)
        pcm = _say(server, LONG)
    finally:
        _configure(server, None, max_silence=3.0)
    assert pcm
    (line,) = _pacing(caplog)
    assert line["of"] >= 3  # one sentence, spoken as clauses short enough for the bound
    assert line["u"] == 0 and "released by the silence bound" not in _pacing_lines(caplog)[0]
