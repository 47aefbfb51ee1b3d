"""Unit-level hardening checks (issue 17) that need no server process: damaged prompt caches are rebuilt,
reference audio is bounded by its decoded size, uploads are decoded a few at a time, and an overwrite cut
short by a crash is recovered when the library opens. (The server-level cases: test_adversarial.py.)"""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.test_voice_prompts import CountingEngine, assert_same, clip, engine  # noqa: F401 (fixture)
from wyoming_qwen3tts.engine import Engine
from wyoming_qwen3tts.engine.audio import MAX_DECODED_SAMPLES, AudioError, load_audio
from wyoming_qwen3tts.voices import reference, store
from wyoming_qwen3tts.voices.library import VoiceLibrary, VoiceLibraryError
from wyoming_qwen3tts.voices.prompts import PromptCache, reference_wave

MODEL = "Qwen/Qwen3-TTS-12Hz-0.6B-Base"


def _damage_tensor_bytes(path: Path, how: str) -> None:
    """Keeps the safetensors header intact and spoils the tensor bytes behind it."""
    raw = bytearray(path.read_bytes())
    start = 8 + struct.unpack("<Q", raw[:8])[0]
    if how == "nan":
        raw[start:] = b"\xff" * (len(raw) - start)
    else:  # finite but different values: only the checksum can tell
        raw[start] ^= 0x01
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["nan", "flip"])
def test_a_damaged_prompt_cache_is_rebuilt(tmp_path: Path, engine: Engine, how: str) -> None:  # noqa: F811
    library = VoiceLibrary(tmp_path / "voices")
    profile = library.add_clone("v", clip(tmp_path / "a.wav"), "one two three four five six seven")
    counting = CountingEngine(engine)
    first = PromptCache(library).get(profile, counting, MODEL)
    path = PromptCache(library).path(profile, MODEL)
    _damage_tensor_bytes(path, how)
    again = PromptCache(library).get(profile, counting, MODEL)  # a restart: memory is empty
    assert len(counting.calls) == 2  # recomputed, not served from the damaged file
    assert_same(first, again)
    assert len(counting.calls) == 2 and PromptCache(library).get(profile, counting, MODEL) is not None
    assert len(counting.calls) == 2  # the rewritten file is good again


def test_decoded_size_and_sample_rate_are_bounded(tmp_path: Path) -> None:
    fast = tmp_path / "fast.flac"
    sf.write(fast, np.full(40_000, 100, dtype=np.int16), 384_000, format="FLAC")
    with pytest.raises(AudioError) as err:
        load_audio(str(fast))
    assert err.value.code == "audio_bad_source" and "384000" in err.value.message
    wide = tmp_path / "wide.flac"  # within the duration limit, over the decoded-size limit
    frames = MAX_DECODED_SAMPLES // 8 + 1000
    sf.write(wide, np.zeros((frames, 8), dtype=np.int16), 192_000, format="FLAC")
    with pytest.raises(AudioError) as err:
        load_audio(str(wide), max_seconds=None)
    assert err.value.code == "audio_too_large"


