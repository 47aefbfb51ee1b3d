"""The OpenAI-compatible HTTP API over real HTTP: the server in-process (its state reachable) with tiny
random checkpoints and greedy test engines (exact sample counts), driven by the official `openai` client
and by plain aiohttp requests; plus the real server process for /readyz and a port conflict."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np
import openai
import pytest
import soundfile as sf

from tests.fixtures.server_process import ROOT, free_port, start_server
from tests.fixtures.server_thread import GUARD, ServerThread, load_test_engine
from wyoming_qwen3tts.core.tempo import TimeStretch
from wyoming_qwen3tts.http import voices_api
from wyoming_qwen3tts.service.segmenter import split_text
from wyoming_qwen3tts.settings import Settings

KEY = "test-key-123"
TEXT = "Hello there, this is the first sentence. And here is the second one!"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def engine(tiny_custom_voice):
    engine = load_test_engine(str(tiny_custom_voice))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def server(engine, tiny_custom_voice, tiny_base, tiny_voice_design, tmp_path_factory):
    settings = Settings(
        uri=f"tcp://127.0.0.1:{free_port()}",
        model=str(tiny_custom_voice),
        clone_model=str(tiny_base),
        design_model=str(tiny_voice_design),
        max_loaded_models=3,
        max_concurrent=4,
        max_text_chars=2000,
        data_dir=tmp_path_factory.mktemp("http-data"),
        http_host="127.0.0.1",
        http_port=free_port(),
        http_api_key=KEY,
    )
    srv = ServerThread(settings, engine, http=True)
    srv.base = f"http://127.0.0.1:{settings.http_port}"
    yield srv
    srv.close()


@pytest.fixture()
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key=KEY, max_retries=0, timeout=120)


def expected_samples(engine, text: str) -> int:
    tok = engine.builder.tok
    return sum(GUARD.max_frames(len(tok.target_ids(s)) - 8, 8192) for s in split_text(text)) * 1920


def _wav(path: Path, seconds: float = 3.0, sr: int = 16000) -> Path:
    t = np.arange(int(sr * seconds)) / sr
    sf.write(
        path, (0.3 * np.sin(2 * np.pi * 170 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype("f4"), sr
    )
    return path


class Recorder:
    """Wraps engine.submit: records each SpeechRequest; optionally holds back one segment's audio."""

    def __init__(self, engine, hold: int = 0, fail: bool = False) -> None:
        self.engine, self.original, self.hold, self.fail = engine, engine.submit, hold, fail
        self.requests: list = []
        self.gate = threading.Event()
        self.cancelled = threading.Event()

    def __call__(self, request):
        stream = self.original(request)
        self.requests.append(request)
        return _Held(stream, self) if len(self.requests) == self.hold else stream


class _Held:
    def __init__(self, stream, recorder: Recorder) -> None:
        self.stream, self.recorder = stream, recorder

    async def _chunks(self):
        await asyncio.get_running_loop().run_in_executor(None, self.recorder.gate.wait, 60)
        if self.recorder.fail:
            raise RuntimeError("the engine failed mid-utterance")
        async for chunk in self.stream:
            yield chunk

    def __aiter__(self):
        return self._chunks()

    def cancel(self) -> None:
        self.recorder.cancelled.set()
        self.stream.cancel()


@pytest.fixture()
def recorder(engine, monkeypatch):
    def make(hold: int = 0, fail: bool = False) -> Recorder:
        rec = Recorder(engine, hold, fail)
        monkeypatch.setattr(engine, "submit", rec)
        made.append(rec)
        return rec

    made: list[Recorder] = []
    yield make
    for rec in made:
        rec.gate.set()


async def _http(method: str, url: str, **kwargs):
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, **kwargs) as response:
            body = await response.read()
            return response.status, response.headers, body


def _error(body: bytes) -> str:
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error["code"]


