"""Hostile clients, second round (issue 25), against the real server process, loopback addresses only.

One server (tiny random CustomVoice checkpoint, HTTP on, no Base model) with small connection caps: 4 per
client address and 10 in all on each port (the cases connect from several 127.0.x.y addresses), Wyoming
connections without a request closed after 3 s idle, and generous stream/body timeouts (30 s) so that a
held connection or a stalled body stays held while a case runs. Every case bounds counts (connections
answered, refused, admitted), never durations; timeouts are safety nets. After every case a well-behaved
client must get audio.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeStart

from tests.fixtures.server_process import free_port, start_server
from tests.test_adversarial import code_of, read_events, run, speak

PER_CLIENT, TOTAL, CONNECTION_IDLE = 4, 10, 3
SAFETY = 60  # seconds: only ever reached when something is broken


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, http_port: int, log: Path) -> None:
        self.proc, self.port, self.http_port, self.log = proc, port, http_port, log
        self.base = f"http://127.0.0.1:{http_port}"


@pytest.fixture(scope="module")
def server(tiny_custom_voice, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limits")
    log_path = tmp / "server.log"
    http_port = free_port()
    args = [
        "--threads",
        "2",
        "--data-dir",
        str(tmp / "data"),
        "--clone-model",
        "none",
        "--design-model",
        "none",
    ]
    args += ["--max-concurrent", "2", "--idle-timeout", "30", "--write-timeout", "30"]
    args += ["--max-connections-per-peer", str(PER_CLIENT), "--max-connections", str(TOTAL)]
    args += ["--connection-idle-timeout", str(CONNECTION_IDLE)]
    with open(log_path, "w+") as log:
        try:
            proc, port = start_server(str(tiny_custom_voice), args, log, http_port=http_port)
        except RuntimeError as exc:
            pytest.fail(f"{exc}: {log_path.read_text()}")
        yield Server(proc, port, http_port, log_path)
        proc.kill()
        proc.wait(10)


@pytest.fixture()
def after_each(server):
    yield server
    assert server.proc.poll() is None, server.log.read_text()[-3000:]
    assert run(_eventually(lambda: speak(server.port))) > 0


async def _eventually(attempt, tries: int = 100):
    """``attempt()`` until it stops failing with server-busy (the server notices closed connections a
    moment later); bounded in tries."""
    for _ in range(tries):
        try:
            return await attempt()
        except (AssertionError, ConnectionError) as exc:
            if "server-busy" not in str(exc) and not isinstance(exc, ConnectionError):
                raise
            await asyncio.sleep(0.1)
    return await attempt()


async def _open(port: int, source: str = "127.0.0.1"):
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def http(
    server: Server, method: str, path: str, source: str = "127.0.0.9", **kwargs
) -> tuple[int, Any]:
    """One request from ``source`` (an address no held connection uses)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.request(method, server.base + path, **kwargs) as response:
            body = await response.read()
            try:
                return response.status, json.loads(body)
            except ValueError:
                return response.status, body


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    """One HTTP response (head and Content-Length body), without waiting for the connection to close."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), SAFETY)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await asyncio.wait_for(reader.readexactly(length), SAFETY)


async def _held_stream(port: int, source: str) -> asyncio.StreamWriter:
    """A connection with an open stream (held by the 30 s stream timeout), confirmed by a pong."""
    reader, writer = await _open(port, source)
    writer.write(_frame(SynthesizeStart().event()) + b'{"type": "ping"}\n')
    assert b"pong" in await asyncio.wait_for(reader.readline(), SAFETY)
    return writer


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes; a reset fails the test (a refused client must read its error)."""
    return await asyncio.wait_for(reader.read(), SAFETY)


async def _wyoming_events(reader: asyncio.StreamReader) -> list[dict]:
    return await read_events(reader, SAFETY)


def _frame(event) -> bytes:
    data = json.dumps(event.data).encode()
    return json.dumps({"type": event.type, "data_length": len(data)}).encode() + b"\n" + data


