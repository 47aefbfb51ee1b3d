"""Voice-prompt cache: computed once per (voice, model), persisted across restarts, rebuilt on change."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open

from wyoming_qwen3tts.engine import Engine, VoicePrompt
from wyoming_qwen3tts.voices.library import VoiceLibrary, VoiceLibraryError
from wyoming_qwen3tts.voices.prompts import ICL_SILENCE_SECONDS, PromptCache, reference_wave, safe_model_id

MODEL = "Qwen/Qwen3-TTS-12Hz-0.6B-Base"


class CountingEngine:
    """Wraps an engine and counts create_voice_prompt calls (i.e. encoder runs)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.calls: list[dict[str, Any]] = []

    def create_voice_prompt(
        self, audio: Any, ref_text: Any = None, x_vector_only: bool = False
    ) -> VoicePrompt:
        self.calls.append({"audio": audio, "ref_text": ref_text, "x_vector_only": x_vector_only})
        return self.engine.create_voice_prompt(audio, ref_text=ref_text, x_vector_only=x_vector_only)


@pytest.fixture(scope="module")
def engine(tiny_base: Path) -> Iterator[Engine]:
    eng = Engine.load(tiny_base, device="cpu", dtype="float32", slots=1)
    yield eng
    eng.close()


def clip(path: Path, seconds: float = 3.0, sr: int = 22050, seed: int = 0) -> Path:
    wave = (0.2 * np.random.default_rng(seed).standard_normal(int(seconds * sr))).clip(-0.9, 0.9)
    sf.write(path, wave.astype(np.float32), sr)
    return path


@pytest.fixture
def lib(tmp_path: Path) -> VoiceLibrary:
    library = VoiceLibrary(tmp_path / "voices")
    library.add_clone("icl", clip(tmp_path / "a.wav"), "one two three four five six seven", mode="icl")
    library.add_clone("xv", clip(tmp_path / "b.wav", seed=1), mode="xvector")
    return library


def assert_same(a: VoicePrompt, b: VoicePrompt) -> None:
    assert torch.equal(a.speaker_embedding.cpu(), b.speaker_embedding.cpu())
    assert (a.ref_codes is None) == (b.ref_codes is None)
    if a.ref_codes is not None:
        assert torch.equal(a.ref_codes.cpu(), b.ref_codes.cpu())
    assert a.ref_text == b.ref_text


def test_cached_once_and_after_restart(lib: VoiceLibrary, engine: Engine) -> None:
    counting = CountingEngine(engine)
    cache = PromptCache(lib)
    icl, xv = lib.get("icl"), lib.get("xv")
    p1 = cache.get(icl, counting, MODEL)
    assert p1.icl and p1.ref_text == "one two three four five six seven"
    assert p1.ref_codes.dtype == torch.long and p1.ref_codes.shape[1] == 16
    x1 = cache.get(xv, counting, MODEL)
    assert not x1.icl and x1.ref_codes is None
    assert len(counting.calls) == 2
    assert counting.calls[0]["x_vector_only"] is False and counting.calls[1]["x_vector_only"] is True
    assert cache.get(icl, counting, MODEL) is p1 and len(counting.calls) == 2  # memory hit
    path = cache.path(icl, MODEL)
    assert path == lib.root / "icl" / f"prompt.{safe_model_id(MODEL)}.safetensors" and path.is_file()
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["model_id"] == MODEL and meta["audio_sha256"] == icl.sha256 and meta["mode"] == "icl"
    # Restart: a new cache on the same directory loads from disk without running the encoders.
    restarted = PromptCache(VoiceLibrary(lib.root))
    counting.calls.clear()
    assert_same(restarted.get(lib.get("icl"), counting, MODEL), p1)
    assert_same(restarted.get(lib.get("xv"), counting, MODEL), x1)
    assert counting.calls == []
    # Another model gets its own prompt file.
    restarted.get(icl, counting, "other/model")
    assert len(counting.calls) == 1 and cache.path(icl, "other/model").is_file()


