"""Hostile and broken clients against the real server process (issue 17), loopback only, bounded loops.

One server process (tiny random CustomVoice checkpoint, HTTP on) runs with small limits so the cases are
quick: idle and write timeouts of 2 s, 6 connections per peer, 2 synthesis slots, 8 voices. After every
case (the ``after_each`` fixture) a well-behaved Wyoming client must get audio, the server's RSS (read
from /proc) must stay within ``RSS_BOUND`` of its level after warm-up, and the voices created at the
start must all still be there. The soak at the end (``test_soak_*``) sends 1,000 mixed requests.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

import aiohttp
import numpy as np
import pytest
import soundfile as sf
from wyoming.audio import AudioChunk, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

from tests.fixtures.server_process import free_port, start_server

IDLE, WRITE, PER_PEER, SLOTS, MAX_VOICES = 2, 2, 12, 2, 8
RSS_BOUND = 300 << 20  # bytes over the level after warm-up
KEEP = ("keep-a", "keep-b")  # voices that must survive every case


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, http_port: int, data: Path, log: Path) -> None:
        self.proc, self.port, self.http_port, self.data, self.log = proc, port, http_port, data, log
        self.base = f"http://127.0.0.1:{http_port}"
        self.baseline = 0

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


def run(coro):
    return asyncio.run(coro)


async def speak(port: int, text: str = "Hello there.", timeout: float = 180) -> int:
    """A well-behaved non-streaming request; returns the samples received."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize(text=text).event())
        samples = 0
        while True:
            event = await asyncio.wait_for(client.read_event(), timeout)
            assert event is not None, "connection closed before audio-stop"
            if Error.is_type(event.type):
                raise AssertionError(f"error: {Error.from_event(event).code}: {Error.from_event(event).text}")
            if AudioChunk.is_type(event.type):
                samples += len(AudioChunk.from_event(event).audio) // 2
            if AudioStop.is_type(event.type):
                return samples


async def http(server: Server, method: str, path: str, **kwargs) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, server.base + path, **kwargs) as response:
            body = await response.read()
            try:
                return response.status, json.loads(body)
            except ValueError:
                return response.status, body


def code_of(body: Any) -> Optional[str]:
    return body["error"]["code"] if isinstance(body, dict) and "error" in body else None