# -- 1. connections counted from accept ---------------------------------------------------------------------
def test_unfinished_http_headers_count_and_refused_clients_read_their_503(after_each):
    server = after_each

    async def go():
        held = []
        for _ in range(PER_CLIENT):  # headers that never finish: they count from the first byte
            reader, writer = await _open(server.http_port)
            writer.write(b"GET /v1/voices HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            await writer.drain()
            held.append((reader, writer))
        answers = []
        for _ in range(10):  # each refused client sends its whole request first, then reads: no reset
            reader, writer = await _open(server.http_port)
            writer.write(b"GET /v1/voices HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            answers.append(await _read_all(reader))
            writer.close()
        other = await _open(server.http_port, "127.0.0.2")  # another address is not affected
        other[1].write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        healthz = await _read_all(other[0])
        async with AsyncTcpClient("127.0.0.1", server.port) as client:  # nor is the Wyoming port
            await client.write_event(Describe().event())
            info = await asyncio.wait_for(client.read_event(), SAFETY)
        for _, writer in held:
            writer.close()
        return answers, healthz, info

    answers, healthz, info = run(go())
    assert len(answers) == 10
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), answer[:200]
        assert code_of(json.loads(body)) == "server-busy"
    assert healthz.startswith(b"HTTP/1.1 200") and Info.is_type(info.type)


def test_a_total_cap_over_all_addresses_and_refused_wyoming_clients_read_server_busy(after_each):
    server = after_each

    async def go():
        held = [await _held_stream(server.port, "127.0.0.1") for _ in range(PER_CLIENT)]
        reader, writer = await _open(server.port, "127.0.0.1")  # over the per-client cap
        writer.write(_frame(Synthesize(text="Hello.").event()))
        per_client = await _wyoming_events(reader)
        writer.close()
        sources = [f"127.0.0.{2 + i // PER_CLIENT}" for i in range(TOTAL - PER_CLIENT)]  # fill the total
        held += [await _held_stream(server.port, source) for source in sources]
        refused = []
        for index in range(10):  # other addresses: the total cap; each reads its error, never a reset
            reader, writer = await _open(server.port, f"127.0.1.{1 + index}")
            writer.write(_frame(Synthesize(text="Hello there.").event()))
            await writer.drain()
            refused.append(await _wyoming_events(reader))
            writer.close()
        for writer in held:
            writer.close()
        return per_client, refused

    per_client, refused = run(go())
    assert [e["type"] for e in per_client] == ["error"] and per_client[0]["data"]["code"] == "server-busy"
    assert "too many connections from 127.0.0.1" in per_client[0]["data"]["text"]
    busy = [events for events in refused if events and events[0]["data"].get("code") == "server-busy"]
    assert len(busy) == 10, refused
    assert all(len(events) == 1 for events in busy)  # the error, then a clean close
    assert f"has {TOTAL} connections open" in busy[0][0]["data"]["text"]


def test_idle_wyoming_connections_without_a_request_are_closed(after_each):
    server = after_each

    async def go():
        silent = await _open(server.port)
        pinged = await _open(server.port)
        pinged[1].write(b'{"type": "ping"}\n')
        return await _read_all(silent[0]), await _wyoming_events(pinged[0])

    silent, pinged = run(go())
    assert silent == b""  # closed by the server, nothing sent
    assert [e["type"] for e in pinged] == ["pong"]  # answered, then closed once idle
    assert server.log.read_text().count(f"idle for {CONNECTION_IDLE} s") >= 2


# -- 2 and 4. bodies admitted before they are read; inline clips share the slots --------------------------
def _speech_head(length: int) -> bytes:
    return (
        "POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _inline(clip: bytes = b"RIFF") -> dict:
    return {"input": "Hi.", "ref_audio": base64.b64encode(clip).decode(), "x_vector_only_mode": True}


def test_clip_bodies_take_an_upload_slot_before_they_are_read(after_each):
    """Six clients announce 40 MB bodies at once (from three addresses): two get the two upload slots and
    wait for their bodies, four get 503 server-busy before sending a byte of theirs. Meanwhile an inline
    clip is server-busy too, the voice listing answers, and a body over the route's cap is 413 unread."""
    server = after_each

    async def go():
        conns = []
        for index in range(6):
            reader, writer = await _open(server.http_port, f"127.0.0.{1 + index % 3}")
            writer.write(_speech_head(40_000_000))
            await writer.drain()
            conns.append((reader, writer))
        reads = {asyncio.ensure_future(_read_response(r)): i for i, (r, _) in enumerate(conns)}
        answered: dict[int, bytes] = {}
        pending = set(reads)
        deadline = time.monotonic() + SAFETY
        while len(answered) < 4 and pending and time.monotonic() < deadline:
            done, pending = await asyncio.wait(pending, timeout=1, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                answered[reads[task]] = task.result()
        status_inline, inline = await http(server, "POST", "/v1/audio/speech", json=_inline())
        status_list, listing = await http(server, "GET", "/v1/voices", source="127.0.0.8")
        reader, writer = await _open(server.http_port, "127.0.0.7")
        writer.write(_speech_head(500_000_000))
        too_large = await _read_response(reader)
        writer.close()
        waiting = len(pending)
        for task in pending:
            task.cancel()
        for _, writer in conns:
            writer.close()

        async def inline_again():
            status, body = await http(server, "POST", "/v1/audio/speech", json=_inline())
            assert code_of(body) != "server-busy", body
            return status, body

        freed = await _eventually(inline_again)
        return answered, waiting, (status_inline, inline), (status_list, listing), too_large, freed

    answered, waiting, inline, listing, too_large, freed = run(go())
    assert len(answered) == 4 and waiting == 2
    for answer in answered.values():
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503") and code_of(json.loads(body)) == "server-busy", answer[:300]
    assert inline[0] == 503 and code_of(inline[1]) == "server-busy"
    assert listing[0] == 200 and "voices" in listing[1]
    assert too_large.startswith(b"HTTP/1.1 413") and b"request-too-large" in too_large
    assert code_of(freed[1]) == "model-not-loaded"  # no Base model here: the slot was free again


# -- 5, 6, 7, 9 --------------------------------------------------------------------------------------------
def test_cross_site_gets_are_refused_except_opening_the_page(after_each):
    server = after_each
    foreign = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}

    async def go():
        tts = await http(server, "GET", "/api/tts", params={"text": "Hello there."}, headers=foreign)
        voices = await http(server, "GET", "/v1/voices", headers={**foreign, "Sec-Fetch-Mode": "no-cors"})
        page = await http(server, "GET", "/", headers={**foreign, "Sec-Fetch-Dest": "document"})
        own = await http(server, "GET", "/v1/voices", headers={"Sec-Fetch-Site": "same-origin"})
        return tts, voices, page, own

    tts, voices, page, own = run(go())
    assert (tts[0], code_of(tts[1])) == (403, "forbidden")
    assert (voices[0], code_of(voices[1])) == (403, "forbidden")
    assert page[0] == 200 and b"<html" in page[1].lower()
    assert own[0] == 200


def test_display_names_are_bounded_and_log_lines_cannot_be_forged(after_each):
    server = after_each

    async def go():
        long = {"name": "longname", "instruct": "A calm voice.", "display_name": "x" * 21_000}
        refused = await http(server, "POST", "/v1/voices", json=long)
        fine = await http(server, "POST", "/v1/voices", json={**long, "display_name": "y" * 100})
        forged = await http(
            server, "GET", "/v1/voices%0AFORGED%20line%0D", headers={"Sec-Fetch-Site": "cross-site"}
        )
        info = await http(server, "GET", "/info")
        await http(server, "DELETE", "/v1/voices/longname")
        return refused, fine, forged, info

    refused, fine, forged, info = run(go())
    assert (refused[0], code_of(refused[1])) == (400, "invalid-argument")
    assert "display name longer than 100" in refused[1]["error"]["message"]
    assert fine[0] == 201 and fine[1]["voice"]["display_name"] == "y" * 100
    assert forged[0] == 403
    log = server.log.read_text()
    assert "\\x0aFORGED line\\x0d" in log  # escaped in the line that logged it
    assert not any(line.startswith("FORGED") for line in log.splitlines())
    assert info[0] == 200 and "/" not in info[1]["default_model"]  # no server path


def test_nothing_above_left_a_traceback(server):
    log = server.log.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def test_answers_name_no_server_path_and_log_messages_escape_controls():
    """The two helpers both front doors use: error texts lose absolute paths (the last component stays),
    formatted log messages lose control characters."""
    import logging

    from wyoming_qwen3tts.service.logsafe import EscapeControlCharacters
    from wyoming_qwen3tts.service.public import model_label, redact_paths

    text = "cannot load the Base model /srv/models/Qwen3-TTS-Base: [Errno 2] '/srv/models/x/config.json'"
    assert redact_paths(text) == "cannot load the Base model Qwen3-TTS-Base: [Errno 2] 'config.json'"
    for kept in ("send multipart/form-data", "see https://example.org/a/b", "and/or", "1-60 s / 24 kHz"):
        assert redact_paths(kept) == kept
    assert model_label("/srv/models/Qwen3-TTS-Base/") == "Qwen3-TTS-Base"
    assert model_label("Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice") == "Qwen3-TTS-12Hz-0.6B-CustomVoice"
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "path %s", ("/a\nFORGED\r\x1b[31m",), None)
    assert EscapeControlCharacters().filter(record)
    assert record.getMessage() == "path /a\\x0aFORGED\\x0d\\x1b[31m"
