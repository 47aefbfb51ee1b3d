"""Write tests/goldens/speaker_parity.safetensors from the official qwen-tts 0.1.1 code paths.

Run in the reference environment (never from the tests):

    /work/refvenv/bin/python tests/reference/make_speaker_goldens.py

What it stores (all tiny, < 1 MB, deterministic):
* random weights of a tiny reference ``Qwen3TTSSpeakerEncoder`` (``spk.*``) and of a tiny reference
  ``Qwen3TTSTokenizerV2Encoder`` with random codebooks (``enc.*``, keys as under ``encoder.``);
* two int16 test clips (24 kHz and 16 kHz) so inputs are bit-exact everywhere;
* reference outputs: ``mel_spectrogram`` (24 kHz clip), ``librosa.resample`` 16k -> 24k,
  ``extract_speaker_embedding`` (24 kHz clip and the resampled 16 kHz clip; fp32 and bf16) and the
  ``Qwen3TTSTokenizer.encode`` codes (24 kHz and 16 kHz input; fp32 and bf16);
* metadata: sha256 of ``librosa.filters.mel(sr=24000, n_fft=1024, n_mels=128, fmin=0, fmax=12000)`` and of
  ``librosa.resample`` outputs for several rates/lengths on integer-generated inputs, plus the configs.
"""

from __future__ import annotations

import hashlib
import json
import types
from pathlib import Path

import librosa
import numpy as np
import torch
from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSSpeakerEncoderConfig
from qwen_tts.core.models.modeling_qwen3_tts import (
    Qwen3TTSForConditionalGeneration,
    Qwen3TTSSpeakerEncoder,
    mel_spectrogram,
)
from qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2 import Qwen3TTSTokenizerV2Config
from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import Qwen3TTSTokenizerV2Model
from qwen_tts.inference.qwen3_tts_tokenizer import Qwen3TTSTokenizer
from safetensors.torch import save_file
from transformers import EncodecFeatureExtractor

OUT = Path(__file__).resolve().parents[1] / "goldens" / "speaker_parity.safetensors"

SPEAKER_CONFIG = {
    "enc_dim": 64,
    "enc_channels": [32, 32, 32, 32, 96],
    "enc_attention_channels": 16,
    "enc_se_channels": 16,
    "sample_rate": 24000,
}
ENCODER_CONFIG = {
    "hidden_size": 32,
    "num_filters": 4,
    "num_hidden_layers": 1,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "num_quantizers": 16,
    "codebook_size": 64,
    "codebook_dim": 16,
    "vector_quantization_hidden_dimension": 16,
    "upsample_groups": 32,
    "_frame_rate": 12.5,
}
DECODER_CONFIG = {
    "codebook_size": 64,
    "hidden_size": 32,
    "latent_dim": 32,
    "codebook_dim": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "decoder_dim": 32,
}
# (sr_from, sr_to, n_samples) cases for the resampling hashes; odd lengths exercise fix_length.
RESAMPLE_CASES = [
    (16000, 24000, 12001),
    (44100, 24000, 4411),
    (22050, 24000, 2205),
    (8000, 24000, 801),
    (48000, 24000, 4801),
    (24000, 16000, 2401),
    (24000, 24000, 100),
]


