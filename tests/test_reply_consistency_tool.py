"""bench/reply_consistency.py: its pitch estimator on tones of known pitch, and one run on the tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.reply_consistency import SAMPLE_RATE, median_f0, run, semitones


@pytest.mark.parametrize("hz", [90.0, 150.0, 230.0])
def test_median_f0_finds_the_pitch_of_a_voice_like_tone(hz):
    t = np.arange(int(0.8 * SAMPLE_RATE)) / SAMPLE_RATE
    wave = sum(np.sin(2 * np.pi * hz * n * t) / n for n in range(1, 6)).astype(np.float32)  # harmonics
    wave *= 0.3 + 0.1 * np.sin(2 * np.pi * 3 * t)  # syllable-rate loudness changes
    assert median_f0(wave) == pytest.approx(hz, rel=0.03)
    assert semitones(200.0) == pytest.approx(12.0)


def test_median_f0_of_silence_and_noise_is_undefined():
    assert math.isnan(median_f0(np.zeros(SAMPLE_RATE, dtype=np.float32)))
    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32)
    assert math.isnan(median_f0(noise))


def test_one_run_on_the_tiny_model_reports_both_strategies(tiny_custom_voice):
    from wyoming_qwen3tts.engine import Engine, SamplingParams

    engine = Engine.load(str(tiny_custom_voice), device="cpu", dtype="float32", slots=1)
    try:
        speaker = engine.speakers[0]
        results = run(
            engine, speaker, "english", replies=1, seed0=7, sampling=SamplingParams(max_new_tokens=6)
        )  # tiny: no EOS
    finally:
        engine.close()
    assert set(results) == {"per-reply seed", "per-sentence seeds"}
    for row in results.values():
        assert math.isfinite(row["rms_db"]) and math.isfinite(row["chars_per_s"])
