"""Reference-audio input: real files, bytes, base64, arrays, limits, resampling and PCM conversion."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open

from wyoming_qwen3tts.engine.audio import AudioError, load_audio, resample, to_pcm16

GOLDEN = Path(__file__).parent / "goldens" / "speaker_parity.safetensors"


@pytest.fixture(scope="module")
def parity() -> tuple[dict, dict]:
    with safe_open(str(GOLDEN), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def _stereo_int16(n: int = 4800) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(-30000, 30000, size=(n, 2), dtype=np.int16)


def test_wav_int16_file_scaled_like_soundfile(tmp_path: Path) -> None:
    data = _stereo_int16()[:, 0]
    path = tmp_path / "mono.wav"
    sf.write(path, data, 16000, subtype="PCM_16")
    wave, sr = load_audio(str(path))
    assert sr == 16000 and wave.dtype == np.float32 and wave.shape == (4800,)
    np.testing.assert_array_equal(wave, data.astype(np.float32) / np.float32(32768.0))
    wave2, _ = load_audio(path)  # PathLike
    np.testing.assert_array_equal(wave, wave2)


def test_stereo_flac_is_averaged(tmp_path: Path) -> None:
    data = _stereo_int16()
    path = tmp_path / "stereo.flac"
    sf.write(path, data, 44100, subtype="PCM_16")
    wave, sr = load_audio(str(path))
    ref = np.mean(sf.read(path, dtype="float32")[0], axis=-1).astype(np.float32)
    assert sr == 44100
    np.testing.assert_array_equal(wave, ref)


def test_ogg_and_mp3_files(tmp_path: Path) -> None:
    t = np.arange(24000) / 24000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for fmt, name in (("OGG", "a.ogg"), ("MP3", "a.mp3")):
        path = tmp_path / name
        try:
            sf.write(path, tone, 24000, format=fmt)
        except (sf.LibsndfileError, TypeError, ValueError):
            pytest.skip(f"libsndfile cannot write {fmt}")
        wave, sr = load_audio(str(path))
        assert sr == 24000 and wave.dtype == np.float32 and abs(len(wave) - 24000) < 2400
        assert 0.3 < np.abs(wave).max() < 0.7


def test_bytes_and_base64_equal_file(tmp_path: Path) -> None:
    data = _stereo_int16()
    path = tmp_path / "x.wav"
    sf.write(path, data, 22050, subtype="PCM_16")
    raw = path.read_bytes()
    ref, _ = load_audio(str(path))
    b64 = base64.b64encode(raw).decode()
    for source in (raw, bytearray(raw), memoryview(raw), b64, "data:audio/wav;base64," + b64):
        wave, sr = load_audio(source)
        assert sr == 22050
        np.testing.assert_array_equal(wave, ref)


def test_array_inputs() -> None:
    data = _stereo_int16()
    wave, sr = load_audio((data, 8000))
    expected = np.mean(data.astype(np.float32) / np.float32(32768.0), axis=-1).astype(np.float32)
    assert sr == 8000
    np.testing.assert_array_equal(wave, expected)
    np.testing.assert_array_equal(load_audio((data.T, 8000))[0], expected)  # (channels, frames)
    f64 = np.linspace(-0.5, 0.5, 100)
    np.testing.assert_array_equal(load_audio((f64, 24000))[0], f64.astype(np.float32))
    np.testing.assert_array_equal(load_audio((torch.from_numpy(f64), 24000))[0], f64.astype(np.float32))
    np.testing.assert_array_equal(
        load_audio((np.array([0, 128, 255], np.uint8), 8000))[0], [-1.0, 0.0, 127 / 128]
    )


@pytest.mark.parametrize(
    ("source", "kwargs", "code"),
    [
        ("/nonexistent/file.wav", {}, "audio_unreadable"),
        (b"RIFF not really a wav file at all" * 4, {}, "audio_unreadable"),
        (b"", {}, "audio_empty"),
        ("data:audio/wav;base64,!!!!", {}, "audio_unreadable"),
        ("https://example.com/a.wav", {}, "audio_bad_source"),
        (12345, {}, "audio_bad_source"),
        ((np.zeros(10, np.float32), 0), {}, "audio_bad_source"),
        ((np.zeros(10, np.float32), 22050.5), {}, "audio_bad_source"),
        ((np.zeros((2, 3, 4), np.float32), 16000), {}, "audio_bad_source"),
        ((np.zeros(10, np.complex64), 16000), {}, "audio_bad_source"),
        ((np.zeros(0, np.float32), 16000), {}, "audio_empty"),
        ((np.array([0.0, np.nan], np.float32), 16000), {}, "audio_not_finite"),
        ((np.zeros(16001, np.float32), 16000), {"max_seconds": 1.0}, "audio_too_long"),
    ],
)
def test_bad_input_codes(source: object, kwargs: dict, code: str) -> None:
    with pytest.raises(AudioError) as info:
        load_audio(source, **kwargs)  # type: ignore[arg-type]
    assert info.value.code == code
    assert isinstance(info.value, ValueError)


def test_file_limits(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros(16000 * 3, np.int16), 16000, subtype="PCM_16")
    raw = path.read_bytes()
    for source in (str(path), raw, base64.b64encode(raw).decode()):
        with pytest.raises(AudioError) as info:
            load_audio(source, max_seconds=2.0)
        assert info.value.code == "audio_too_long"
        with pytest.raises(AudioError) as info:
            load_audio(source, max_bytes=1000)
        assert info.value.code == "audio_too_large"
    wave, _ = load_audio(str(path), max_seconds=None, max_bytes=None)
    assert wave.shape == (48000,)


def _lcg_wave(n: int, seed: int) -> np.ndarray:
    # Same integer-only generator as tests/reference/make_speaker_goldens.py.
    state = (np.arange(n, dtype=np.int64) + seed) * 1103515245 + 12345
    return ((state // 65536) % 65536 - 32768).astype(np.float32) / np.float32(32768.0)


def test_resample_bit_exact_vs_librosa(parity: tuple[dict, dict]) -> None:
    tensors, meta = parity
    for case, (length, digest) in json.loads(meta["resample_sha256"]).items():
        sr_from, sr_to, n = (int(v) for v in case.split("-"))
        y = resample(_lcg_wave(n, sr_from), sr_from, sr_to)
        assert y.dtype == np.float32 and y.shape == (length,), case
        assert length == int(np.ceil(n * sr_to / sr_from))
        assert hashlib.sha256(y.tobytes()).hexdigest() == digest, case
    clip16 = tensors["clip16_int16"].numpy().astype(np.float32) / np.float32(32768.0)
    np.testing.assert_array_equal(resample(clip16, 16000, 24000), tensors["wave16_resampled24"].numpy())


def test_resample_same_rate_and_bad_input() -> None:
    x = np.ones(10, np.float32)
    assert resample(x, 24000, 24000) is x
    with pytest.raises(AudioError):
        resample(np.ones((2, 10), np.float32), 16000, 24000)
    with pytest.raises(AudioError):
        resample(x, 0, 24000)


def test_to_pcm16_rule() -> None:
    ints = np.arange(-32768, 32768, dtype=np.int16)
    assert to_pcm16(ints.astype(np.float32) / np.float32(32768.0)) == ints.astype("<i2").tobytes()
    x = np.array([1.0, -1.0, 1.5, -1.5, np.nan, np.inf, -np.inf, 0.5 / 32768, 1.5 / 32768], np.float32)
    out = np.frombuffer(to_pcm16(x), dtype="<i2")
    np.testing.assert_array_equal(out, [32767, -32768, 32767, -32768, 0, 32767, -32768, 0, 2])
    assert to_pcm16(torch.tensor([0.25, -0.25])) == np.array([8192, -8192], "<i2").tobytes()
