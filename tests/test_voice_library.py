"""Voice library on disk: add/list/get/remove, validation, atomic layout, corrupted profiles, flat import."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wyoming_qwen3tts.voices.library import (
    AUDIO_FILE,
    META_FILE,
    VoiceLibrary,
    VoiceLibraryError,
    VoiceProfile,
    normalize_name,
    sha256_file,
)
from wyoming_qwen3tts.voices.validation import count_words


def noise(seconds: float, sr: int, amp: float = 0.2, seed: int = 0, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (int(seconds * sr),) if channels == 1 else (int(seconds * sr), channels)
    return (amp * rng.standard_normal(shape)).clip(-0.9, 0.9).astype(np.float32)


def write_clip(path: Path, seconds: float = 4.0, sr: int = 16000, **kwargs) -> Path:
    sf.write(path, noise(seconds, sr, **kwargs), sr)
    return path


@pytest.fixture
def lib(tmp_path: Path) -> VoiceLibrary:
    return VoiceLibrary(tmp_path / "voices")


@pytest.mark.parametrize(
    "ext,sr,channels",
    [
        ("wav", 16000, 1),
        ("flac", 22050, 1),
        ("ogg", 44100, 2),
        ("mp3", 44100, 1),
        ("wav", 48000, 2),
        ("wav", 24000, 1),
    ],
)
def test_add_clone_formats_and_rates(
    lib: VoiceLibrary, tmp_path: Path, ext: str, sr: int, channels: int
) -> None:
    src = write_clip(tmp_path / f"ref.{ext}", 4.0, sr, channels=channels)
    profile = lib.add_clone("Alice", src, "one two three four five six seven eight nine ten", "de-DE")
    assert profile.name == "alice" and profile.display_name == "Alice"
    assert profile.kind == "clone" and profile.mode == "icl" and profile.language == "german"
    assert profile.audio_path == lib.root / "alice" / AUDIO_FILE
    info = sf.info(str(profile.audio_path))
    assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
    assert abs(info.frames - 4.0 * 24000) <= 2
    assert profile.sha256 == sha256_file(profile.audio_path)
    meta = json.loads((lib.root / "alice" / META_FILE).read_text())
    assert meta["kind"] == "clone" and meta["transcript"].startswith("one two") and meta["created"]
    assert meta["source_sha256"] == sha256_file(src)  # the upload as given, before normalising
    assert [p.name for p in lib.list()] == ["alice"]
    assert lib.get("ALICE") == profile
    assert not [p for p in lib.root.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_add_from_bytes_and_array(lib: VoiceLibrary, tmp_path: Path) -> None:
    src = write_clip(tmp_path / "ref.wav", 3.5, 22050)
    assert lib.add_clone("b1", src.read_bytes(), mode="xvector").mode == "xvector"
    assert lib.add_clone("b2", (noise(3.5, 8000), 8000), mode="xvector").audio_path.is_file()
    assert [p.name for p in lib.list()] == ["b1", "b2"]


def test_icl_without_transcript_falls_back(lib: VoiceLibrary, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING)
    profile = lib.add_clone("nox", write_clip(tmp_path / "r.wav"), transcript="  ", mode="icl")
    assert profile.mode == "xvector" and profile.transcript is None
    assert any("x-vector" in w for w in profile.warnings)
    assert "x-vector" in caplog.text


def test_warnings(lib: VoiceLibrary, tmp_path: Path) -> None:
    short = lib.add_clone("short", write_clip(tmp_path / "s.wav", 1.5), "hello there", mode="icl")
    assert any("clone best" in w for w in short.warnings)
    mismatch = lib.add_clone("long", write_clip(tmp_path / "l.wav", 10.0), "hi", mode="icl")
    assert any("does not match" in w for w in mismatch.warnings)
    chatty = lib.add_clone("chatty", write_clip(tmp_path / "c.wav", 4.0), "word " * 60, mode="icl")
    assert any("does not match" in w for w in chatty.warnings)
    ok = lib.add_clone("ok", write_clip(tmp_path / "ok.wav", 4.0), "这是一个测试句子好的", mode="icl")
    assert ok.warnings == ()
    clipped = np.sign(noise(4.0, 16000)) * 1.0
    sf.write(tmp_path / "clip.wav", clipped, 16000, subtype="FLOAT")
    assert any(
        "clipped" in w for w in lib.add_clone("clipped", tmp_path / "clip.wav", mode="xvector").warnings
    )
    quiet = lib.add_clone("quiet", write_clip(tmp_path / "q.wav", 4.0, amp=0.0005), mode="xvector")
    assert any("nearly silent" in w for w in quiet.warnings)


@pytest.mark.parametrize(
    "seconds,code", [(0.5, "audio-too-short"), (61.0, "audio-too-long"), (0.0, "audio-unreadable")]
)
def test_duration_limits(lib: VoiceLibrary, tmp_path: Path, seconds: float, code: str) -> None:
    src = tmp_path / "x.wav"
    sf.write(src, noise(seconds, 8000), 8000)
    with pytest.raises(VoiceLibraryError) as err:
        lib.add_clone("x", src, mode="xvector")
    assert err.value.code == code
    assert lib.list() == []


def test_bad_audio(lib: VoiceLibrary, tmp_path: Path) -> None:
    (tmp_path / "bad.wav").write_bytes(b"not audio at all" * 10)
    with pytest.raises(VoiceLibraryError) as err:
        lib.add_clone("x", tmp_path / "bad.wav")
    assert err.value.code == "audio-unreadable" and "bad.wav" in str(err.value)
    with pytest.raises(VoiceLibraryError) as err:
        lib.add_clone("x", tmp_path / "missing.wav")
    assert err.value.code == "audio-unreadable"
    sf.write(tmp_path / "zero.wav", np.zeros(48000, np.float32), 16000)
    with pytest.raises(VoiceLibraryError) as err:
        lib.add_clone("x", tmp_path / "zero.wav")
    assert err.value.code == "audio-silent"


@pytest.mark.parametrize(
    "name",
    [
        "../evil",
        "..",
        ".",
        "a/b",
        "a\\b",
        "/abs",
        "",
        " ",
        "-dash",
        "_x",
        "x" * 65,
        "con",
        "LPT1",
        "a b",
        "a:b",
        "é",
        "a.b",
        "default",
    ],
)
def test_bad_names_rejected(lib: VoiceLibrary, tmp_path: Path, name: str) -> None:
    with pytest.raises(VoiceLibraryError) as err:
        lib.add_design(name, "calm")
    assert err.value.code == "invalid-name"
    with pytest.raises(VoiceLibraryError):
        lib.get(name)
    with pytest.raises(VoiceLibraryError):
        lib.remove(name)
    assert not (tmp_path / "evil").exists() and lib.list() == []


def test_name_normalisation() -> None:
    assert normalize_name(" My-Voice_2 ") == "my-voice_2"
    assert normalize_name("x" * 64) == "x" * 64


def test_design_and_remove(lib: VoiceLibrary) -> None:
    design = lib.add_design("Narrator", "  warm, low,\n calm narrator ", language="en")
    assert (design.kind, design.instruct, design.language, design.audio_path) == (
        "design",
        "warm, low, calm narrator",
        "english",
        None,
    )
    with pytest.raises(VoiceLibraryError) as err:
        lib.add_design("narrator", "other")
    assert err.value.code == "voice-exists"
    updated = lib.add_design("narrator", "bright", overwrite=True)
    assert updated.instruct == "bright" and updated.created == design.created
    with pytest.raises(VoiceLibraryError) as err:
        lib.add_design("empty", "   ")
    assert err.value.code == "invalid-argument"
    with pytest.raises(VoiceLibraryError) as err:
        lib.add_design("lang", "calm", language="klingon")
    assert err.value.code == "invalid-language"
    lib.remove("NARRATOR")
    assert lib.list() == [] and list(lib.root.iterdir()) == []
    with pytest.raises(VoiceLibraryError) as err:
        lib.remove("narrator")
    assert err.value.code == "voice-not-found"
    with pytest.raises(VoiceLibraryError) as err:
        lib.get("narrator")
    assert err.value.code == "voice-not-found"


def test_corrupted_profiles_skipped(lib: VoiceLibrary, tmp_path: Path, caplog) -> None:
    lib.add_design("good", "calm")
    lib.add_clone("clone", write_clip(tmp_path / "r.wav"), mode="xvector")
    root = lib.root
    (root / "badjson").mkdir()
    (root / "badjson" / META_FILE).write_text("{not json")
    (root / "nometa").mkdir()
    (root / "noaudio").mkdir()
    (root / "noaudio" / META_FILE).write_text(json.dumps({"kind": "clone", "mode": "xvector"}))
    (root / "badkind").mkdir()
    (root / "badkind" / META_FILE).write_text(json.dumps({"kind": "alien"}))
    (root / "list").mkdir()
    (root / "list" / META_FILE).write_text("[1, 2]")
    (root / "Bad Name").mkdir()
    half = root / ".tmp-half-abc123"  # a writer that died mid-way
    half.mkdir()
    (half / META_FILE).write_text('{"kind": "cl')
    (root / "stray.txt").write_text("not a voice")
    caplog.set_level(logging.WARNING)
    assert [p.name for p in lib.list()] == ["clone", "good"]
    for name in ("badjson", "nometa", "noaudio", "badkind", "list", "Bad Name"):
        assert name in caplog.text
    assert ".tmp-half" not in caplog.text
    caplog.clear()
    lib.list()
    assert caplog.text == ""  # warned once per state, not on every describe
    with pytest.raises(VoiceLibraryError) as err:
        lib.get("badjson")
    assert err.value.code == "voice-corrupt"
    lib.add_design("badjson", "fixed", overwrite=True)  # a broken profile can be replaced
    assert "badjson" in [p.name for p in lib.list()]


def test_flat_layout_import(lib: VoiceLibrary, tmp_path: Path) -> None:
    lib.root.mkdir(parents=True)
    write_clip(lib.root / "Bob.wav", 4.0, 22050)
    (lib.root / "Bob.txt").write_text("hello this is bob speaking now\n")
    write_clip(lib.root / "carol.flac", 4.0, 16000)
    write_clip(lib.root / "bad name.wav", 4.0, 16000)
    lib.add_design("carol", "a designed carol")  # a profile directory wins over a flat file
    voices = {p.name: p for p in lib.list()}
    assert sorted(voices) == ["bob", "carol"]
    bob = voices["bob"]
    assert bob.read_only and bob.mode == "icl" and bob.transcript == "hello this is bob speaking now"
    assert bob.display_name == "Bob" and bob.sha256 == sha256_file(lib.root / "Bob.wav")
    assert voices["carol"].kind == "design"
    assert lib.get("bob") == bob
    with pytest.raises(VoiceLibraryError) as err:
        lib.remove("bob")
    assert err.value.code == "voice-read-only"
    assert (lib.root / "Bob.wav").is_file()


def test_count_words() -> None:
    assert count_words("Hello, world! It's me.") == 5
    assert count_words("你好世界 ok") == 5
    assert count_words("こんにちは") == 5


def test_profile_is_typed() -> None:
    p = VoiceProfile(name="a", kind="design", display_name="A", instruct="x")
    assert p.directory is None and p.warnings == ()


def test_stale_temp_dirs_cleaned_and_permissions(lib: VoiceLibrary) -> None:
    lib.add_design("first", "calm")
    stale, fresh = lib.root / ".tmp-dead-123", lib.root / ".trash-fresh-456"
    stale.mkdir()
    fresh.mkdir()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    lib.add_design("second", "calm")
    assert not stale.exists() and fresh.exists()  # only old leftovers go; a fresh one may be in flight
    assert stat.S_IMODE((lib.root / "second").stat().st_mode) == 0o755
    assert stat.S_IMODE((lib.root / "second" / META_FILE).stat().st_mode) == 0o644


def test_concurrent_adds_same_name(lib: VoiceLibrary) -> None:
    def add(i: int) -> str:
        try:
            VoiceLibrary(lib.root).add_design("race", f"calm {i}")  # separate instances: no shared lock
            return "ok"
        except VoiceLibraryError as err:
            return err.code

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(add, range(8)))
    assert outcomes.count("ok") == 1 and set(outcomes) == {"ok", "voice-exists"}
    assert [p.name for p in lib.list()] == ["race"]
    assert not [p for p in lib.root.iterdir() if p.name.startswith(".")]