# -- OpenAI speech ----------------------------------------------------------------------------------------
def test_every_format_through_the_openai_client(client, engine):
    samples = expected_samples(engine, TEXT)
    pcm = client.audio.speech.create(model="tts-1", voice="ryan", input=TEXT, response_format="pcm")
    assert len(pcm.content) == 2 * samples
    assert pcm.response.headers["content-type"] == "audio/pcm"
    reference = np.frombuffer(pcm.content, dtype="<i2")
    for fmt, content_type in (
        ("wav", "audio/wav"),
        ("flac", "audio/flac"),
        ("mp3", "audio/mpeg"),
        ("opus", "audio/ogg"),
    ):
        for stream in (True, False):
            response = client.audio.speech.create(
                model="tts-1", voice="ryan", input=TEXT, response_format=fmt, extra_body={"stream": stream}
            )
            assert response.response.headers["content-type"] == content_type
            audio, rate = sf.read(io.BytesIO(response.content), dtype="int16")
            assert rate == 24000, fmt
            if fmt in ("wav", "flac"):  # lossless: the very same samples as pcm
                assert np.array_equal(audio, reference), (fmt, stream)
            else:
                assert abs(audio.size - samples) < 4000, (fmt, stream, audio.size, samples)
    default = client.audio.speech.create(model="tts-1", voice="ryan", input=TEXT)  # OpenAI's default: mp3
    assert default.response.headers["content-type"] == "audio/mpeg"


def test_streaming_response_sends_audio_before_generation_ends(client, engine, recorder):
    rec = recorder(hold=2)  # the second sentence's audio waits for the gate
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="ryan", input=TEXT, response_format="pcm"
    ) as response:
        assert response.headers.get("transfer-encoding") == "chunked"
        chunks = response.iter_bytes()
        first = next(chunks)
        # Audio arrived while the server is provably still generating: sentence 2 is held back.
        assert first and not rec.gate.is_set() and len(rec.requests) == 2
        rec.gate.set()
        rest = b"".join(chunks)
    assert len(first) + len(rest) == 2 * expected_samples(engine, TEXT)


def test_streamed_wav_has_an_open_ended_header_and_decodes(client, engine):
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="ryan", input=TEXT, response_format="wav"
    ) as response:
        data = response.read()
    assert data[4:8] == b"\xff\xff\xff\xff" and data[40:44] == b"\xff\xff\xff\xff"
    audio, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert rate == 24000 and audio.size == expected_samples(engine, TEXT)


def test_client_hanging_up_cancels_the_synthesis(server, client, recorder):
    rec = recorder(hold=2)
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="ryan", input=TEXT, response_format="pcm"
    ) as response:
        chunks = response.iter_bytes()  # (kept: a dropped generator closes the response at once)
        assert next(chunks)
        assert server.state.active_jobs == 1 and not rec.cancelled.is_set()
    deadline = time.monotonic() + 10
    while (server.state.active_jobs or not rec.cancelled.is_set()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rec.cancelled.is_set() and server.state.active_jobs == 0


def test_a_failure_after_the_first_audio_cuts_the_stream_short(server, client, engine, recorder):
    rec = recorder(hold=2, fail=True)
    received = b""
    with pytest.raises(Exception) as err:  # the chunked body ends without its terminator
        with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="ryan", input=TEXT, response_format="pcm"
        ) as response:
            chunks = response.iter_bytes()
            received += next(chunks)
            rec.gate.set()
            for chunk in chunks:
                received += chunk
    assert "incomplete" in str(err.value).lower() or "closed" in str(err.value).lower()
    assert 0 < len(received) < 2 * expected_samples(engine, TEXT)
    deadline = time.monotonic() + 10
    while server.state.active_jobs and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.state.active_jobs == 0


def test_speed_is_a_pitch_preserving_tempo_change(client, engine):
    samples = expected_samples(engine, TEXT)
    for speed in (2.0, 0.5):
        response = client.audio.speech.create(
            model="tts-1", voice="ryan", input=TEXT, response_format="pcm", speed=speed
        )
        assert len(response.content) == 2 * round(samples / speed)