def test_block_decoding_matches_a_whole_array_downmix(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    wave = (0.3 * rng.standard_normal((200_000, 3))).astype(np.float32)
    path = tmp_path / "three.wav"
    sf.write(path, wave, 48_000, subtype="FLOAT")
    mono, sr = load_audio(str(path))
    assert sr == 48_000 and np.array_equal(mono, np.mean(wave, axis=-1).astype(np.float32))


def test_audio_errors_name_no_object_addresses() -> None:
    with pytest.raises(AudioError) as err:
        load_audio(b"RIFF0000WAVEgarbage" * 10)
    assert "0x" not in err.value.message and "object at" not in err.value.message


def test_a_long_plain_library_file_is_refused_not_decoded(tmp_path: Path) -> None:
    root = tmp_path / "voices"
    root.mkdir()
    sf.write(root / "long.wav", np.zeros(16_000 * 90, dtype=np.int16), 16_000)  # 90 s
    profile = VoiceLibrary(root).get("long")
    with pytest.raises(AudioError) as err:
        reference_wave(profile)
    assert err.value.code == "audio_too_long"


def test_reference_uploads_are_decoded_a_few_at_a_time(tmp_path: Path, monkeypatch) -> None:
    entered, release = threading.Semaphore(0), threading.Event()

    def slow_load(*args, **kwargs):
        entered.release()
        release.wait(30)
        return np.full(48_000, 0.1, dtype=np.float32), 24_000

    monkeypatch.setattr(reference, "load_audio", slow_load)
    threads = [threading.Thread(target=reference.decode_reference_audio, args=(b"x",)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for _ in range(reference.UPLOAD_SLOTS):
        assert entered.acquire(timeout=30)
    with pytest.raises(VoiceLibraryError) as err:
        reference.decode_reference_audio(b"x")
    assert err.value.code == "server-busy"
    release.set()
    for thread in threads:
        thread.join(30)
    wave, _ = reference.decode_reference_audio(b"x")  # free again
    assert wave.shape == (48_000,)


def test_an_interrupted_overwrite_is_recovered_at_start_up(tmp_path: Path) -> None:
    root = tmp_path / "voices"
    library = VoiceLibrary(root)
    library.add_design("anna", "A calm voice.")
    library.add_design("bert", "A bright voice.")
    (root / "anna").rename(root / f"{store.OLD_PREFIX}anna-0badc0de")  # crashed between the two renames
    library.add_design("bert", "A new bright voice.", overwrite=True)  # an overwrite that completed ...
    (root / f"{store.OLD_PREFIX}bert-12345678").mkdir()  # ... but left its parked copy behind
    reopened = VoiceLibrary(root)
    assert [p.name for p in reopened.list()] == ["anna", "bert"]
    assert json.loads((root / "anna" / "meta.json").read_text())["instruct"] == "A calm voice."
    assert reopened.get("bert").instruct == "A new bright voice."
    assert not list(root.glob(".old-*"))


def test_quota_on_library_size(tmp_path: Path) -> None:
    library = VoiceLibrary(tmp_path / "voices", max_bytes=1)
    library.add_design("first", "A calm voice.")  # the library was empty
    with pytest.raises(VoiceLibraryError) as err:
        library.add_design("second", "A calm voice.")
    assert err.value.code == "voice-quota"


def test_a_prompt_file_without_checksum_must_hold_finite_values(tmp_path: Path) -> None:
    from wyoming_qwen3tts.voices.prompts import _damage

    assert _damage(torch.tensor([1.0, float("nan")]), None, None) == "speaker embedding is not finite"
    assert _damage(torch.ones(3), torch.tensor([[1, -4]]), None) == "reference codes are invalid"
    assert _damage(torch.ones(3), torch.tensor([[1, 4]]), None) is None


def test_an_upload_raced_by_a_delete_still_reports_its_success(tmp_path: Path, monkeypatch) -> None:
    """The saved profile is read back before the library lock is released: a DELETE that comes right after
    waits for it, instead of turning the upload's answer into voice-corrupt (HTTP 422)."""
    library = VoiceLibrary(tmp_path / "voices")
    placed, go_on = threading.Event(), threading.Event()
    real_put = store.put_in_place

    def slow_put(*args, **kwargs):
        real_put(*args, **kwargs)
        placed.set()
        go_on.wait(30)

    monkeypatch.setattr(store, "put_in_place", slow_put)
    result: dict = {}
    adder = threading.Thread(target=lambda: result.update(p=library.add_design("race", "A calm voice.")))
    adder.start()
    assert placed.wait(30)
    remover = threading.Thread(target=library.remove, args=("race",))
    remover.start()
    go_on.set()
    adder.join(30)
    remover.join(30)
    assert result["p"].name == "race" and result["p"].instruct == "A calm voice."
    assert library.list() == []
