"""Mimi speech encoder: 24 kHz reference audio -> 12.5 Hz codes for ICL voice cloning (Base models).

Mirrors ``Qwen3TTSTokenizerV2Encoder`` (a ``transformers.MimiModel`` whose ``upsample``,
``decoder_transformer`` and ``decoder`` are set to None) and the encode path of qwen-tts 0.1.1
(MODEL_NOTES section 12): EncodecFeatureExtractor (a single clip is not padded), the input cast to the
model dtype, ``MimiModel.encode`` with all ``num_quantizers`` of the config and no padding mask, codebooks
``[:16]`` kept, and ``ceil(valid_samples / 1920)`` frames kept. Module keys equal the checkpoint keys under
``encoder.`` (codebook buffers ``embed_sum``, ``cluster_usage``, ``initialized`` included).

dtype: encode runs in the module's dtype like the reference (it casts the input to the model dtype). We
recommend float32 (``load_into(..., dtype=torch.float32)``: bf16 checkpoint weights up-cast exactly). It
runs once per voice, off the hot path; bf16 CPU convolutions are slower, and bf16 rounding can flip
near-tie codebook choices. Use bf16 only to reproduce a reference run that loaded the codec in bf16.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Union

import numpy as np
import torch
from transformers import MimiConfig, MimiModel
from transformers.models.mimi.modeling_mimi import MimiEncoderOutput

from ..audio import AudioError

_LOGGER = logging.getLogger(__name__)

VALID_NUM_QUANTIZERS = 16  # speech_tokenizer config: encoder_valid_num_quantizers
DOWNSAMPLE_RATE = 1920  # encode_downsample_rate: samples per 12.5 Hz frame at 24 kHz


class SpeechEncoder(MimiModel):
    """Encoder half of Mimi; ``encode(wave_24k)`` returns ``LongTensor[frames, 16]`` reference codes.

    Subclasses ``MimiModel`` exactly like the reference so parameter and buffer names match the
    checkpoint. ``encode`` deliberately replaces ``MimiModel.encode`` (the HF method stays reachable as
    :meth:`mimi_encode`); ``forward`` (encode + decode) is unusable without a decoder.
    """

    def __init__(
        self,
        config: MimiConfig,
        valid_num_quantizers: int = VALID_NUM_QUANTIZERS,
        downsample_rate: int = DOWNSAMPLE_RATE,
    ) -> None:
        super().__init__(config)
        # The decoder half of MimiModel is never used: dropped (its weights are not even loaded).
        self.upsample = None
        self.decoder_transformer = None  # type: ignore[assignment]
        self.decoder = None
        if not 1 <= valid_num_quantizers <= config.num_quantizers:
            raise ValueError(
                f"valid_num_quantizers {valid_num_quantizers} > num_quantizers {config.num_quantizers}"
            )
        self.valid_num_quantizers = valid_num_quantizers
        self.downsample_rate = downsample_rate
        self.sample_rate = int(config.sampling_rate)

    @classmethod
    def from_config(
        cls,
        encoder_config: Optional[dict] = None,
        *,
        valid_num_quantizers: int = VALID_NUM_QUANTIZERS,
        downsample_rate: int = DOWNSAMPLE_RATE,
        attn_implementation: str = "sdpa",
    ) -> "SpeechEncoder":
        """Build from the ``encoder_config`` dict of speech_tokenizer/config.json (MimiConfig defaults).

        ``valid_num_quantizers`` / ``downsample_rate`` are the top-level ``encoder_valid_num_quantizers`` /
        ``encode_downsample_rate`` of that file. The reference loads with sdpa attention (the transformers
        default on CPU and GPU); eager differs only by float round-off.
        """
        cfg = MimiConfig(**dict(encoder_config or {}))  # exactly how the reference builds it
        cfg._attn_implementation = attn_implementation
        return cls(cfg, valid_num_quantizers=valid_num_quantizers, downsample_rate=downsample_rate)

    def mimi_encode(self, *args: Any, **kwargs: Any) -> Any:
        """The unmodified ``transformers.MimiModel.encode``."""
        return super().encode(*args, **kwargs)

    def _reset_codebook_cache(self) -> None:
        # MimiEuclideanCodebook caches embed_sum / cluster_usage on first use and never invalidates it;
        # weights loaded or cast after a first encode would otherwise be ignored. Recomputing is cheap.
        for module in self.quantizer.modules():
            if hasattr(module, "_embed"):
                module._embed = None  # type: ignore[assignment]

    @torch.inference_mode()
    def encode(self, wave_24k: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        """Codes ``LongTensor[ceil(T / 1920), valid_num_quantizers]`` of one mono 24 kHz clip.

        The codes are on the module's device. Only float32 input is bit-exact with the reference (which
        always feeds float32); other dtypes are rounded to float32 first.
        """
        if isinstance(wave_24k, np.ndarray):  # copy: avoids torch's warning on read-only arrays
            wave = torch.from_numpy(np.array(wave_24k, dtype=np.float32))
        else:
            wave = torch.as_tensor(wave_24k).detach().to(torch.float32)
        if wave.dim() != 1:
            raise ValueError(f"encode expects a 1-D waveform, got shape {tuple(wave.shape)}")
        n_samples = int(wave.shape[0])
        if n_samples == 0:
            raise AudioError("audio_empty", "reference audio has no samples")
        self._reset_codebook_cache()
        param = next(self.parameters())
        # Feature extractor output is float32 [1, 1, T]; the reference then casts it to the model dtype.
        inputs = wave.reshape(1, 1, n_samples).to(param.device).to(param.dtype)
        out = super().encode(
            inputs, padding_mask=None, num_quantizers=self.config.num_quantizers, return_dict=True
        )
        assert isinstance(out, MimiEncoderOutput) and out.audio_codes is not None
        codes = out.audio_codes[0, : self.valid_num_quantizers]  # [Q, frames]
        n_frames = -(-n_samples // self.downsample_rate)
        return codes[:, :n_frames].transpose(0, 1).contiguous()
