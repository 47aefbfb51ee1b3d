"""`voices import DIR` as a user runs it (a real process, real files): the OpenAI-compatible Qwen3-TTS
server's voice library layout and the flat <name>.wav + <name>.txt layout, broken profiles included;
idempotent."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from wyoming_qwen3tts.voices.importer import voice_name
from wyoming_qwen3tts.voices.library import VoiceLibrary

ROOT = Path(__file__).resolve().parents[1]
TRANSCRIPT = "Hello there, this is a short test of my voice."


def _voices(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WYOMING_QWEN3TTS_")}
    environ.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "wyoming_qwen3tts", "voices", "--data-dir", str(cwd / "data"), *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _clip(path: Path, sr: int = 16000, seconds: float = 3.0, pitch: float = 180.0, channels: int = 1) -> Path:
    t = np.arange(int(sr * seconds)) / sr
    wave = 0.3 * np.sin(2 * np.pi * pitch * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    sf.write(path, np.stack([wave] * channels, axis=1).astype(np.float32), sr)
    return path


def _profile(root: Path, folder: str, meta: dict | str | None, clip: str | None = None, **clip_args) -> None:
    directory = root / "profiles" / folder
    directory.mkdir(parents=True)
    if meta is not None:
        text = meta if isinstance(meta, str) else json.dumps(meta)
        (directory / "meta.json").write_text(text, encoding="utf-8")
    if clip:
        _clip(directory / clip, **clip_args)


def _meta(name: str, filename: str, **extra) -> dict:
    meta = {
        "name": name,
        "profile_id": name.lower(),
        "ref_audio_filename": filename,
        "ref_text": TRANSCRIPT,
        "x_vector_only_mode": False,
        "language": "English",
        "task_type": "Base",
    }
    return {**meta, **extra}


def _library_dir(tmp_path: Path) -> Path:
    """A voice_library as the other server writes it, with broken profiles, plus flat clips."""
    lib = tmp_path / "voice_library"
    _profile(lib, "a1b2", _meta("Mario", "reference.wav"), "reference.wav", sr=44100, channels=2)
    _profile(
        lib,
        "c3d4",
        _meta("Señora Voz", "sample.flac", ref_text="", x_vector_only_mode=True, language="Auto"),
        "sample.flac",
        pitch=220.0,
    )
    _profile(
        lib,
        "design1",
        _meta("Narrator", "preview.wav", task_type="VoiceDesign", language="xx"),
        "preview.wav",
    )
    _profile(lib, "broken-json", "{not json", "ref.wav")
    _profile(lib, "missing-file", _meta("Ghost", "gone.wav"))
    _profile(lib, "escape", _meta("Escape", "../../secret.wav"))
    _profile(lib, "too-short", _meta("Short", "ref.wav"), "ref.wav", seconds=0.3)
    _profile(lib, "cloud", {"name": "Cloudy", "voice_id": "qwen-tts-vc-123"})
    _profile(lib, "no-meta", None)
    _clip(lib / "anna.wav", pitch=160.0)
    (lib / "anna.txt").write_text(TRANSCRIPT + "\n", encoding="utf-8")
    _clip(lib / "bob.wav", pitch=140.0)
    return lib


def test_voice_names_of_other_servers() -> None:
    assert voice_name("Mario") == "mario"
    assert voice_name("Señora Voz") == "senora-voz"
    assert voice_name("  my_voice #2 ") == "my_voice-2"


def test_import_reports_each_profile_and_is_idempotent(tmp_path: Path) -> None:
    source = _library_dir(tmp_path)
    proc = _voices(tmp_path, "import", str(source))
    assert proc.returncode == 1, proc.stderr  # some profiles are broken: reported, not fatal
    rows = [re.split(r"\s{2,}", line, maxsplit=2) for line in proc.stdout.splitlines()]
    lines = {row[2].split(":")[0]: "  ".join(row) for row in rows}
    status = {src: line.split()[0] for src, line in lines.items()}
    assert status == {
        "profiles/a1b2": "imported",
        "profiles/c3d4": "imported",
        "profiles/design1": "imported",
        "profiles/broken-json": "failed",
        "profiles/missing-file": "failed",
        "profiles/escape": "failed",
        "profiles/too-short": "failed",
        "profiles/cloud": "failed",
        "profiles/no-meta": "skipped",
        "anna.wav": "imported",
        "bob.wav": "imported",
    }, proc.stdout
    assert "meta.json is unreadable" in lines["profiles/broken-json"]
    assert "gone.wav is missing" in lines["profiles/missing-file"]
    assert "outside the profile folder" in lines["profiles/escape"]
    assert "audio-too-short" in lines["profiles/too-short"]
    assert "voice_id" in lines["profiles/cloud"]
    assert "task_type VoiceDesign" in proc.stderr and "unknown language 'xx'" in proc.stderr
    assert "5 imported, 1 skipped, 5 failed" in proc.stderr

    library = VoiceLibrary(tmp_path / "data" / "voices")
    voices = {p.name: p for p in library.list()}
    assert set(voices) == {"mario", "senora-voz", "narrator", "anna", "bob"}
    mario = voices["mario"]
    assert (mario.mode, mario.transcript, mario.language, mario.display_name) == (
        "icl",
        TRANSCRIPT,
        "english",
        "Mario",
    )
    assert sf.info(str(mario.audio_path)).samplerate == 24000
    assert voices["senora-voz"].mode == "xvector" and voices["senora-voz"].language is None
    assert voices["anna"].mode == "icl" and voices["bob"].mode == "xvector"
    assert not [p for p in library.root.iterdir() if p.name.startswith(".")]  # no temp folders left

    again = _voices(tmp_path, "import", str(source), "--json")
    outcomes = {o["source"]: o for o in json.loads(again.stdout)}
    assert {o["status"] for o in outcomes.values() if o["voice"]} == {"skipped", "failed"}
    assert outcomes["profiles/a1b2"]["reason"] == "already imported"
    assert outcomes["anna.wav"] == {
        "source": "anna.wav",
        "voice": "clone:anna",
        "status": "skipped",
        "reason": "already imported",
        "warnings": [],
    }
    assert "0 imported" in again.stderr

    (source / "anna.txt").write_text("Completely different words now.", encoding="utf-8")
    changed = _voices(tmp_path, "import", str(source))
    assert "a different voice named 'anna' exists" in changed.stdout
    assert VoiceLibrary(library.root).get("anna").transcript == TRANSCRIPT
    replaced = _voices(tmp_path, "import", str(source), "--overwrite")
    assert "imported  clone:anna" in replaced.stdout
    assert VoiceLibrary(library.root).get("anna").transcript == "Completely different words now."


def test_import_follows_no_link_out_and_reads_only_bounded_regular_files(tmp_path: Path) -> None:
    """A transcript linked to a file outside the directory is not read (nor served later); a meta.json
    linked to /dev/zero fails that profile alone; the good voices beside them are imported."""
    from wyoming_qwen3tts.voices.importer import import_voices

    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET host data", encoding="utf-8")
    lib = tmp_path / "voice_library"
    lib.mkdir()
    _clip(lib / "leaky.wav", pitch=150.0)
    (lib / "leaky.txt").symlink_to(secret)  # the transcript: a link out of the directory
    _clip(lib / "good.wav", pitch=170.0)
    (lib / "good.txt").write_text(TRANSCRIPT, encoding="utf-8")
    _clip(tmp_path / "outside.wav", pitch=190.0)
    (lib / "linked.wav").symlink_to(tmp_path / "outside.wav")  # the clip itself links out
    _profile(lib, "zero", None)
    (lib / "profiles" / "zero" / "meta.json").symlink_to("/dev/zero")
    _profile(lib, "fifo", None)
    os.mkfifo(lib / "profiles" / "fifo" / "meta.json")  # inside, but reading it would block forever
    _profile(lib, "huge", "{" + " " * (70 * 1024) + "}", "ref.wav")  # over the meta.json size cap
    _profile(lib, "fine", _meta("Fine", "ref.wav"), "ref.wav", pitch=210.0)
    _profile(tmp_path / "elsewhere_root", "p", _meta("Away", "ref.wav"), "ref.wav")
    os.symlink(tmp_path / "elsewhere_root" / "profiles" / "p", lib / "profiles" / "away")

    library = VoiceLibrary(tmp_path / "data" / "voices")
    outcomes = {o.source: o for o in import_voices(library, lib)}
    status = {source: o.status for source, o in outcomes.items()}
    assert status == {
        "profiles/away": "failed",
        "profiles/fifo": "failed",
        "profiles/fine": "imported",
        "profiles/huge": "failed",
        "profiles/zero": "failed",
        "good.wav": "imported",
        "leaky.wav": "failed",
        "linked.wav": "failed",
    }, {s: o.reason for s, o in outcomes.items()}
    assert "links out" in outcomes["leaky.wav"].reason and "links out" in outcomes["linked.wav"].reason
    assert "links out" in outcomes["profiles/zero"].reason
    assert "not a regular file" in outcomes["profiles/fifo"].reason
    assert "larger than" in outcomes["profiles/huge"].reason
    assert "links out" in outcomes["profiles/away"].reason
    stored = {p.name: p for p in library.list()}
    assert set(stored) == {"fine", "good"}
    assert all("SECRET" not in (p.transcript or "") for p in stored.values())