def test_cached_equals_fresh_with_icl_silence(lib: VoiceLibrary, engine: Engine) -> None:
    icl = lib.get("icl")
    cached = PromptCache(lib).get(icl, engine, MODEL)
    wave = reference_wave(icl)
    stored, sr = sf.read(str(icl.audio_path), dtype="float32")
    assert sr == 24000 and wave.shape[0] == stored.shape[0] + int(ICL_SILENCE_SECONDS * 24000)
    assert np.all(wave[stored.shape[0] :] == 0)
    fresh = engine.create_voice_prompt((wave, 24000), ref_text=icl.transcript)
    assert_same(cached, fresh)
    on_disk = PromptCache(lib).get(icl, CountingEngine(engine), MODEL)
    assert_same(on_disk, fresh)


def test_rebuilt_when_audio_changes_or_corrupt(lib: VoiceLibrary, engine: Engine, tmp_path: Path) -> None:
    counting = CountingEngine(engine)
    cache = PromptCache(lib)
    old = cache.get(lib.get("xv"), counting, MODEL)
    # Replace the audio (through the library: a new profile directory) -> recomputed.
    lib.add_clone("xv", clip(tmp_path / "c.wav", seed=7), mode="xvector", overwrite=True)
    new = cache.get(lib.get("xv"), counting, MODEL)
    assert len(counting.calls) == 2 and not torch.equal(old.speaker_embedding, new.speaker_embedding)
    # Audio edited by hand behind the library's back: the sha256 check catches it, in memory and on disk.
    profile = lib.get("xv")
    sf.write(profile.audio_path, np.zeros(24000 * 3, np.float32) + 0.1, 24000, subtype="PCM_16")
    cache.get(profile, counting, MODEL)
    assert len(counting.calls) == 3
    PromptCache(lib).get(profile, counting, MODEL)
    assert len(counting.calls) == 3
    # A corrupt cache file is rebuilt, not fatal.
    path = cache.path(profile, MODEL)
    path.write_bytes(b"\x00garbage")
    assert_same(PromptCache(lib).get(profile, counting, MODEL), cache.get(profile, counting, MODEL))
    assert len(counting.calls) == 4
    with safe_open(str(path), framework="pt") as fh:
        assert "speaker_embedding" in fh.keys()


def test_rebuild_and_flat_voices(lib: VoiceLibrary, engine: Engine) -> None:
    clip(lib.root / "flat.wav", seed=3)
    (lib.root / "flat.txt").write_text("a flat voice with text")
    lib.add_design("designed", "calm")
    counting = CountingEngine(engine)
    cache = PromptCache(lib)
    seen: list[tuple[int, int, str]] = []
    results = cache.rebuild(lib.list(), counting, MODEL, progress=lambda d, t, p: seen.append((d, t, p.name)))
    assert results == {"flat": None, "icl": None, "xv": None}
    assert seen == [(1, 3, "flat"), (2, 3, "icl"), (3, 3, "xv")]
    assert len(counting.calls) == 3
    flat = lib.get("flat")
    assert cache.path(flat, MODEL).parent == lib.root / ".prompts" / "flat"
    assert [p.name for p in lib.list()] == ["designed", "flat", "icl", "xv"]  # the cache dir is no voice
    cache.rebuild([flat], counting, MODEL)  # rebuild always recomputes
    assert len(counting.calls) == 4
    with pytest.raises(VoiceLibraryError):
        cache.get(lib.get("designed"), counting, MODEL)


def test_safe_model_id() -> None:
    assert safe_model_id("tiny-base") == "tiny-base"
    assert safe_model_id("Qwen/Qwen3-TTS").startswith("Qwen_Qwen3-TTS-")
    assert safe_model_id("a/b") != safe_model_id("a_b")
    assert "/" not in safe_model_id("../../etc/passwd")
