"""Drop-in contracts of the community Qwen3-TTS servers over real HTTP (the server in-process, tiny random
checkpoints, greedy test engines): the Coqui-style /api/tts (ogg, model, unknown fields) and /speakers, the
OpenAI-compatible server's inline cloning fields on /v1/audio/speech, and the refusal of unknown fields."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
import openai
import pytest
import soundfile as sf

from tests.fixtures.server_process import ROOT, free_port, start_server
from tests.fixtures.server_thread import ServerThread, load_test_engine
from wyoming_qwen3tts.http import inline_clone
from wyoming_qwen3tts.settings import Settings
from wyoming_qwen3tts.voices import prompts as prompts_module
from wyoming_qwen3tts.voices.inline import InlineVoices

KEY = "compat-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
TRANSCRIPT = "Hello there, this is a short test of my voice."


@pytest.fixture(scope="module")
def engine(tiny_custom_voice):
    engine = load_test_engine(str(tiny_custom_voice))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def server(engine, tiny_custom_voice, tiny_base, tmp_path_factory):
    settings = Settings(
        uri=f"tcp://127.0.0.1:{free_port()}",
        model=str(tiny_custom_voice),
        clone_model=str(tiny_base),
        max_loaded_models=2,
        max_concurrent=4,
        max_text_chars=2000,
        data_dir=tmp_path_factory.mktemp("compat-data"),
        http_host="127.0.0.1",
        http_port=free_port(),
        http_api_key=KEY,
    )
    srv = ServerThread(settings, engine, http=True)
    srv.base = f"http://127.0.0.1:{settings.http_port}"
    yield srv
    srv.close()


async def _http(method: str, url: str, **kwargs):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        async with session.request(method, url, **kwargs) as response:
            return response.status, response.headers, await response.read()


def _error(body: bytes) -> tuple[str, str]:
    error = json.loads(body)["error"]
    return error["code"], error["param"]


def _clip(seconds: float = 3.0, sr: int = 16000, fmt: str = "WAV", pitch: float = 170.0) -> bytes:
    t = np.arange(int(sr * seconds)) / sr
    wave = 0.3 * np.sin(2 * np.pi * pitch * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    buf = io.BytesIO()
    sf.write(buf, wave.astype("f4"), sr, format=fmt)
    return buf.getvalue()


# -- /api/tts and /speakers --------------------------------------------------------------------------------
async def test_api_tts_ogg_content_types_and_speakers(server, tiny_custom_voice):
    url = f"{server.base}/api/tts"
    query = {"text": "Hello there.", "speaker": "ryan", "audio_format": "ogg"}
    status, headers, body = await _http("GET", url, params=query, headers=AUTH)
    assert status == 200 and headers["Content-Type"] == "audio/ogg" and body[:4] == b"OggS"
    info = sf.info(io.BytesIO(body))
    assert info.format == "OGG" and info.subtype == "VORBIS" and info.samplerate == 24000
    assert sf.read(io.BytesIO(body))[0].size > 0
    status, headers, body = await _http("POST", url, json={"text": "Hello there."}, headers=AUTH)
    assert status == 200 and headers["Content-Type"] == "audio/wav" and sf.read(io.BytesIO(body))[1] == 24000
    status, _, body = await _http("POST", url, json={"text": "Hi.", "audio_format": "aiff"}, headers=AUTH)
    assert status == 400 and _error(body) == ("unsupported-format", "audio_format")

    status, _, body = await _http("GET", f"{server.base}/speakers", headers=AUTH)
    listing = json.loads(body)
    assert status == 200 and {"ryan", "vivian"} <= set(listing["speakers"])
    assert listing["model"] == tiny_custom_voice.name and listing["default"] in listing["speakers"]  # no path
    status, _, body = await _http("GET", f"{server.base}/health")  # the other servers' probe: no key
    assert status == 200 and json.loads(body) == {"status": "ok"}


async def test_api_tts_refuses_unknown_fields(server):
    url = f"{server.base}/api/tts"
    for method, kwargs in (
        ("GET", {"params": {"text": "Hi.", "style_wav": "x.wav"}}),
        ("POST", {"json": {"text": "Hi.", "style_wav": "x.wav"}}),
        ("POST", {"data": {"text": "Hi.", "style_wav": "x.wav"}}),
    ):
        status, _, body = await _http(method, url, headers=AUTH, **kwargs)
        assert status == 400 and _error(body) == ("invalid-field", "style_wav"), (method, body)
        assert "style_wav" in json.loads(body)["error"]["message"]
    form = aiohttp.FormData({"text": "Hi."})
    form.add_field("speaker", b"ryan", filename="speaker.txt")  # a file where a value belongs
    status, _, body = await _http("POST", url, data=form, headers=AUTH)
    assert status == 400 and _error(body) == ("invalid-field", "speaker")


async def test_api_tts_model_field_goes_through_the_model_pool(
    server, tiny_custom_voice, tiny_base, tmp_path
):
    url = f"{server.base}/api/tts"
    for model in (str(tiny_custom_voice), tiny_custom_voice.name, "CustomVoice", "qwen3-tts"):
        status, headers, _ = await _http(
            "POST", url, json={"text": "Hi.", "speaker": "ryan", "model": model}, headers=AUTH
        )
        assert status == 200 and headers["X-Voice"] == "ryan", model
    status, _, body = await _http("POST", url, json={"text": "Hi.", "model": "xtts_v2"}, headers=AUTH)
    code, param = _error(body)
    message = json.loads(body)["error"]["message"]
    assert status == 400 and (code, param) == ("invalid-field", "model")
    assert tiny_custom_voice.name in message and tiny_base.name in message  # what this server can load
    assert str(tiny_custom_voice.parent) not in message  # by name: no server path in any answer
    status, _, body = await _http(
        "POST", url, json={"text": "Hi.", "speaker": "ryan", "model": "Base"}, headers=AUTH
    )
    assert status == 400 and _error(body) == ("invalid-field", "model") and b"CustomVoice" in body

    # The Base model without a speaker: its first clone voice speaks (loaded on demand by the pool).
    form = aiohttp.FormData()
    form.add_field("name", "compat-anna")
    form.add_field("transcript", TRANSCRIPT)
    form.add_field("audio", _clip(), filename="clip.wav", content_type="audio/wav")
    status, _, body = await _http("POST", f"{server.base}/v1/voices", data=form, headers=AUTH)
    assert status == 201, body
    status, headers, body = await _http(
        "POST", url, json={"text": "Hi.", "model": tiny_base.name, "audio_format": "wav"}, headers=AUTH
    )
    assert status == 200 and headers["X-Voice"] == "clone:compat-anna" and sf.read(io.BytesIO(body))[0].size
    assert "base" in server.state.models.engines

    # reference_audio: a file of that server's reference folder = the clone voice `voices import` made of it.
    status, headers, _ = await _http(
        "POST", url, json={"text": "Hi.", "reference_audio": "Compat-Anna.wav"}, headers=AUTH
    )
    assert status == 200 and headers["X-Voice"] == "clone:compat-anna"
    status, _, body = await _http(
        "POST", url, json={"text": "Hi.", "reference_audio": "nobody.wav"}, headers=AUTH
    )
    assert (
        status == 404 and _error(body) == ("voice-not-found", "reference_audio") and b"voices import" in body
    )
    both = {"text": "Hi.", "reference_audio": "compat-anna.wav", "speaker": "ryan"}
    status, _, body = await _http("POST", url, json=both, headers=AUTH)
    assert status == 400 and _error(body) == ("invalid-field", "reference_audio")

    status, _, body = await _http("GET", f"{server.base}/speakers", params={"model": "Base"}, headers=AUTH)
    assert status == 200 and json.loads(body) == {"speakers": [], "model": tiny_base.name, "default": None}
    status, _, body = await _http("GET", f"{server.base}/speakers", params={"model": "xtts"}, headers=AUTH)
    assert status == 400 and _error(body) == ("invalid-field", "model")
    assert str(tiny_base.parent) not in body.decode() and tiny_base.name in body.decode()  # no server path
    status, _, body = await _http("GET", f"{server.base}/info", headers=AUTH)
    info = json.loads(body)
    assert info["default_model"] == tiny_custom_voice.name and "ryan" in info["speakers"]  # never a path
    assert info["default_language"] == "Auto" and {"Auto", "English"} <= set(info["supported_languages"])


# -- /v1/audio/speech: fields ------------------------------------------------------------------------------
async def test_speech_accepts_every_openai_field_and_refuses_unknown_ones(server):
    url = f"{server.base}/v1/audio/speech"
    full = {
        "model": "gpt-4o-mini-tts",
        "input": "Hi.",
        "voice": "alloy",
        "instructions": "Calm.",
        "response_format": "pcm",
        "speed": 1.0,
        "stream_format": "audio",
    }
    status, headers, body = await _http("POST", url, json=full, headers=AUTH)
    assert status == 200 and headers["Content-Type"] == "audio/pcm" and len(body) > 0
    for extra in ({"temperature": 0.7}, {"max_new_tokens": 100}, {"ref_audio_b64": "AAAA"}):
        status, _, body = await _http("POST", url, json={**full, **extra}, headers=AUTH)
        assert status == 400 and _error(body) == ("invalid-field", next(iter(extra))), extra
    status, _, body = await _http("POST", url, json={**full, "task_type": "Base"}, headers=AUTH)
    assert status == 400 and _error(body) == ("invalid-field", "task_type")
    status, _, _ = await _http("POST", url, json={**full, "task_type": "CustomVoice"}, headers=AUTH)
    assert status == 200
    for orphan in ({"ref_text": "words"}, {"x_vector_only_mode": True}):
        status, _, body = await _http("POST", url, json={**full, **orphan}, headers=AUTH)
        assert status == 400 and _error(body) == ("invalid-field", next(iter(orphan)))


# -- inline cloning ----------------------------------------------------------------------------------------
async def test_inline_cloning_matches_a_library_clone_and_uses_the_prompt_cache(server, monkeypatch):
    clip = _clip(pitch=190.0)
    form = aiohttp.FormData()
    form.add_field("name", "compat-ref")
    form.add_field("transcript", TRANSCRIPT)
    form.add_field("audio", clip, filename="clip.wav", content_type="audio/wav")
    status, _, body = await _http("POST", f"{server.base}/v1/voices", data=form, headers=AUTH)
    assert status == 201, body
    client = openai.OpenAI(base_url=f"{server.base}/v1", api_key=KEY, max_retries=0, timeout=300)
    text = "Good morning, how are you?"
    stored = client.audio.speech.create(
        model="tts-1", voice="clone:compat-ref", input=text, response_format="pcm"
    )

    computed: list[str] = []
    original = prompts_module.PromptCache._compute

    def counting(self, profile, engine):
        computed.append(profile.name)
        return original(self, profile, engine)

    monkeypatch.setattr(prompts_module.PromptCache, "_compute", counting)
    b64 = base64.b64encode(clip).decode()
    inline = client.audio.speech.create(
        model="tts-1",
        voice="alloy",
        input=text,
        response_format="pcm",
        extra_body={"ref_audio": b64, "ref_text": TRANSCRIPT},
    )
    assert inline.response.headers["x-voice"].startswith("inline:")
    assert inline.content == stored.content  # the same clip and transcript: the same voice prompt
    assert len(computed) == 1 and computed[0].startswith("inline:")
    again = client.audio.speech.create(  # a data: URL of the same clip: same hash, cached prompt
        model="tts-1",
        voice="alloy",
        input=text,
        response_format="pcm",
        extra_body={"ref_audio": f"data:audio/wav;base64,{b64}", "ref_text": TRANSCRIPT},
    )
    assert again.content == stored.content and len(computed) == 1

    for fmt in ("FLAC", "MP3", "OGG"):  # what uploads read (base64 of an MP3 frame starts with "//")
        clip_b64 = base64.b64encode(_clip(fmt=fmt)).decode()
        status, headers, body = await _http(
            "POST",
            f"{server.base}/v1/audio/voice-clone",
            json={
                "input": "Hi.",
                "ref_audio": clip_b64,
                "x_vector_only_mode": True,
                "response_format": "wav",
            },
            headers=AUTH,
        )
        assert status == 200 and headers["Content-Type"] == "audio/wav", (fmt, body)
        assert sf.read(io.BytesIO(body))[0].size
    status, _, body = await _http("GET", f"{server.base}/v1/audio/voice-clone/capabilities", headers=AUTH)
    assert json.loads(body)["supported"] is True


async def test_inline_cloning_gets_the_upload_checks(server, monkeypatch):
    url = f"{server.base}/v1/audio/speech"
    b64 = base64.b64encode(_clip()).decode()
    cases = [
        ({"ref_audio": b64}, 400, ("invalid-field", "ref_text")),  # ICL needs the transcript
        ({"ref_audio": "not base64 at all!", "ref_text": "x"}, 400, ("invalid-field", "ref_audio")),
        ({"ref_audio": "https://example.com/a.wav", "ref_text": "x"}, 400, ("invalid-field", "ref_audio")),
        ({"ref_audio": "/home/me/clip.wav", "ref_text": "x"}, 400, ("invalid-field", "ref_audio")),
        (
            {"ref_audio": base64.b64encode(b"noise" * 500).decode(), "ref_text": "x"},
            400,
            ("audio-unreadable", None),
        ),
        (
            {"ref_audio": base64.b64encode(_clip(0.5)).decode(), "ref_text": "x"},
            400,
            ("audio-too-short", None),
        ),
        ({"ref_audio": b64, "x_vector_only_mode": "maybe"}, 400, ("invalid-field", "x_vector_only_mode")),
    ]
    for fields, status_wanted, error in cases:
        status, _, body = await _http("POST", url, json={"input": "Hi.", **fields}, headers=AUTH)
        assert status == status_wanted and _error(body) == error, (fields, body)
    monkeypatch.setattr(inline_clone, "MAX_BYTES", 10_000)
    status, _, body = await _http(
        "POST", url, json={"input": "Hi.", "ref_audio": b64, "ref_text": TRANSCRIPT}, headers=AUTH
    )
    assert status == 413 and _error(body) == ("audio-too-large", "ref_audio")


def test_inline_clips_are_bounded_and_reused(tmp_path: Path):
    inline = InlineVoices(tmp_path, max_entries=2)
    first = inline.profile(_clip(pitch=150.0), TRANSCRIPT, "icl")
    assert inline.profile(_clip(pitch=150.0), TRANSCRIPT, "icl").audio_path == first.audio_path  # reused
    other_text = inline.profile(_clip(pitch=150.0), "Other words entirely here.", "icl")
    assert other_text.audio_path != first.audio_path  # the transcript is part of the key
    inline.profile(_clip(pitch=250.0), None, "xvector")
    kept = sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(kept) == 2 and first.audio_path.parent.name not in kept  # least recently used went first


# -- the real process --------------------------------------------------------------------------------------
async def _process_checks(base: str) -> None:
    deadline = time.monotonic() + 120
    while True:  # the Wyoming port (what start_server waits for) opens a moment before the HTTP port
        try:
            status, _, _ = await _http("GET", f"{base}/readyz")
            if status == 200:
                break
        except aiohttp.ClientConnectionError:
            pass
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    assert (await _http("GET", f"{base}/health"))[0] == 200
    status, headers, body = await _http(
        "GET", f"{base}/api/tts", params={"text": "Hi.", "audio_format": "ogg"}
    )
    assert status == 200 and headers["Content-Type"] == "audio/ogg" and sf.read(io.BytesIO(body))[1] == 24000
    status, _, body = await _http("GET", f"{base}/speakers")
    assert status == 200 and "ryan" in json.loads(body)["speakers"]
    clip = f"data:audio/wav;base64,{base64.b64encode(_clip()).decode()}"
    speech = {"model": "tts-1", "voice": "alloy", "input": "Hi.", "response_format": "wav"}
    status, headers, body = await _http(
        "POST", f"{base}/v1/audio/speech", json={**speech, "ref_audio": clip, "ref_text": TRANSCRIPT}
    )
    assert status == 200 and headers["X-Voice"].startswith("inline:") and sf.read(io.BytesIO(body))[0].size
    status, _, body = await _http("POST", f"{base}/v1/audio/speech", json={**speech, "seed": 1})
    assert status == 400 and _error(body) == ("invalid-field", "seed")
    # A voice of the other server's library, imported before the start, under its own clone: name.
    status, headers, body = await _http(
        "POST", f"{base}/v1/audio/speech", json={**speech, "voice": "clone:Mario"}
    )
    assert status == 200 and headers["X-Voice"] == "clone:mario" and sf.read(io.BytesIO(body))[0].size


def test_the_real_process_answers_the_drop_in_contracts(tiny_custom_voice, tiny_base, tmp_path):
    profile = tmp_path / "voice_library" / "profiles" / "0f3a"
    profile.mkdir(parents=True)
    (profile / "mario.wav").write_bytes(_clip(pitch=130.0))
    meta = {"name": "Mario", "profile_id": "0f3a", "ref_audio_filename": "mario.wav", "ref_text": TRANSCRIPT}
    (profile / "meta.json").write_text(json.dumps({**meta, "x_vector_only_mode": False, "task_type": "Base"}))
    imported = subprocess.run(
        [sys.executable, "-m", "wyoming_qwen3tts", "voices", "--data-dir", str(tmp_path), "import"]
        + [str(tmp_path / "voice_library")],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("WYOMING_QWEN3TTS_")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert imported.returncode == 0 and "imported  clone:mario" in imported.stdout, imported.stderr
    port = free_port()
    args = ["--threads", "1", "--data-dir", str(tmp_path), "--clone-model", str(tiny_base)]
    with open(tmp_path / "server.log", "w+") as log:
        proc, _ = start_server(str(tiny_custom_voice), args, log, http_port=port)
        try:
            asyncio.run(_process_checks(f"http://127.0.0.1:{port}"))
        finally:
            proc.terminate()
            proc.wait(30)
        log.seek(0)
        assert "Traceback" not in log.read()
    assert len(list((tmp_path / "voices" / ".inline").iterdir())) == 1  # the inline clip, kept for its prompt