def test_request_speed_times_voice_speed_is_one_stretch(server, client, engine, monkeypatch, caplog):
    """A request's speed multiplies the voice's (here the server's --speed): one WSOLA pass at the
    product, never a second stretcher after the first, and the log line names the product."""
    made = []
    original = TimeStretch.__init__

    def counted(self, speed, *args, **kwargs):
        made.append(speed)
        original(self, speed, *args, **kwargs)

    monkeypatch.setattr(TimeStretch, "__init__", counted)  # every stretcher, whoever imported the class
    caplog.set_level(logging.INFO, logger="wyoming_qwen3tts.request")
    before = server.state.delivery
    server.state.delivery = dataclasses.replace(before, speed=1.25)
    try:
        response = client.audio.speech.create(
            model="tts-1",
            voice="ryan",
            input=TEXT,
            response_format="pcm",
            speed=2.0,
            extra_body={"stream": False},
        )
    finally:
        server.state.delivery = before
    assert made == [2.5]
    assert len(response.content) == 2 * round(expected_samples(engine, TEXT) / 2.5)
    lines = [r.getMessage() for r in caplog.records if r.name == "wyoming_qwen3tts.request"]
    assert len(lines) == 1 and "http request" in lines[0] and "speed=2.5," in lines[0], lines


def test_voice_names_language_hints_and_instructions(server, client, recorder):
    rec = recorder()
    default = server.state.catalog.find(None).name
    cases = [
        (dict(voice="alloy", model="tts-1"), "vivian", None),  # OpenAI name -> alias table
        (dict(voice="coral", model="tts-1-de"), default, "german"),  # unmapped OpenAI name -> default voice
        (dict(voice="", model="tts-1"), default, None),
        (dict(voice="Ryan", model="tts-1", extra_body={"language": "fr"}), "ryan", "french"),
        (dict(voice="eric", model="tts-1-pt-br"), "eric", "portuguese"),
        (dict(voice="dylan", model="gpt-4o-mini-tts", instructions="Speak softly."), "dylan", None),
    ]
    for kwargs, speaker, language in cases:
        raw = client.audio.speech.with_raw_response.create(input="Hi there.", response_format="pcm", **kwargs)
        assert raw.headers["x-voice"] == speaker
        request = rec.requests[-1]
        assert request.speaker == speaker
        if language:
            assert request.language == language
    assert rec.requests[-1].instruct == "Speak softly."


def test_bad_requests_get_openai_style_errors(server, client):
    def status_of(**kwargs):
        kwargs = {"model": "tts-1", "voice": "ryan", "input": "Hello.", **kwargs}
        with pytest.raises(openai.APIStatusError) as err:
            client.audio.speech.create(**kwargs)
        return err.value.status_code, err.value.code

    assert status_of(response_format="aac") == (400, "unsupported-format")
    assert status_of(speed=4.5) == (400, "invalid-field")
    assert status_of(input="   ") == (400, "empty-text")
    assert status_of(extra_body={"language": "klingon"}) == (400, "invalid-language")
    assert status_of(voice="nobody") == (404, "voice-not-found")
    assert status_of(input="x" * 2001) == (413, "text-too-long")
    server.state.active_jobs = server.state.max_concurrent  # every slot taken
    try:
        assert status_of() == (503, "server-busy")
    finally:
        server.state.active_jobs = 0
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.base}/v1", api_key="wrong", max_retries=0).audio.speech.create(
            model="tts-1", voice="ryan", input="Hello."
        )


