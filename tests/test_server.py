"""The Wyoming server in-process on a real TCP port, driven by the wyoming library's real client with the
exact event sequences of Home Assistant and wyoming-bench."""

from __future__ import annotations

import asyncio
import time

import pytest
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.info import Describe, Info, SelectProgram
from wyoming.ping import Ping, Pong
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from tests.fixtures.server_process import free_port
from tests.fixtures.server_thread import GUARD, ServerThread, load_test_engine
from wyoming_qwen3tts.engine import Engine
from wyoming_qwen3tts.service.segmenter import StreamSegmenter, split_text
from wyoming_qwen3tts.settings import Settings

TEXT = "Hello there, this is the first sentence. And here is the second one!"


@pytest.fixture(scope="module")
def engine(tiny_custom_voice):
    engine = load_test_engine(str(tiny_custom_voice))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def server(engine, tiny_custom_voice, tmp_path_factory):
    port = free_port()
    settings = Settings(
        uri=f"tcp://127.0.0.1:{port}",
        model=str(tiny_custom_voice),
        max_concurrent=6,
        max_text_chars=2000,
        data_dir=tmp_path_factory.mktemp("data"),
        strict_voices=True,  # unknown voices are errors here; the fallback: tests/test_reply_delivery.py
    )
    srv = ServerThread(settings, engine)
    yield srv
    srv.close()


def expected_samples(engine: Engine, segments: list[str]) -> int:
    tok = engine.builder.tok
    return sum(GUARD.max_frames(len(tok.target_ids(s)) - 8, 8192) for s in segments) * 1920


async def _collect(client: AsyncTcpClient, until: str, timeout: float = 120) -> list:
    events = []
    while True:
        event = await asyncio.wait_for(client.read_event(), timeout)
        assert event is not None, f"connection closed; got {[e.type for e in events]}"
        events.append(event)
        if event.type == until:
            return events


def _audio(events) -> tuple[int, list]:
    starts = [e for e in events if AudioStart.is_type(e.type)]
    chunks = [AudioChunk.from_event(e) for e in events if AudioChunk.is_type(e.type)]
    for c in chunks:
        assert (c.rate, c.width, c.channels) == (24000, 2, 1)
    for s in starts:
        s = AudioStart.from_event(s)
        assert (s.rate, s.width, s.channels) == (24000, 2, 1)
    return sum(len(c.audio) // 2 for c in chunks), starts


def run(coro):
    return asyncio.run(coro)


def test_describe_lists_voices_and_bcp47_languages(server):
    async def go():
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(Describe().event())
            return Info.from_event(await asyncio.wait_for(client.read_event(), 5))

    info = run(go())
    program = info.tts[0]
    assert program.installed and program.supports_synthesize_streaming
    names = [v.name for v in program.voices]
    # Each of the 9 speakers once per language, only under that language (language-bound voices).
    assert names == sorted(names) and "ryan@en" in names and "ryan@de" in names and len(names) == 90
    for voice in program.voices:
        code = voice.name.rpartition("@")[2]
        assert voice.languages == [code] and code in (
            "en",
            "zh",
            "de",
            "it",
            "pt",
            "es",
            "ja",
            "ko",
            "fr",
            "ru",
        )
        assert voice.description and voice.installed


def test_synthesize_is_one_audio_cycle_streamed_in_chunks(server, engine):
    async def go():
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(Synthesize(text=TEXT, voice=SynthesizeVoice(name="ryan")).event())
            return await _collect(client, AudioStop().event().type)

    events = run(go())
    samples, starts = _audio(events)
    assert len(starts) == 1 and AudioStart.is_type(events[0].type) and AudioStop.is_type(events[-1].type)
    assert samples == expected_samples(engine, split_text(TEXT))
    assert sum(AudioChunk.is_type(e.type) for e in events) > 2  # streamed, not one blob


def _ha_fragments(text: str) -> list[str]:
    # Home Assistant forwards LLM deltas: not on word boundaries.
    return [text[i : i + 7] for i in range(0, len(text), 7)]


def test_home_assistant_streaming_sequence(server, engine):
    async def go():
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            voice = SynthesizeVoice(name="sohee")
            await client.write_event(SynthesizeStart(voice=voice).event())
            for fragment in _ha_fragments(TEXT):
                await client.write_event(SynthesizeChunk(text=fragment).event())
            await client.write_event(
                Synthesize(text=TEXT, voice=voice).event()
            )  # compat copy: not spoken again
            await client.write_event(SynthesizeStop().event())
            return await _collect(client, SynthesizeStopped().event().type)

    events = run(go())
    samples, starts = _audio(events)
    assert len(starts) == 1 and sum(AudioStop.is_type(e.type) for e in events) == 1
    assert SynthesizeStopped.is_type(events[-1].type) and AudioStop.is_type(events[-2].type)
    assert not any(Error.is_type(e.type) for e in events)
    segmenter = StreamSegmenter()
    segments = [s for f in _ha_fragments(TEXT) for s in segmenter.feed(f)] + segmenter.finish()
    assert samples == expected_samples(engine, segments)


def test_wyoming_bench_streaming_sequence(server):
    async def go():
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(SynthesizeStart().event())
            for sentence in ("First sentence here. ", "Second one follows. "):
                await client.write_event(SynthesizeChunk(text=sentence).event())
            await client.write_event(SynthesizeStop().event())
            return await _collect(client, SynthesizeStopped().event().type)

    samples, starts = _audio(run(go()))
    assert len(starts) == 1 and samples > 0


def test_describe_answers_fast_while_synthesizing(server):
    async def go():
        async with AsyncTcpClient("127.0.0.1", server.port) as busy:
            await busy.write_event(Synthesize(text=TEXT + " " + TEXT).event())
            first = await asyncio.wait_for(busy.read_event(), 60)
            assert AudioStart.is_type(first.type)
            async with AsyncTcpClient("127.0.0.1", server.port) as other:
                started = time.monotonic()
                await other.write_event(Describe().event())
                info = await asyncio.wait_for(other.read_event(), 5)
                elapsed = time.monotonic() - started
            await _collect(busy, AudioStop().event().type)
            return info, elapsed

    info, elapsed = run(go())
    assert Info.is_type(info.type) and elapsed < 1.0


@pytest.mark.parametrize(
    "event, code",
    [
        (Synthesize(text="Hi.", voice=SynthesizeVoice(name="nobody")), "voice-not-found"),
        (Synthesize(text="   **  ** "), "empty-text"),
        (Synthesize(text="word " * 1000), "text-too-long"),
    ],
)
def test_bad_requests_get_error_codes_then_the_connection_closes(server, event, code):
    """A failed non-streaming synthesize: error, then close (wyoming-piper's behaviour, which Home Assistant
    before 2026.9 needs: it waits for audio-stop otherwise). The server keeps serving new connections."""

    async def go():
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(event.event())
            error = await asyncio.wait_for(client.read_event(), 30)
            closed = await asyncio.wait_for(client.read_event(), 10)
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(Ping(text="still there?").event())
            pong = await asyncio.wait_for(client.read_event(), 5)
        return error, closed, pong

    error, closed, pong = run(go())
    assert Error.is_type(error.type) and Error.from_event(error).code == code
    assert closed is None
    assert Pong.is_type(pong.type) and Pong.from_event(pong).text == "still there?"


def test_stream_with_unknown_voice_still_ends_with_synthesize_stopped(server):
    async def go():
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name="nobody")).event())
            await client.write_event(SynthesizeChunk(text="Hello there.").event())
            await client.write_event(SynthesizeStop().event())
            return await _collect(client, SynthesizeStopped().event().type, timeout=30)

    events = run(go())
    assert Error.from_event(events[0]).code == "voice-not-found"
    assert SynthesizeStopped.is_type(events[-1].type) and not any(AudioStart.is_type(e.type) for e in events)