async def raw_wyoming(port: int, data: bytes, timeout: float = 30) -> list[dict]:
    """Sends raw bytes, returns the event headers the server answered before it closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await read_events(reader, timeout)
    finally:
        writer.close()


async def read_events(reader: asyncio.StreamReader, timeout: float) -> list[dict]:
    """The event headers (with their data) read until the server closes the connection."""
    headers = []
    while True:
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            return headers
        header = json.loads(line)
        if header.get("data_length"):
            header["data"] = json.loads(await reader.readexactly(header["data_length"]))
        if header.get("payload_length"):
            await reader.readexactly(header["payload_length"])
        headers.append(header)


def design(name: str) -> dict:
    return {"json": {"name": name, "instruct": "A calm, warm voice.", "overwrite": True}}


@pytest.fixture(scope="module")
def server(tiny_custom_voice, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("adversarial")
    log_path = tmp / "server.log"
    http_port = free_port()
    args = ["--threads", "2", "--data-dir", str(tmp / "data"), "--clone-model", "none"]
    args += ["--design-model", "none", "--max-concurrent", str(SLOTS), "--idle-timeout", str(IDLE)]
    args += ["--write-timeout", str(WRITE), "--max-connections-per-peer", str(PER_PEER)]
    args += ["--max-voices", str(MAX_VOICES)]
    with open(log_path, "w+") as log:
        try:
            proc, port = start_server(str(tiny_custom_voice), args, log, http_port=http_port)
        except RuntimeError as exc:
            pytest.fail(f"{exc}: {log_path.read_text()}")
        srv = Server(proc, port, http_port, tmp / "data" / "voices", log_path)
        for name in KEEP:
            status, body = run(http(srv, "POST", "/v1/voices", **design(name)))
            assert status == 201, body
        run(speak(port))  # warm-up
        srv.baseline = srv.rss()
        yield srv
        proc.kill()
        proc.wait(10)


@pytest.fixture()
def after_each(server):
    """The acceptance checks after every case."""
    yield server
    assert server.proc.poll() is None, server.log.read_text()[-3000:]
    assert run(speak(server.port)) > 0
    assert (
        server.rss() - server.baseline < RSS_BOUND
    ), f"RSS grew by {(server.rss() - server.baseline) >> 20} MB"
    status, body = run(http(server, "GET", "/v1/voices"))
    names = {v["name"] for v in body["voices"]}
    assert status == 200 and set(KEEP) <= names, names


async def _wait_idle_slots(server: Server, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, body = await http(server, "GET", "/readyz")
        if body.get("active_requests") == 0 or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.2)


# -- 1. lock-out ---------------------------------------------------------------------------------------------
def test_silent_streams_hold_no_slot_and_time_out(after_each):
    server = after_each

    async def go():
        silent = []
        for _ in range(SLOTS + 2):
            client = AsyncTcpClient("127.0.0.1", server.port)
            await client.connect()
            await client.write_event(SynthesizeStart().event())
            silent.append(client)
        samples = await speak(server.port)  # not server-busy: a silent stream holds no slot
        endings = []
        for client in silent:
            events = []
            while True:
                event = await asyncio.wait_for(client.read_event(), IDLE * 10)
                if event is None:
                    break
                events.append(event)
            endings.append(events)
            await client.disconnect()
        return samples, endings

    samples, endings = run(go())
    assert samples > 0
    for events in endings:  # the idle timeout ended each stream properly, then closed it
        assert Error.from_event(events[0]).code == "timeout"
        assert SynthesizeStopped.is_type(events[-1].type)


def test_clients_that_stop_reading_are_cut_and_free_their_slots(after_each):
    """Every slot taken by a client that never reads its (long) audio: each is cut once its socket
    buffers are full and it has not read for the write timeout, and the slots show free in /readyz."""
    server = after_each
    # Near the text limit: even when sampling ends every sentence early, the reply must outgrow the socket
    # buffers (the kernel's send buffer grows to 4 MB); 30 sentences once made only 36 s (1.7 MB), finished.
    text = json.dumps({"text": "A long sentence that keeps the engine busy for a while. " * 85}).encode()
    frame = json.dumps({"type": "synthesize", "data_length": len(text)}).encode() + b"\n" + text

    async def go():
        socks = []
        for _ in range(SLOTS):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(frame)
            socks.append(sock)
        held = 0
        deadline = time.monotonic() + 120
        while held < SLOTS and time.monotonic() < deadline:
            held = max(held, (await http(server, "GET", "/readyz"))[1]["active_requests"])
            await asyncio.sleep(0.1)
        body = await _wait_idle_slots(server, timeout=300)
        for sock in socks:
            sock.close()
        return held, body

    held, body = run(go())
    assert held == SLOTS and body["active_requests"] == 0
    assert server.log.read_text().count("did not read") >= SLOTS


def test_http_slow_headers_stalled_bodies_and_unread_answers_are_cut(after_each):
    server = after_each

    def closed_within(sock: socket.socket, seconds: float) -> bool:
        sock.settimeout(seconds)
        try:
            while sock.recv(65536):
                pass
            return True
        except ConnectionResetError:  # aborted: closed too
            return True
        except socket.timeout:
            return False
        finally:
            sock.close()

    half_header = socket.create_connection(("127.0.0.1", server.http_port))
    half_header.sendall(b"GET /v1/voices HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    half_body = socket.create_connection(("127.0.0.1", server.http_port))
    half_body.sendall(
        b"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"input": '
    )
    unread = socket.socket()
    unread.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    unread.connect(("127.0.0.1", server.http_port))
    unread.sendall(b"GET /v1/voices HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 5000)  # pipelined, never read
    assert closed_within(half_header, IDLE * 15)
    assert closed_within(half_body, IDLE * 15)
    time.sleep(WRITE * 3)
    assert closed_within(unread, WRITE * 15)


def test_http_streams_nobody_reads_are_cut_and_free_their_slots(after_each):
    server = after_each
    body = json.dumps(
        {"input": "A long sentence that keeps the engine busy for a while. " * 30, "response_format": "pcm"}
    ).encode()
    request = (
        b"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )

    async def go():
        socks = []
        for _ in range(SLOTS):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.http_port))
            sock.sendall(request)
            socks.append(sock)
        held, deadline = 0, time.monotonic() + 120
        while held < SLOTS and time.monotonic() < deadline:
            held = max(held, (await http(server, "GET", "/readyz"))[1]["active_requests"])
            await asyncio.sleep(0.1)
        after = await _wait_idle_slots(server, timeout=300)
        for sock in socks:
            sock.close()
        return held, after

    held, after = run(go())
    assert held == SLOTS and after["active_requests"] == 0
    assert "has not read its answer" in server.log.read_text()


def test_per_peer_connection_limit(after_each):
    server = after_each

    async def go():
        held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(PER_PEER)]
        refused = await raw_wyoming(server.port, b"", timeout=10)
        for _, writer in held:
            writer.close()
        held = [await asyncio.open_connection("127.0.0.1", server.http_port) for _ in range(PER_PEER)]
        status, body = await http(server, "GET", "/v1/voices")
        for _, writer in held:
            writer.close()
        return refused, status, body

    refused, status, body = run(go())
    assert refused and refused[0]["type"] == "error" and refused[0]["data"]["code"] == "server-busy"
    assert (status, code_of(body)) == (503, "server-busy")


# -- 2. one client must not freeze the others -------------------------------------------------------------
def test_pipelined_describes_do_not_starve_a_synthesis(after_each):
    server = after_each

    async def flood() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        line = json.dumps({"type": "describe"}).encode() + b"\n"
        writer.write(line * 2000)
        await writer.drain()
        answers = 0
        while answers < 2000:
            header = json.loads(await asyncio.wait_for(reader.readline(), 120))
            await reader.readexactly(header.get("data_length", 0))
            answers += 1
        writer.close()
        return answers

    async def go():
        return await asyncio.gather(flood(), speak(server.port))

    answers, samples = run(go())
    assert answers == 2000 and samples > 0


# -- 5. inbound lengths, framing and types ------------------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [
        json.dumps({"type": "synthesize", "payload_length": 2**40}).encode() + b"\n" + b"x" * 65536,
        json.dumps({"type": "synthesize", "data_length": 2**30}).encode() + b"\n",
        b'{"type": "describe", "pad": "' + b"x" * 200_000 + b'"}\n',
        b"[" * 50_000 + b"\n",
        b"not json at all\n",
        b'{"type": "synthesize", "data_length": -5}\n',
    ],
    ids=["payload-2^40", "data-2^30", "long-header", "nested", "garbage", "negative"],
)
def test_bad_framing_gets_bad_request_and_close(after_each, data):
    headers = run(raw_wyoming(after_each.port, data))
    assert [h["type"] for h in headers] == ["error"] and headers[0]["data"]["code"] == "bad-request"


@pytest.mark.parametrize(
    "data",
    [
        {"text": 123},
        {"text": "Hi.", "voice": "vivian"},
        {"text": "Hi.", "voice": {"name": ["x"]}},
        {"voice": {"name": "vivian"}},
        {"text": "Hi \ud800 there."},
    ],
    ids=["text-number", "voice-string", "name-list", "no-text", "lone-surrogate"],
)
def test_wrongly_typed_synthesize_gets_bad_request_then_close(after_each, data):
    body = json.dumps(data).encode()  # ensure_ascii: the lone surrogate travels as a \\ud800 escape
    frame = json.dumps({"type": "synthesize", "data_length": len(body)}).encode() + b"\n" + body
    headers = run(raw_wyoming(after_each.port, frame))
    assert [h["type"] for h in headers] == ["error"] and headers[0]["data"]["code"] == "bad-request"


def test_wrongly_typed_stream_chunk_keeps_the_stream_protocol(after_each):
    server = after_each

    async def go():
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(SynthesizeStart().event())
            await client.write_event(Event(type="synthesize-chunk", data={"text": 5}))
            await client.write_event(SynthesizeStop().event())
            events = []
            while True:
                event = await asyncio.wait_for(client.read_event(), 60)
                events.append(event)
                if event is None or SynthesizeStopped.is_type(event.type):
                    return events

    events = run(go())
    assert Error.from_event(events[0]).code == "bad-request"
    assert events[-1] is not None and SynthesizeStopped.is_type(events[-1].type)


# -- 3. decompression bombs ---------------------------------------------------------------------------------
def _flac(path: Path, rate: int, channels: int, seconds: float) -> bytes:
    frames = int(rate * seconds)
    wave = np.zeros((frames, channels), dtype=np.int16)
    wave[:: max(rate // 100, 1)] = 1000  # not silent
    sf.write(path, wave, rate, format="FLAC", subtype="PCM_16")
    return path.read_bytes()


@pytest.mark.parametrize(
    "rate, channels, seconds, code",
    [(384_000, 1, 2.0, "audio-unreadable"), (192_000, 8, 20.0, "audio-too-large")],
    ids=["rate-384k", "8ch-192k-20s"],
)
def test_audio_decompression_bombs_are_refused(after_each, tmp_path, rate, channels, seconds, code):
    server = after_each
    clip = _flac(tmp_path / "bomb.flac", rate, channels, seconds)
    form = aiohttp.FormData()
    form.add_field("name", "bomb")
    form.add_field("audio", clip, filename="bomb.flac", content_type="audio/flac")
    status, body = run(http(server, "POST", "/v1/voices", data=form))
    assert code_of(body) == code, body
    assert status in (400, 413)


# -- 4. cross-site requests and DNS rebinding ---------------------------------------------------------------
def test_foreign_origin_rebound_host_and_text_plain_json_are_refused(after_each):
    server = after_each
    evil = {"Origin": "http://evil.example"}
    status, body = run(http(server, "POST", "/v1/voices", headers=evil, **design("evil")))
    assert (status, code_of(body)) == (403, "forbidden")
    form = aiohttp.FormData({"name": "evil2", "instruct": "x"})
    status, body = run(http(server, "POST", "/v1/voices", data=form, headers=evil))
    assert (status, code_of(body)) == (403, "forbidden")
    status, body = run(http(server, "GET", "/v1/voices", headers={"Host": "evil.example:8880"}))
    assert (status, code_of(body)) == (403, "forbidden")
    status, body = run(http(server, "GET", f"/v1/voices/{KEEP[0]}", headers={"Sec-Fetch-Site": "cross-site"}))
    assert (status, code_of(body)) == (403, "forbidden")
    text_plain = json.dumps({"input": "Hello.", "voice": "vivian"})
    status, body = run(
        http(server, "POST", "/v1/audio/speech", data=text_plain, headers={"Content-Type": "text/plain"})
    )
    assert (status, code_of(body)) == (400, "invalid-json")
    status, body = run(http(server, "GET", "/v1/voices"))
    assert not {"evil", "evil2"} & {v["name"] for v in body["voices"]}
    # Same-origin requests, localhost and the ingress proxy's (X-Ingress-Path, its front end's Origin) pass.
    same = {"Origin": server.base}
    assert run(http(server, "POST", "/v1/voices", headers=same, **design("same-origin")))[0] == 201
    local = {"Host": f"localhost:{server.http_port}"}
    assert run(http(server, "GET", "/v1/voices", headers=local))[0] == 200
    ingress = {"X-Ingress-Path": "/api/hassio_ingress/tok", "Origin": "http://homeassistant.local:8123"}
    assert run(http(server, "POST", "/v1/voices", headers=ingress, **design("via-ingress")))[0] == 201
    status, page = run(http(server, "GET", "/", headers=ingress))
    assert status == 200 and b'<base href="/api/hassio_ingress/tok/">' in page
    for name in ("same-origin", "via-ingress"):
        assert run(http(server, "DELETE", f"/v1/voices/{name}"))[0] == 200


def test_lone_surrogate_and_deep_json_over_http_are_client_errors(after_each):
    server = after_each
    body = '{"input": "Hi \\ud800 there.", "voice": "vivian", "response_format": "pcm"}'
    status, answer = run(
        http(server, "POST", "/v1/audio/speech", data=body, headers={"Content-Type": "application/json"})
    )
    assert (status, code_of(answer)) == (400, "bad-request")
    deep = "[" * 100_000 + "]" * 100_000
    status, answer = run(
        http(server, "POST", "/v1/audio/speech", data=deep, headers={"Content-Type": "application/json"})
    )
    assert (status, code_of(answer)) == (400, "invalid-json")
    status, answer = run(
        http(server, "POST", "/v1/audio/speech", json={"input": "Hi.", "instructions": "x" * 2001})
    )
    assert status == 400 and "2000" in answer["error"]["message"] and "2001" not in answer["error"]["message"]
    assert "Traceback" not in server.log.read_text()


def test_garbage_on_the_http_port_is_a_400(after_each):
    server = after_each
    for junk in (
        b"GARBAGE\r\n\r\n",
        bytes(range(256)) * 20,
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=30) as sock:
            sock.sendall(junk)
            answer = sock.recv(65536)
        assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), answer[:100]


# -- 6. overwrite atomic across crashes, quotas -------------------------------------------------------------
def test_an_overwrite_cut_short_by_a_crash_is_recovered(after_each):
    server = after_each
    assert run(http(server, "POST", "/v1/voices", **design("crashy")))[0] == 201
    # The state a crash between the two renames of an overwrite leaves: only the parked old version.
    os.rename(server.data / "crashy", server.data / ".old-crashy-0badc0de")
    assert run(http(server, "POST", "/v1/voices", **design("another")))[0] == 201  # any write recovers
    assert (server.data / "crashy" / "meta.json").is_file()
    assert not list(server.data.glob(".old-*"))
    for name in ("crashy", "another"):
        assert run(http(server, "DELETE", f"/v1/voices/{name}"))[0] == 200


def test_voice_count_quota(after_each):
    server = after_each
    created = []
    try:
        for i in range(MAX_VOICES + 2):
            status, body = run(http(server, "POST", "/v1/voices", **design(f"quota-{i}")))
            if status != 201:
                break
            created.append(f"quota-{i}")
        assert (status, code_of(body)) == (507, "voice-quota")
        assert len(created) + len(KEEP) == MAX_VOICES
    finally:
        for name in created:
            run(http(server, "DELETE", f"/v1/voices/{name}"))


# -- the soak -----------------------------------------------------------------------------------------------
# The work is fixed (1,000 requests, about 77 of them synthesized); its duration is the machine's: on a
# 2-core machine shared with other CPU-bound processes it takes 5 minutes and more, past the suite's 300 s
# safety net.
@pytest.mark.timeout(1200)
def test_soak_1000_mixed_requests_rss_flat_and_no_fd_leak(after_each):
    """SOAK: 1,000 mixed requests (Wyoming and HTTP; describes, tiny texts, cancelled and malformed ones),
    in waves of half the per-peer limit: the connections of the previous wave, which the server may not have
    seen closing yet on a busy machine, and the new wave together never exceed the limit (waves of 10 did,
    now and then: a describe got server-busy). RSS after the run stays within 10 % of RSS after the first
    200 (the warm-up), and the process holds no more file descriptors than before. Takes about 1.5 minutes
    on a 2-core machine."""
    server = after_each
    rng = np.random.default_rng(17)

    async def describe():
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(Describe().event())
            assert Info.is_type((await asyncio.wait_for(client.read_event(), 60)).type)

    async def cancelled():
        async with AsyncTcpClient("127.0.0.1", server.port) as client:
            await client.write_event(SynthesizeStart().event())
            await client.write_event(SynthesizeChunk(text="Good morning to you. ").event())

    async def malformed():
        await raw_wyoming(server.port, b'{"type": "synthesize", "payload_length": 99999999999}\n')

    async def tiny():
        try:
            await speak(server.port, "Hi.")
        except AssertionError as exc:  # the slots may be busy: a clean error is fine
            assert "server-busy" in str(exc)

    async def http_list():
        assert (await http(server, "GET", "/v1/voices"))[0] == 200

    async def http_bad():
        status, _ = await http(
            server, "POST", "/v1/audio/speech", data=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert status == 400

    # Mostly cheap requests (the soak is about leaks, not synthesis speed): 1 in 13 speaks.
    kinds = [describe] * 4 + [cancelled, cancelled, malformed, malformed, http_list, http_list]
    kinds += [http_bad, http_bad, tiny]

    async def wave(n: int):
        picks = rng.integers(0, len(kinds), n)
        await asyncio.gather(*(kinds[i]() for i in picks))

    async def go():
        wave_size = PER_PEER // 2
        for _ in range(200 // wave_size):  # warm-up: about 200
            await wave(wave_size)
        await _wait_idle_slots(server)
        warm_rss, warm_fds = server.rss(), server.fds()
        for _ in range(800 // wave_size):  # about 800 more
            await wave(wave_size)
        await _wait_idle_slots(server)
        await asyncio.sleep(IDLE + 1)  # aborted connections are gone
        return warm_rss, warm_fds

    warm_rss, warm_fds = run(go())
    print(
        f"soak: RSS {warm_rss >> 20} MB after warm-up, {server.rss() >> 20} MB after 1,000 requests; "
        f"fds {warm_fds} -> {server.fds()}"
    )
    assert server.rss() <= warm_rss * 1.10, (warm_rss >> 20, server.rss() >> 20)
    assert server.fds() <= warm_fds, (warm_fds, server.fds())


def test_bad_input_left_one_warning_line_each_and_no_traceback(server):
    """Runs last: everything above was client input, which is logged as WARNING lines, never a traceback."""
    log = server.log.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    assert " WARNING " in log
