"""`python -m wyoming_qwen3tts synth` as a user runs it: a real process, real files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _synth(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wyoming_qwen3tts", "synth", "--device", "cpu", "--threads", "2", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_synth_custom_voice_writes_wav_and_codes(tiny_custom_voice, tmp_path):
    out, codes = tmp_path / "out.wav", tmp_path / "codes.npy"
    proc = _synth(
        "--model",
        str(tiny_custom_voice),
        "--text",
        "Hello there.",
        "--speaker",
        "Ryan",
        "--language",
        "English",
        "--greedy",
        "--max-new-tokens",
        "11",
        "--out",
        str(out),
        "--codes-out",
        str(codes),
    )
    assert proc.returncode == 0, proc.stderr
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24000)
        assert w.getnframes() == 10 * 1920
    arr = np.load(codes)
    assert arr.shape == (10, 16) and arr.dtype == np.int64
    assert "x real time" in proc.stderr and "TRUNCATED" in proc.stderr


def test_synth_clone_from_reference_clip(tiny_base, tmp_path):
    import soundfile

    clip = tmp_path / "ref.flac"
    rng = np.random.default_rng(0)
    soundfile.write(clip, (0.1 * rng.standard_normal(32000)).astype(np.float32), 16000)
    out = tmp_path / "clone.wav"
    proc = _synth(
        "--model",
        str(tiny_base),
        "--text",
        "Cloned.",
        "--ref-audio",
        str(clip),
        "--ref-text",
        "A reference transcript.",
        "--greedy",
        "--max-frames",
        "4",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    with wave.open(str(out)) as w:
        assert w.getnframes() == 4 * 1920


def test_synth_voice_design_seeded_is_reproducible(tiny_voice_design, tmp_path):
    outs = []
    for name in ("a", "b"):
        codes = tmp_path / f"{name}.npy"
        proc = _synth(
            "--model",
            str(tiny_voice_design),
            "--text",
            "Designed.",
            "--instruct",
            "A bright voice.",
            "--seed",
            "5",
            "--max-frames",
            "5",
            "--out",
            str(tmp_path / f"{name}.wav"),
            "--codes-out",
            str(codes),
        )
        assert proc.returncode == 0, proc.stderr
        outs.append(np.load(codes))
    assert np.array_equal(outs[0], outs[1])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--speaker", "nobody"], "valid speakers"),
        (["--speaker", "ryan", "--language", "elvish"], "valid languages"),
    ],
)
def test_synth_bad_input_is_one_clear_line(tiny_custom_voice, tmp_path, args, message):
    proc = _synth("--model", str(tiny_custom_voice), "--text", "Hi.", *args, "--out", str(tmp_path / "x.wav"))
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.wav").exists()


def test_synth_unknown_model_type_names_the_file(tiny_custom_voice, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_custom_voice, broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["tts_model_type"] = "karaoke"
    (broken / "config.json").write_text(json.dumps(cfg))
    proc = _synth("--model", str(broken), "--text", "Hi.", "--out", str(tmp_path / "x.wav"))
    assert proc.returncode == 2
    assert "config.json" in proc.stderr and "karaoke" in proc.stderr


def test_plain_entry_point_help_mentions_synth(tmp_path):
    # Without `synth` the entry point is the server (tests/test_settings.py); its help points at `synth`.
    proc = subprocess.run(
        [sys.executable, "-m", "wyoming_qwen3tts", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "synth --help" in proc.stdout and "--uri" in proc.stdout