async def test_listings_health_and_the_coqui_route(server):
    status, _, body = await _http("GET", f"{server.base}/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    server.state.warm = False
    status, headers, body = await _http("GET", f"{server.base}/readyz")
    assert status == 503 and _error(body) == "not-ready" and headers["Retry-After"]
    server.state.warm = True  # what app.run does after its warm-up
    status, _, body = await _http("GET", f"{server.base}/readyz")
    assert (
        status == 200
        and json.loads(body)["status"] == "ready"
        and "CustomVoice" in json.loads(body)["models"]
    )
    status, _, body = await _http("GET", f"{server.base}/v1/models")
    assert status == 401 and _error(body) == "invalid-api-key"
    status, _, body = await _http("GET", f"{server.base}/v1/models", headers=AUTH)
    assert {"tts-1", "tts-1-hd", "qwen3-tts"} <= {m["id"] for m in json.loads(body)["data"]}
    status, _, body = await _http("GET", f"{server.base}/v1/audio/voices", headers=AUTH)
    listing = json.loads(body)
    assert {"ryan", "vivian"} <= {v["id"] for v in listing["voices"]} and listing["aliases"][
        "alloy"
    ] == "vivian"
    query = {"text": "Hello there.", "speaker": "ryan", "language": "en"}
    status, headers, body = await _http("GET", f"{server.base}/api/tts", params=query, headers=AUTH)
    assert status == 200 and headers["Content-Type"] == "audio/wav" and sf.read(io.BytesIO(body))[1] == 24000
    form = {"text": "Hello there.", "speaker": "eric", "audio_format": "mp3"}
    status, headers, body = await _http("POST", f"{server.base}/api/tts", data=form, headers=AUTH)
    assert status == 200 and headers["Content-Type"] == "audio/mpeg" and sf.read(io.BytesIO(body))[0].size


async def test_sse_stream_format(server, engine):
    payload = {
        "model": "tts-1",
        "voice": "ryan",
        "input": TEXT,
        "response_format": "pcm",
        "stream_format": "sse",
    }
    status, headers, body = await _http("POST", f"{server.base}/v1/audio/speech", json=payload, headers=AUTH)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")]
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"} and events[-1][
        "type"
    ] == "speech.audio.done"
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert len(audio) == 2 * expected_samples(engine, TEXT)


# -- voice management --------------------------------------------------------------------------------------
def _form(name: str, clip: bytes | None = None, **fields) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("name", name)
    for key, value in fields.items():
        form.add_field(key, value)
    if clip is not None:
        form.add_field("audio", clip, filename="../../clip.wav", content_type="audio/wav")
    return form


async def test_upload_list_speak_and_delete_voices(server, client, tmp_path, monkeypatch):
    voices = f"{server.base}/v1/voices"
    clip = _wav(tmp_path / "clip.wav").read_bytes()
    form = _form("webanna", clip, transcript="Hello there, this is a short test of my voice.", language="de")
    status, _, body = await _http("POST", voices, data=form, headers=AUTH)
    assert status == 201, body
    voice = json.loads(body)["voice"]
    assert voice["id"] == "clone:webanna" and voice["language"] == "de" and voice["usable"]
    status, _, body = await _http("POST", voices, data=_form("webanna", clip), headers=AUTH)
    assert status == 409 and _error(body) == "voice-exists"
    status, _, body = await _http("POST", voices, data=_form("webanna", clip, overwrite="true"), headers=AUTH)
    assert status == 201 and json.loads(body)["warnings"]  # no transcript: x-vector only, said so
    status, _, body = await _http(
        "POST", voices, json={"name": "calm", "instruct": "A calm voice."}, headers=AUTH
    )
    assert status == 201 and json.loads(body)["voice"]["id"] == "design:calm"

    status, _, body = await _http("GET", voices, headers=AUTH)
    listed = {v["id"]: v for v in json.loads(body)["voices"]}
    assert {"clone:webanna", "design:calm", "ryan"} <= set(listed) and not listed["ryan"]["deletable"]
    status, headers, body = await _http("GET", f"{voices}/webanna/audio", headers=AUTH)
    audio, rate = sf.read(io.BytesIO(body))
    assert status == 200 and rate == 24000 and abs(audio.size / rate - 3.0) < 0.01

    for name in ("clone:webanna", "design:calm"):  # on demand: the Base and VoiceDesign engines load
        response = client.audio.speech.create(
            model="tts-1", voice=name, input="Hi there.", response_format="pcm", instructions="Whisper."
        )
        assert len(response.content) > 0 and response.response.headers["x-voice"] == name
    design = Recorder(server.state.models.engines["voice_design"])
    monkeypatch.setattr(design.engine, "submit", design)
    client.audio.speech.create(model="tts-1", voice="design:calm", input="Hi.", instructions="Whisper.")
    assert design.requests[-1].instruct == "A calm voice. Whisper."  # the description, then the style

    status, _, body = await _http("DELETE", f"{voices}/webanna", headers=AUTH)
    assert status == 200 and json.loads(body) == {"deleted": "webanna"}
    status, _, body = await _http("DELETE", f"{voices}/design:calm", headers=AUTH)
    assert status == 200
    for name in ("webanna", "ryan"):
        status, _, body = await _http("DELETE", f"{voices}/{name}", headers=AUTH)
        assert status == 404 and _error(body) == "voice-not-found"
    status, _, body = await _http("GET", f"{server.base}/v1/audio/voices", headers=AUTH)
    assert "clone:webanna" not in {v["id"] for v in json.loads(body)["voices"]}


