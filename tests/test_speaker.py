"""ECAPA-TDNN speaker encoder and mel front-end vs the reference (goldens from make_speaker_goldens.py)."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open

from wyoming_qwen3tts.engine.audio import AudioError, load_audio, resample
from wyoming_qwen3tts.engine.checkpoint import load_into, load_state_dict
from wyoming_qwen3tts.engine.speaker import SpeakerEncoder, mel_spectrogram, slaney_mel_filterbank

GOLDEN = Path(__file__).parent / "goldens" / "speaker_parity.safetensors"


@pytest.fixture(scope="module")
def parity() -> tuple[dict, dict]:
    with safe_open(str(GOLDEN), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


@pytest.fixture(scope="module")
def encoder(parity: tuple[dict, dict]) -> SpeakerEncoder:
    tensors, meta = parity
    model = SpeakerEncoder.from_config(json.loads(meta["speaker_config"])).eval()
    model.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("spk.")}, strict=True)
    return model


def _clip(tensors: dict, name: str) -> np.ndarray:
    return tensors[name].numpy().astype(np.float32) / np.float32(32768.0)


def _slaney_reference(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Textbook slaney filterbank written independently (scalar math, float64)."""

    def hz_to_mel(f: float) -> float:
        return f / (200.0 / 3) if f < 1000.0 else 15.0 + math.log(f / 1000.0) / (math.log(6.4) / 27.0)

    def mel_to_hz(m: float) -> float:
        return m * (200.0 / 3) if m < 15.0 else 1000.0 * math.exp((math.log(6.4) / 27.0) * (m - 15.0))

    lo, hi = hz_to_mel(fmin), hz_to_mel(fmax)
    edges = [mel_to_hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    bank = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        left, center, right = edges[m], edges[m + 1], edges[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            tri = max(0.0, min((f - left) / (center - left), (right - f) / (right - center)))
            bank[m, k] = tri * 2.0 / (right - left)
    return bank


def test_mel_filterbank_equals_slaney_formula_and_librosa(parity: tuple[dict, dict]) -> None:
    bank = slaney_mel_filterbank(24000, 1024, 128, 0, 12000)
    assert bank.shape == (128, 513) and bank.dtype == np.float32
    assert (bank >= 0).all() and (bank.max(axis=1) > 0).all()
    np.testing.assert_allclose(bank, _slaney_reference(24000, 1024, 128, 0.0, 12000.0), rtol=0, atol=1e-7)
    # Bit-identical to librosa.filters.mel(sr=24000, n_fft=1024, n_mels=128, fmin=0, fmax=12000).
    assert hashlib.sha256(bank.tobytes()).hexdigest() == parity[1]["mel_filterbank_sha256"]


def _assert_log_mel_close(mel: torch.Tensor, golden: torch.Tensor) -> None:
    """Tolerance from the arithmetic, not from the kernels of the CPU the goldens were made on (CI and users
    run AVX2, AVX-512 and ARM, whose FFT and GEMM kernels sum in other orders). The FFT's rounding error is
    relative to the frame's energy, not to each bin's: compared as power (the log-mel is ln(max(power,
    1e-5))), within 1e-5 of the loudest bin; loud bins must also agree in the log domain."""
    power, ref = mel.exp(), golden.exp()
    peak = ref.max().item()
    assert (power - ref).abs().max().item() <= 1e-5 * peak, ((power - ref).abs().max().item(), peak)
    loud = ref > 1e-2 * peak  # there the same error is <= 1e-3 relative: 1e-4 in the log domain is ample
    assert (mel - golden)[loud].abs().max().item() <= 1e-4


def _assert_xvector_close(emb: torch.Tensor, golden: torch.Tensor) -> None:
    """x-vector vs golden: the mel differences above pass through ~40 conv layers with batch statistics
    (attentive pooling), which amplify them; bounded relative to the vector's scale, direction kept."""
    emb, golden = emb.float().flatten(), golden.float().flatten()
    diff = (emb - golden).abs().max().item()
    scale = golden.abs().max().item()
    cos = torch.nn.functional.cosine_similarity(emb, golden, dim=0).item()
    assert diff <= 1e-3 * scale and cos >= 0.99999, (diff, scale, cos)


def test_mel_spectrogram_matches_reference(parity: tuple[dict, dict]) -> None:
    tensors, _ = parity
    mel = mel_spectrogram(torch.from_numpy(_clip(tensors, "clip24_int16")))
    assert mel.shape == (1, 128, 93) and mel.dtype == torch.float32
    _assert_log_mel_close(mel[0], tensors["mel24"])


def test_mel_warns_out_of_range(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="wyoming_qwen3tts.engine.speaker"):
        mel_spectrogram(torch.full((2000,), 1.5))
    assert "exceeds [-1, 1]" in caplog.text


def test_parameter_names_match_reference_layout() -> None:
    model = SpeakerEncoder.from_config({"enc_dim": 2048, "sample_rate": 24000})
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["blocks.0.conv.weight"] == (512, 128, 5)
    assert shapes["blocks.3.res2net_block.blocks.6.conv.weight"] == (64, 64, 3)
    assert shapes["blocks.1.se_block.conv1.weight"] == (128, 512, 1)
    assert shapes["mfa.conv.weight"] == (1536, 1536, 1)
    assert shapes["asp.tdnn.conv.weight"] == (128, 4608, 1)
    assert shapes["asp.conv.weight"] == (1536, 128, 1)
    assert shapes["fc.weight"] == (2048, 3072, 1)
    assert len(shapes) == 76
    assert model.min_samples == 1280


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_xvector_parity(encoder: SpeakerEncoder, parity: tuple[dict, dict], dtype: torch.dtype) -> None:
    tensors, _ = parity
    tag = "fp32" if dtype == torch.float32 else "bf16"
    model = copy.deepcopy(encoder).to(dtype)  # a cast round trip would lose the fp32 weights
    wave16_24 = resample(_clip(tensors, "clip16_int16"), 16000, 24000)
    for name, wave in (("xvec24", _clip(tensors, "clip24_int16")), ("xvec16", wave16_24)):
        emb = model.embed(wave)
        assert emb.shape == (64,) and emb.dtype == dtype
        golden = tensors[f"{name}_{tag}"]
        if dtype == torch.float32:
            tol = 1e-5
        else:
            # The bf16 goldens come from one CPU's kernels; others (AVX2 emulating bf16, AVX-512 BF16, ARM)
            # round differently inside the network. Bound: 4 units in the last place of bf16 (8 significant
            # bits) at the embedding's largest magnitude, and the direction of the fp32 golden kept.
            ulp = 2.0 ** (math.floor(math.log2(golden.abs().max().item())) - 7)
            tol = 4 * ulp
            cos = torch.nn.functional.cosine_similarity(emb.float(), tensors[f"{name}_fp32"], dim=0)
            assert cos.item() >= 0.999, (name, cos.item())
        diff = (emb.float() - golden).abs().max().item()
        assert diff <= tol, (name, diff, tol)


def test_xvector_from_real_16k_file(
    encoder: SpeakerEncoder, parity: tuple[dict, dict], tmp_path: Path
) -> None:
    tensors, _ = parity
    path = tmp_path / "ref16k.wav"
    sf.write(path, tensors["clip16_int16"].numpy(), 16000, subtype="PCM_16")
    wave, sr = load_audio(str(path))
    emb = encoder.embed(torch.from_numpy(resample(wave, sr, 24000)))
    assert (emb - tensors["xvec16_fp32"]).abs().max().item() <= 1e-5


def test_too_short_and_bad_shape(encoder: SpeakerEncoder) -> None:
    assert encoder.embed(np.zeros(encoder.min_samples, np.float32)).shape == (64,)
    with pytest.raises(AudioError) as info:
        encoder.embed(np.zeros(encoder.min_samples - 1, np.float32))
    assert info.value.code == "audio_too_short"
    with pytest.raises(ValueError):
        encoder.embed(np.zeros((2, 4000), np.float32))


def _base_prompt_clip(data: dict, tag: str) -> np.ndarray:
    # The goldens do not store the clip: tests/reference/make_goldens.py reference_audio(2.0, sr, seed).
    sr, seed = data["case"]["clips"][tag]
    return np.random.default_rng(seed).normal(0.0, 0.1, int(2.0 * sr)).astype(np.float32)


@pytest.mark.parametrize(("tag", "sr"), [("24k", 24000), ("16k", 16000)])
def test_base_prompt_golden(tiny_base: Path, golden: Any, tag: str, sr: int) -> None:
    """Tiny Base checkpoint vs create_voice_clone_prompt goldens: resampling, mel and x-vector."""
    data = golden("base_prompt")
    config = json.loads((tiny_base / "config.json").read_text())
    model = SpeakerEncoder.from_config(config["speaker_encoder_config"]).eval()
    load_into(model, load_state_dict(tiny_base), "speaker_encoder.", tiny_base / "model.safetensors")
    wave, rate = load_audio((_base_prompt_clip(data, tag), sr))
    wave24 = resample(wave, rate, 24000)
    if sr != 24000:
        np.testing.assert_array_equal(wave24, data[f"resampled_{tag}"])
    mel = mel_spectrogram(torch.from_numpy(wave24)).transpose(1, 2)
    _assert_log_mel_close(mel, torch.from_numpy(data[f"mel_{tag}"]))
    emb = model.embed(wave24)
    golden = torch.from_numpy(data[f"xvector_{tag}"])
    _assert_xvector_close(emb, golden)