def lcg_wave(n: int, seed: int) -> np.ndarray:
    """Integer-generated pseudo-noise in [-1, 1): identical on every machine (no libm involved)."""
    state = (np.arange(n, dtype=np.int64) + seed) * 1103515245 + 12345
    return ((state // 65536) % 65536 - 32768).astype(np.float32) / np.float32(32768.0)


def make_clip(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * 220.0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + rng.normal(0, 0.05, n)
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


def randomize_(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Scale-aware random values for every float tensor (params and buffers), sorted-name order."""
    with torch.no_grad():
        for name, tensor in sorted(module.state_dict(keep_vars=True).items()):
            if not tensor.is_floating_point():
                continue
            if name.endswith("cluster_usage"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 1.5 + 0.5)
            elif name.endswith("initialized"):
                tensor.fill_(1.0)
            elif name.endswith("embed_sum"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen))
            elif tensor.dim() >= 2:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) / fan_in**0.5)
            elif name.endswith("bias"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.05)
            else:  # norms and layer scales
                tensor.copy_(1.0 + 0.1 * torch.randn(tensor.shape, generator=gen))


def main() -> None:
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(20240601)
    rng = np.random.default_rng(7)
    out: dict[str, torch.Tensor] = {}

    clip24 = make_clip(24000, 24000, rng)
    clip16 = make_clip(12000, 16000, rng)
    out["clip24_int16"] = torch.from_numpy(clip24)
    out["clip16_int16"] = torch.from_numpy(clip16)
    wave24 = clip24.astype(np.float32) / np.float32(32768.0)
    wave16 = clip16.astype(np.float32) / np.float32(32768.0)

    # Front-end and resampling.
    out["mel24"] = mel_spectrogram(
        torch.from_numpy(wave24).unsqueeze(0), 1024, 128, 24000, 256, 1024, 0, 12000
    )[0].contiguous()
    wave16_24 = librosa.resample(y=wave16, orig_sr=16000, target_sr=24000)
    out["wave16_resampled24"] = torch.from_numpy(wave16_24)

    # Speaker encoder through the reference extract_speaker_embedding.
    spk = Qwen3TTSSpeakerEncoder(Qwen3TTSSpeakerEncoderConfig(**SPEAKER_CONFIG)).eval()
    randomize_(spk, gen)
    for name, tensor in spk.state_dict().items():
        out[f"spk.{name}"] = tensor.contiguous()
    for dtype, tag in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        spk.to(dtype)
        host = types.SimpleNamespace(speaker_encoder=spk, device=torch.device("cpu"), dtype=dtype)
        for wave, name in (
            (wave24, "xvec24"),
            (wave16_24, "xvec16"),
        ):
            emb = Qwen3TTSForConditionalGeneration.extract_speaker_embedding(host, audio=wave, sr=24000)
            out[f"{name}_{tag}"] = emb.float().contiguous()
    spk.float()

    # Mimi encoder through the reference Qwen3TTSTokenizer.encode (feature extractor, resampling, trim).
    cfg = Qwen3TTSTokenizerV2Config(encoder_config=ENCODER_CONFIG, decoder_config=DECODER_CONFIG)
    model = Qwen3TTSTokenizerV2Model(cfg).eval()
    randomize_(model.encoder, gen)
    for name, tensor in model.encoder.state_dict().items():
        out[f"enc.{name}"] = tensor.contiguous()
    tok = Qwen3TTSTokenizer()
    tok.feature_extractor = EncodecFeatureExtractor(
        feature_size=1, sampling_rate=24000, padding_value=0.0, return_attention_mask=True
    )
    tok.model, tok.config, tok.device = model, cfg, torch.device("cpu")
    for dtype, tag in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        model.to(dtype)
        for enc in model.encoder.quantizer.modules():  # reset the codebook cache after the cast
            if hasattr(enc, "_embed"):
                enc._embed = None
        out[f"codes24_{tag}"] = tok.encode(wave24, sr=24000).audio_codes[0].contiguous()
        out[f"codes16_{tag}"] = tok.encode(wave16, sr=16000).audio_codes[0].contiguous()
        out[f"codes24_short_{tag}"] = tok.encode(wave24[:5000], sr=24000).audio_codes[0].contiguous()
    distinct = int(torch.unique(out["codes24_fp32"]).numel())

    mel = librosa.filters.mel(sr=24000, n_fft=1024, n_mels=128, fmin=0, fmax=12000)
    resample_hashes = {}
    for sr_from, sr_to, n in RESAMPLE_CASES:
        y = librosa.resample(y=lcg_wave(n, sr_from), orig_sr=sr_from, target_sr=sr_to)
        resample_hashes[f"{sr_from}-{sr_to}-{n}"] = [int(y.shape[0]), hashlib.sha256(y.tobytes()).hexdigest()]
    meta = {
        "speaker_config": json.dumps(SPEAKER_CONFIG),
        "encoder_config": json.dumps(ENCODER_CONFIG),
        "mel_filterbank_sha256": hashlib.sha256(
            np.ascontiguousarray(mel, dtype=np.float32).tobytes()
        ).hexdigest(),
        "resample_sha256": json.dumps(resample_hashes),
        "librosa": librosa.__version__,
        "torch": torch.__version__,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(OUT), metadata=meta)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes); distinct codes in codes24_fp32: {distinct}")
    for key in ("codes24_fp32", "codes16_fp32", "codes24_short_fp32"):
        print(key, tuple(out[key].shape))
    print("bf16 codes equal fp32:", bool(torch.equal(out["codes24_fp32"], out["codes24_bf16"])))


if __name__ == "__main__":
    main()
