"""`python -m wyoming_qwen3tts voices ...` as a user runs it: real processes, real files in temp dirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
TRANSCRIPT = "Hello there, this is a short test of my voice."


def _voices(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WYOMING_QWEN3TTS_")}
    environ.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "wyoming_qwen3tts", "voices", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _clip(path: Path, sr: int, seconds: float = 4.0) -> Path:
    t = np.arange(int(sr * seconds)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    sf.write(path, wave.astype(np.float32), sr)
    return path


def _one_error_line(proc: subprocess.CompletedProcess, code: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"voices: error: {code}: "), proc.stderr
    assert "Traceback" not in proc.stderr


def test_add_list_design_remove(tmp_path: Path) -> None:
    wav = _clip(tmp_path / "ref16k.wav", 16000)
    flac = _clip(tmp_path / "ref44k.flac", 44100)
    proc = _voices(tmp_path, "add", "alice", "--audio", str(wav), "--text", TRANSCRIPT, "--language", "de")
    assert proc.returncode == 0, proc.stderr
    assert "'alice'" in proc.stdout and "icl" in proc.stdout
    proc = _voices(
        tmp_path, "add", "Bob", "--audio", str(flac), "--mode", "xvector", "--display-name", "Bobby"
    )
    assert proc.returncode == 0, proc.stderr
    info = sf.info(tmp_path / "data" / "voices" / "bob" / "reference.wav")
    assert (info.samplerate, info.channels) == (24000, 1)
    proc = _voices(tmp_path, "design", "narrator", "--instruct", "warm, low, calm narrator")
    assert proc.returncode == 0, proc.stderr

    table = _voices(tmp_path, "list")
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.strip().splitlines()]
    assert rows[0][:4] == ["NAME", "KIND", "LANGUAGE", "MODE"]
    assert rows[1] == ["alice", "clone", "german", "icl", "alice"]
    assert rows[2] == ["bob", "clone", "auto", "xvector", "Bobby"]
    assert rows[3] == ["narrator", "design", "auto", "-", "narrator"]

    listed = json.loads(_voices(tmp_path, "list", "--json").stdout)
    assert [v["name"] for v in listed] == ["alice", "bob", "narrator"]
    assert listed[0]["transcript"] == TRANSCRIPT and listed[2]["instruct"] == "warm, low, calm narrator"

    proc = _voices(tmp_path, "remove", "bob")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "data" / "voices" / "bob").exists()
    _one_error_line(_voices(tmp_path, "remove", "bob"), "voice-not-found")
    # --data-dir (before or after the command) and $WYOMING_QWEN3TTS_ARGS choose another library.
    proc = _voices(tmp_path, "design", "x", "--instruct", "deep", "--data-dir", "other")
    assert proc.returncode == 0 and (tmp_path / "other" / "voices" / "x" / "meta.json").is_file()
    env = {"WYOMING_QWEN3TTS_ARGS": "--data-dir other"}
    assert [v["name"] for v in json.loads(_voices(tmp_path, "list", "--json", env=env).stdout)] == ["x"]


def test_errors_are_one_line(tmp_path: Path) -> None:
    wav = _clip(tmp_path / "ref.wav", 16000)
    _one_error_line(_voices(tmp_path, "add", "../evil", "--audio", str(wav)), "invalid-name")
    _one_error_line(
        _voices(tmp_path, "add", "ok", "--audio", str(tmp_path / "missing.wav")), "audio-unreadable"
    )
    _one_error_line(
        _voices(tmp_path, "design", "d", "--instruct", "x", "--language", "klingon"), "invalid-language"
    )
    off = {"WYOMING_QWEN3TTS_ARGS": "--clone-model none --design-model none"}
    _one_error_line(_voices(tmp_path, "rebuild", env=off), "no-model")
    _one_error_line(_voices(tmp_path, "design", "d", "--instruct", "x", "--freeze", env=off), "no-model")
    assert not (tmp_path / "data" / "voices" / "ok").exists()


def test_duplicate_needs_force(tmp_path: Path) -> None:
    wav = _clip(tmp_path / "ref.wav", 16000)
    assert _voices(tmp_path, "add", "carol", "--audio", str(wav)).returncode == 0
    _one_error_line(
        _voices(tmp_path, "add", "carol", "--audio", str(wav), "--text", TRANSCRIPT), "voice-exists"
    )
    proc = _voices(tmp_path, "add", "carol", "--audio", str(wav), "--text", TRANSCRIPT, "--force")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "data" / "voices" / "carol" / "meta.json").read_text())
    assert meta["mode"] == "icl" and meta["transcript"] == TRANSCRIPT


def test_add_without_transcript_warns(tmp_path: Path) -> None:
    wav = _clip(tmp_path / "short.wav", 16000, seconds=1.5)
    proc = _voices(tmp_path, "add", "dave", "--audio", str(wav))
    assert proc.returncode == 0, proc.stderr
    assert "xvector" in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2 and len(proc.stderr.strip().splitlines()) == 2  # not logged twice


def test_rebuild_writes_prompt_cache(tmp_path: Path, tiny_base: Path) -> None:
    wav = _clip(tmp_path / "ref.wav", 16000, seconds=3.0)
    assert _voices(tmp_path, "add", "erin", "--audio", str(wav), "--text", TRANSCRIPT).returncode == 0
    assert _voices(tmp_path, "design", "zed", "--instruct", "bright").returncode == 0
    args = ("--model", str(tiny_base), "--device", "cpu", "--dtype", "float32", "--local-files-only")
    proc = _voices(tmp_path, "rebuild", *args)
    assert proc.returncode == 0, proc.stderr
    assert "[1/1] erin" in proc.stdout
    assert list((tmp_path / "data" / "voices" / "erin").glob("prompt.*.safetensors"))
    assert not list((tmp_path / "data" / "voices" / "zed").glob("prompt.*"))
    # The model can come from the server settings (clone_model in the YAML config) too.
    (tmp_path / "cfg.yaml").write_text(f"clone_model: {tiny_base}\ndevice: cpu\n")
    proc = _voices(tmp_path, "--config", "cfg.yaml", "rebuild", "erin")
    assert proc.returncode == 0, proc.stderr


def test_design_freeze_stores_a_clone_voice(tmp_path: Path, tiny_voice_design: Path) -> None:
    args = ("--model", str(tiny_voice_design), "--device", "cpu", "--dtype", "float32", "--local-files-only")
    proc = _voices(
        tmp_path,
        "design",
        "Frosty",
        "--instruct",
        "A  crisp, bright voice.",
        "--language",
        "en",
        "--freeze",
        *args,
    )
    assert proc.returncode == 0, proc.stderr
    assert "frozen" in proc.stdout
    voice = tmp_path / "data" / "voices" / "frosty"
    meta = json.loads((voice / "meta.json").read_text())
    assert meta["kind"] == "clone" and meta["mode"] == "icl" and meta["instruct"] == "A crisp, bright voice."
    assert meta["transcript"].startswith("The quick brown fox") and meta["language"] == "english"
    info = sf.info(voice / "reference.wav")
    assert info.samplerate == 24000 and info.channels == 1 and 1.0 <= info.duration <= 60.0
    # The same seed speaks the same clip: freezing is reproducible.
    again = _voices(
        tmp_path,
        "design",
        "frosty",
        "--instruct",
        "A crisp, bright voice.",
        "--language",
        "en",
        "--freeze",
        "--force",
        *args,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads((voice / "meta.json").read_text())["sha256"] == meta["sha256"]
    _one_error_line(
        _voices(tmp_path, "design", "frosty", "--instruct", "x", "--freeze", *args), "voice-exists"
    )
