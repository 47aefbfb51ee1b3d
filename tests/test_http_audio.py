"""The HTTP side's building blocks without a model: WSOLA speed change, the encoders (whole and streamed),
the API key and allow-list, the ingress-aware page, and the error shapes of the aiohttp app."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from aiohttp.test_utils import TestClient, TestServer

from wyoming_qwen3tts.http import auth, inline_clone
from wyoming_qwen3tts.http.app import build_app, render_page
from wyoming_qwen3tts.http.auth import Access
from wyoming_qwen3tts.http.context import HttpContext
from wyoming_qwen3tts.http.encode import FORMATS, Encoder, available_formats, get_format, wav_header
from wyoming_qwen3tts.http.errors import ApiError
from wyoming_qwen3tts.http.tempo import TimeStretch, stretch

SR = 24000


def _tone(seconds: float = 1.5, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * 32767 * np.sin(2 * np.pi * freq * t) * (0.7 + 0.3 * np.sin(2 * np.pi * 2 * t))).astype(
        "<i2"
    )


def _pitch(samples: np.ndarray) -> float:
    mid = samples[len(samples) // 4 : 3 * len(samples) // 4].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(mid * np.hanning(mid.size)))
    return float(np.argmax(spectrum) * SR / mid.size)


@pytest.mark.parametrize("speed", [0.25, 0.5, 0.8, 1.5, 2.0, 4.0])
def test_time_stretch_changes_tempo_not_pitch(speed):
    tone = _tone()
    out = np.frombuffer(stretch(tone.tobytes(), speed), dtype="<i2")
    assert out.size == round(tone.size / speed)  # exact length: the tempo
    assert abs(_pitch(out) - 220.0) < 3.0  # same pitch (resampling would give 220 * speed)
    level = np.sqrt(np.mean(out[out.size // 4 : 3 * out.size // 4].astype(np.float64) ** 2))
    assert 0.8 < level / np.sqrt(np.mean(tone.astype(np.float64) ** 2)) < 1.2  # no phasing dips


def test_time_stretch_streams_independently_of_chunking():
    tone = _tone(1.0)
    whole = stretch(tone.tobytes(), 1.7)
    stretcher, parts, rng, i = TimeStretch(1.7), [], np.random.default_rng(0), 0
    while i < tone.size:
        n = int(rng.integers(1, 3000))
        parts.append(stretcher.feed(tone[i : i + n].tobytes()))
        i += n
    parts.append(stretcher.finish())
    assert b"".join(parts) == whole
    assert sum(len(p) for p in parts[:-1]) > len(whole) // 2  # most of it came out before the end
    with pytest.raises(ValueError):
        TimeStretch(4.5)


def _encode(name: str, pcm: bytes, streaming: bool, block: int = 4800) -> tuple[bytes, int]:
    """(all bytes, bytes returned before finish())"""
    encoder = Encoder(get_format(name), streaming)
    early = b"".join(encoder.feed(pcm[i : i + block]) for i in range(0, len(pcm), block))
    return early + encoder.finish(), len(early)


@pytest.mark.parametrize("name", ["pcm", "wav", "mp3", "opus", "flac"])
@pytest.mark.parametrize("streaming", [False, True])
def test_every_format_decodes_whole_and_streamed(name, streaming):
    assert name in available_formats()  # the soundfile wheel's libsndfile has mp3 and opus
    tone = _tone(2.0)
    data, early = _encode(name, tone.tobytes(), streaming)
    if name == "pcm":
        assert data == tone.tobytes()
        return
    audio, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert rate == SR and audio.ndim == 1
    if name in ("wav", "flac"):  # lossless and exact
        assert np.array_equal(audio, tone)
    else:  # lossy: the right length (give or take codec delay/padding) and the right pitch
        assert abs(audio.size - tone.size) < 4000
        assert abs(_pitch(audio) - 220.0) < 3.0
    if streaming and name != "flac":
        assert early > len(data) // 3, "a streamed encoding must hand out bytes before the end"
    if not streaming or name == "flac":
        assert early == 0


def test_streamed_wav_header_says_unknown_length():
    assert wav_header()[4:8] == b"\xff\xff\xff\xff" and wav_header()[40:44] == b"\xff\xff\xff\xff"
    data, _ = _encode("wav", b"\x01\x00" * 10, streaming=True)
    assert data[:4] == b"RIFF" and len(data) == 44 + 20
    whole, _ = _encode("wav", b"\x01\x00" * 10, streaming=False)
    assert int.from_bytes(whole[40:44], "little") == 20


def test_unsupported_formats_are_clear_400s():
    for name in ("aac", "ogg", "", None):
        with pytest.raises(ApiError) as err:
            get_format(name)
        assert err.value.code == "unsupported-format" and err.value.param == "response_format"
    assert "aac is not supported" in str(pytest.raises(ApiError, get_format, "AAC").value)
    assert set(FORMATS) == {"mp3", "opus", "flac", "wav", "pcm"}


def test_api_key_uses_constant_time_compare(monkeypatch):
    calls = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    access = Access(api_key="s3cret")
    assert access.key_ok("Bearer s3cret") and access.key_ok("bearer  s3cret ")
    assert not access.key_ok("Bearer s3cre") and not access.key_ok(None) and not access.key_ok("Basic s3cret")
    assert len(calls) == 5 and all(b == b"s3cret" for _, b in calls)
    assert Access().key_ok(None)  # no key configured: open


def test_allow_list_checks_the_peer_address_only():
    access = Access(allow=["172.30.32.2", "192.168.1.0/24", "::1"])
    assert access.peer_allowed("172.30.32.2") and access.peer_allowed("192.168.1.77")
    assert access.peer_allowed("::ffff:192.168.1.5") and access.peer_allowed("::1")
    assert not access.peer_allowed("10.0.0.1") and not access.peer_allowed(None)
    assert Access().peer_allowed("8.8.8.8")


def test_page_base_follows_the_ingress_path_and_refuses_odd_values():
    page = render_page("/api/hassio_ingress/AbC-123_x")
    assert '<base href="/api/hassio_ingress/AbC-123_x/">' in page
    for evil in ('/x"><script>alert(1)</script>', "//evil.example", "/a/../b", "javascript:x", ""):
        assert "<base href" not in render_page(evil)
    plain = render_page(None)
    assert "<base href" not in plain and "http://" not in plain.split("<script>")[0].replace(
        "http://www.w3", ""
    )
    assert "fetch(path" in plain and '"v1/voices"' in plain  # relative URLs only


class _NoState:
    """Enough of ServerState for routes that never touch the engine."""

    warm = False
    catalog = None


async def test_allow_list_and_key_on_the_real_app(monkeypatch):
    ctx = HttpContext(state=_NoState(), access=Access(api_key="k", allow=["10.0.0.0/8"]))
    async with TestClient(TestServer(build_app(ctx))) as client:
        assert (await client.get("/healthz")).status == 200  # health: always open
        response = await client.get("/v1/models", headers={"Authorization": "Bearer k"})
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "forbidden"
    ctx.access = Access(api_key="k")
    async with TestClient(TestServer(build_app(ctx))) as client:
        response = await client.get("/v1/models")
        assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
        body = await response.json()
        assert body["error"]["code"] == "invalid-api-key" and body["error"]["type"] == "invalid_request_error"
        assert (await client.get("/v1/models", headers={"Authorization": "Bearer k"})).status == 200
        page = await client.get("/", headers={"X-Ingress-Path": "/api/hassio_ingress/tok"})
        assert page.status == 200 and '<base href="/api/hassio_ingress/tok/">' in await page.text()
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        ready = await client.get("/readyz")
        assert ready.status == 503 and (await ready.json())["error"]["code"] == "not-ready"
        missing = await client.get("/v2/nothing", headers={"Authorization": "Bearer k"})
        assert missing.status == 404 and (await missing.json())["error"]["code"] == "not-found"
        wrong = await client.put("/v1/audio/speech", headers={"Authorization": "Bearer k"})
        assert wrong.status == 405 and (await wrong.json())["error"]["code"] == "method-not-allowed"
        bad = await client.post("/v1/audio/speech", data=b"{nope", headers={"Authorization": "Bearer k"})
        assert bad.status == 400 and (await bad.json())["error"]["code"] == "invalid-json"
        huge = b"[" + b"0," * (2 << 20) + b"0]"
        json_headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}
        response = await client.post("/api/tts", data=huge, headers=json_headers)
        assert response.status == 413 and (await response.json())["error"]["code"] == "request-too-large"
        # The speech route has room for a base64 reference clip (inline cloning), with its own cap.
        monkeypatch.setattr(inline_clone, "MAX_SPEECH_BODY", 2 << 20)
        response = await client.post("/v1/audio/speech", data=huge, headers=json_headers)
        assert response.status == 413 and (await response.json())["error"]["code"] == "request-too-large"


async def test_trusted_peers_need_no_key_others_do():
    """The add-on trusts Home Assistant's ingress proxy (--http-trusted 172.30.32.2); the TestServer's
    client connects from loopback, so trusting 127.0.0.1 stands in for it here."""
    ctx = HttpContext(state=_NoState(), access=Access(api_key="k", trusted=["127.0.0.1", "::1"]))
    async with TestClient(TestServer(build_app(ctx), host="127.0.0.1")) as client:
        assert (await client.get("/v1/models")).status == 200
    ctx.access = Access(api_key="k", trusted=["172.30.32.2"])
    async with TestClient(TestServer(build_app(ctx), host="127.0.0.1")) as client:
        assert (await client.get("/v1/models")).status == 401
        assert (await client.get("/v1/models", headers={"Authorization": "Bearer k"})).status == 200
    assert Access(api_key="k", trusted=["172.30.32.2"]).peer_trusted("::ffff:172.30.32.2")
    assert not Access(api_key="k").peer_trusted("172.30.32.2")


def test_http_settings_flags_env_and_checks():
    from wyoming_qwen3tts.settings import DEFAULT_OPENAI_VOICES, SettingsError, load_settings

    s = load_settings(
        [
            "--http-allow",
            "172.30.32.2,192.168.1.0/24",
            "--http-allow",
            "::1",
            "--openai-voices",
            "alloy=clone:anna",
            "--http-trusted",
            "172.30.32.2",
        ],
        {"WYOMING_QWEN3TTS_HTTP_API_KEY": " from-env "},
    )
    assert s.http and s.http_port == 8880 and s.http_host == "0.0.0.0"
    assert s.http_allow == ["172.30.32.2/32", "192.168.1.0/24", "::1/128"]
    assert s.http_trusted == ["172.30.32.2/32"]
    assert s.openai_voices == {**DEFAULT_OPENAI_VOICES, "alloy": "clone:anna"}
    assert s.http_api_key == "from-env" and "from-env" not in repr(s)  # never in logs
    assert (
        load_settings(["--http-api-key", "cli"], {"WYOMING_QWEN3TTS_HTTP_API_KEY": "env"}).http_api_key
        == "cli"
    )
    assert load_settings(["--no-http"], {}).http is False
    for argv, message in (
        (["--http-port", "70000"], "--http-port: expected a port in 1..65535"),
        (["--http-allow", "my-laptop"], "--http-allow: 'my-laptop' is not an IP address"),
        (["--openai-voices", "alloy"], "--openai-voices: expected NAME=VOICE pairs"),
    ):
        with pytest.raises(SettingsError, match=message):
            load_settings(argv, {})