def test_empty_stream_ends_with_synthesize_stopped_only(server):
    async def go():
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(SynthesizeStart().event())
            await client.write_event(SynthesizeChunk(text="  ").event())
            await client.write_event(SynthesizeStop().event())
            return await _collect(client, SynthesizeStopped().event().type, timeout=30)

    assert [e.type for e in run(go())] == ["synthesize-stopped"]


def test_garbage_and_disconnects_do_not_hurt_the_server(server, engine):
    async def go():
        # Binary garbage and a malformed header line.
        for payload in (bytes(range(256)) * 64 + b"\n", b'{"type": "synthesize", "data_length": 99999}\nxx'):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(payload)
            await writer.drain()
            writer.close()
        # A client that leaves in the middle of a long stream.
        client = AsyncTcpClient("127.0.0.1", server.port)
        await client.connect()
        await client.write_event(SynthesizeStart().event())
        await client.write_event(SynthesizeChunk(text=TEXT * 3).event())
        event = await asyncio.wait_for(client.read_event(), 60)
        assert AudioStart.is_type(event.type)
        await client.disconnect()
        # The server still answers.
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(Describe().event())
            return await asyncio.wait_for(client.read_event(), 60)

    assert Info.is_type(run(go()).type)
    deadline = time.monotonic() + 30
    while engine.scheduler.running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not engine.scheduler.running  # the abandoned request freed its slot


def test_twenty_concurrent_clients(server):
    async def one(i: int):
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(Synthesize(text=f"Client {i}.").event())
            events = []
            while True:
                event = await asyncio.wait_for(client.read_event(), 120)
                events.append(event)
                if AudioStop.is_type(event.type) or Error.is_type(event.type):
                    return events

    async def go():
        return await asyncio.gather(*(one(i) for i in range(20)))

    results = run(go())
    served = [r for r in results if AudioStop.is_type(r[-1].type)]
    busy = [r for r in results if Error.is_type(r[-1].type)]
    assert len(served) + len(busy) == 20 and served
    assert all(Error.from_event(r[-1]).code == "server-busy" for r in busy)

    async def describe():
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(Describe().event())
            return await asyncio.wait_for(client.read_event(), 60)

    assert Info.is_type(run(describe()).type)


def test_no_streaming_server_over_a_unix_socket(engine, tiny_custom_voice, tmp_path):
    from wyoming.client import AsyncClient

    path = tmp_path / "tts.sock"
    settings = Settings(
        uri=f"unix://{path}", model=str(tiny_custom_voice), streaming=False, data_dir=tmp_path
    )
    srv = ServerThread(settings, engine)

    async def go():
        async with AsyncClient.from_uri(f"unix://{path}") as client:
            await client.write_event(SelectProgram(name="qwen3-tts").event())  # ignored, connection stays
            await client.write_event(Describe().event())
            info = Info.from_event(await asyncio.wait_for(client.read_event(), 5))
            await client.write_event(SynthesizeStart().event())  # not offered, so ignored
            await client.write_event(Synthesize(text="Hi.").event())
            events = await _collect(client, AudioStop().event().type)
            return info, events

    try:
        info, events = run(go())
    finally:
        srv.close()
    assert info.tts[0].supports_synthesize_streaming is False
    assert AudioStart.is_type(events[0].type) and not any(SynthesizeStopped.is_type(e.type) for e in events)