async def test_uploads_are_validated(server, tmp_path, monkeypatch):
    voices = f"{server.base}/v1/voices"
    clip = _wav(tmp_path / "clip.wav").read_bytes()
    root = server.settings.data_dir
    before = sorted(p.relative_to(root.parent) for p in root.parent.rglob("*"))
    for name in ("../evil", "..", "a/b", "..\\evil", ".hidden", "Voice Name", "con", "/etc/passwd"):
        status, _, body = await _http("POST", voices, data=_form(name, clip), headers=AUTH)
        assert status == 400 and _error(body) == "invalid-name", name
    for path in ("..%2F..%2Fetc", "%2e%2e", "a%2Fb"):
        status, _, body = await _http("DELETE", f"{voices}/{path}", headers=AUTH)
        assert status in (400, 404), path
    assert sorted(p.relative_to(root.parent) for p in root.parent.rglob("*")) == before  # nothing written

    status, _, body = await _http(
        "POST", voices, data=_form("noise", b"not audio at all" * 100), headers=AUTH
    )
    assert status == 400 and _error(body) == "audio-unreadable"
    short = _wav(tmp_path / "short.wav", seconds=0.5).read_bytes()
    status, _, body = await _http("POST", voices, data=_form("short", short), headers=AUTH)
    assert status == 400 and _error(body) == "audio-too-short"
    status, _, body = await _http("POST", voices, data=_form("nothing"), headers=AUTH)
    assert status == 400 and _error(body) == "invalid-argument"
    monkeypatch.setattr(voices_api, "MAX_BYTES", 10_000)
    status, _, body = await _http("POST", voices, data=_form("big", clip), headers=AUTH)
    assert status == 413 and _error(body) == "audio-too-large"
    status, _, body = await _http("POST", voices, data=_form("nokey", clip))
    assert status == 401


async def _wait_ready(url: str, timeout: float = 30) -> tuple:
    """The Wyoming port (what start_server waits for) opens a moment before the HTTP port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await _http("GET", url)
        except aiohttp.ClientConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


# -- the real process --------------------------------------------------------------------------------------
def test_real_process_ready_and_http_port_conflict(tiny_custom_voice, tmp_path):
    port = free_port()
    with open(tmp_path / "server.log", "w+") as log:
        proc, _ = start_server(
            str(tiny_custom_voice), ["--threads", "1", "--data-dir", str(tmp_path)], log, http_port=port
        )
        try:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
            ready = asyncio.run(_wait_ready(f"http://127.0.0.1:{port}/readyz"))
            assert ready[0] == 200 and json.loads(ready[2])["status"] == "ready"
            assert len(
                client.audio.speech.create(
                    model="tts-1", voice="ryan", input="Hi.", response_format="pcm"
                ).content
            )
            # A second server on the same HTTP port: one clear line, exit code 1, no traceback.
            second = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "wyoming_qwen3tts",
                    "--uri",
                    f"tcp://127.0.0.1:{free_port()}",
                    "--model",
                    str(tiny_custom_voice),
                    "--device",
                    "cpu",
                    "--threads",
                    "1",
                    "--data-dir",
                    str(tmp_path),
                    "--http-host",
                    "127.0.0.1",
                    "--http-port",
                    str(port),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert second.returncode == 1
            assert (
                f"cannot serve HTTP on 127.0.0.1:{port}" in second.stderr and "Traceback" not in second.stderr
            )
        finally:
            proc.terminate()
            proc.wait(30)
