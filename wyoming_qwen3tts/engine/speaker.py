"""ECAPA-TDNN speaker encoder (Base models) and its exact mel front-end.

Re-implements ``Qwen3TTSSpeakerEncoder``, ``mel_spectrogram`` and
``Qwen3TTSForConditionalGeneration.extract_speaker_embedding`` of qwen-tts 0.1.1 (MODEL_NOTES section 13)
without librosa: the slaney mel filterbank is computed here with the same numpy operations as
``librosa.filters.mel`` (bit-identical float32 result). Parameter names equal the checkpoint keys under
``speaker_encoder.`` so a strict load works.

The mel spectrogram is always computed on CPU in float32, as the reference does (its input comes from
numpy); only the network runs in the module's dtype/device.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.audio import SAMPLE_RATE
from .audio import AudioError

_LOGGER = logging.getLogger(__name__)

N_FFT = 1024
HOP_SIZE = 256
WIN_SIZE = 1024
N_MELS = 128
FMIN = 0
FMAX = 12000

# Qwen3TTSSpeakerEncoderConfig defaults (configuration_qwen3_tts.py); released configs set only
# enc_dim and sample_rate.
_DEFAULTS = {
    "mel_dim": 128,
    "enc_dim": 1024,
    "enc_channels": [512, 512, 512, 512, 1536],
    "enc_kernel_sizes": [5, 3, 3, 3, 1],
    "enc_dilations": [1, 2, 3, 4, 1],
    "enc_attention_channels": 128,
    "enc_res2net_scale": 8,
    "enc_se_channels": 128,
    "sample_rate": 24000,
}


def _hz_to_mel_slaney(frequencies: Any) -> np.ndarray:
    # Same expression order as librosa.hz_to_mel(htk=False) so the float64 values are identical.
    frequencies = np.asanyarray(frequencies)
    f_sp = 200.0 / 3
    mels = (frequencies - 0.0) / f_sp
    min_log_hz = 1000.0
    min_log_mel = (min_log_hz - 0.0) / f_sp
    logstep = np.log(6.4) / 27.0
    if frequencies.ndim:
        log_t = frequencies >= min_log_hz
        mels[log_t] = min_log_mel + np.log(frequencies[log_t] / min_log_hz) / logstep
    elif frequencies >= min_log_hz:
        mels = min_log_mel + np.log(frequencies / min_log_hz) / logstep
    return mels


def _mel_to_hz_slaney(mels: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    freqs = 0.0 + f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = (min_log_hz - 0.0) / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = mels >= min_log_mel
    freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    return freqs


@functools.lru_cache(maxsize=4)
def slaney_mel_filterbank(
    sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN, fmax: float = FMAX
) -> np.ndarray:
    """Slaney-scale, slaney-normalised triangular filterbank ``[n_mels, n_fft // 2 + 1]`` (float32).

    Triangles between consecutive mel-spaced edge frequencies (linear below 1 kHz, logarithmic above),
    each scaled by ``2 / (f[i + 2] - f[i])``; equals ``librosa.filters.mel(sr=..., n_fft=..., n_mels=...,
    fmin=..., fmax=...)`` bit for bit (weights rounded to float32 before the norm, as librosa does).
    Callers must not modify the returned (cached) array.
    """
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_edges = np.linspace(_hz_to_mel_slaney(fmin), _hz_to_mel_slaney(fmax), n_mels + 2)
    mel_f = _mel_to_hz_slaney(mel_edges)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    weights = np.zeros((n_mels, n_fft // 2 + 1), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, np.newaxis]
    weights.setflags(write=False)
    return weights


def mel_spectrogram(wave: torch.Tensor) -> torch.Tensor:
    """Log-mel spectrogram ``[B, 128, frames]`` of 24 kHz audio ``[B, T]`` (or ``[T]``), fp32 on CPU.

    Exactly the reference ``mel_spectrogram(y, 1024, 128, 24000, 256, 1024, 0, 12000)``: reflect pad 384
    per side, STFT with a periodic Hann window and ``center=False``, magnitude ``sqrt(re^2 + im^2 + 1e-9)``,
    slaney mel projection, ``log(clamp(x, 1e-5))``.
    """
    y = wave.detach().to(device="cpu", dtype=torch.float32)
    if y.dim() == 1:
        y = y.unsqueeze(0)
    lo, hi = float(y.min()), float(y.max())
    if lo < -1.0 or hi > 1.0:  # the reference prints this warning too
        _LOGGER.warning("Speaker encoder input exceeds [-1, 1] (min %.3f, max %.3f)", lo, hi)
    mel_basis = torch.from_numpy(np.array(slaney_mel_filterbank())).float()
    window = torch.hann_window(WIN_SIZE)
    padding = (N_FFT - HOP_SIZE) // 2
    y = F.pad(y.unsqueeze(1), (padding, padding), mode="reflect").squeeze(1)
    spec = torch.stft(
        y,
        N_FFT,
        hop_length=HOP_SIZE,
        win_length=WIN_SIZE,
        window=window,
        center=False,
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    spec = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-9)
    return torch.log(torch.clamp(torch.matmul(mel_basis, spec), min=1e-5))


class TimeDelayNetBlock(nn.Module):
    """Conv1d ("same", reflect padding) + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            dilation=dilation,
            padding="same",
            padding_mode="reflect",
        )
        self.activation = nn.ReLU()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.activation(self.conv(hidden))


class Res2NetBlock(nn.Module):
    """Hierarchical split convolution: chunk i (i >= 2) sees chunk i plus the output for chunk i - 1."""

    def __init__(
        self, in_channels: int, out_channels: int, scale: int, kernel_size: int, dilation: int
    ) -> None:
        super().__init__()
        self.scale = scale
        self.blocks = nn.ModuleList(
            TimeDelayNetBlock(in_channels // scale, out_channels // scale, kernel_size, dilation)
            for _ in range(scale - 1)
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        outputs: List[torch.Tensor] = []
        out = hidden
        for i, part in enumerate(torch.chunk(hidden, self.scale, dim=1)):
            if i == 0:
                out = part
            elif i == 1:
                out = self.blocks[0](part)
            else:
                out = self.blocks[i - 1](part + out)
            outputs.append(out)
        return torch.cat(outputs, dim=1)


class SqueezeExcitationBlock(nn.Module):
    def __init__(self, in_channels: int, se_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(
            in_channels, se_channels, kernel_size=1, padding="same", padding_mode="reflect"
        )
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv1d(
            se_channels, out_channels, kernel_size=1, padding="same", padding_mode="reflect"
        )
        self.sigmoid = nn.Sigmoid()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        gate = self.sigmoid(self.conv2(self.relu(self.conv1(hidden.mean(dim=2, keepdim=True)))))
        return hidden * gate


class SqueezeExcitationRes2NetBlock(nn.Module):
    """1x1 TDNN -> Res2Net -> 1x1 TDNN -> SE, plus the residual."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        scale: int,
        se_channels: int,
        kernel_size: int,
        dilation: int,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.tdnn1 = TimeDelayNetBlock(in_channels, out_channels, 1, 1)
        self.res2net_block = Res2NetBlock(out_channels, out_channels, scale, kernel_size, dilation)
        self.tdnn2 = TimeDelayNetBlock(out_channels, out_channels, 1, 1)
        self.se_block = SqueezeExcitationBlock(out_channels, se_channels, out_channels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out = self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(hidden))))
        return out + hidden


class AttentiveStatisticsPooling(nn.Module):
    """Attention-weighted mean and std over time, with global mean/std as attention context."""

    def __init__(self, channels: int, attention_channels: int) -> None:
        super().__init__()
        self.eps = 1e-12
        self.tdnn = TimeDelayNetBlock(channels * 3, attention_channels, 1, 1)
        self.tanh = nn.Tanh()
        self.conv = nn.Conv1d(
            attention_channels, channels, kernel_size=1, padding="same", padding_mode="reflect"
        )

    def _statistics(self, x: torch.Tensor, weights: torch.Tensor) -> tuple:
        mean = (weights * x).sum(2)
        std = torch.sqrt((weights * (x - mean.unsqueeze(2)).pow(2)).sum(2).clamp(self.eps))
        return mean, std

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        length = hidden.shape[-1]
        # Full-length mask as in the reference: uniform weights mask / mask.sum() (same rounding).
        mask = torch.ones(hidden.shape[0], 1, length, dtype=hidden.dtype, device=hidden.device)
        mean, std = self._statistics(hidden, mask / mask.sum(dim=2, keepdim=True))
        context = torch.cat(
            [hidden, mean.unsqueeze(2).repeat(1, 1, length), std.unsqueeze(2).repeat(1, 1, length)], dim=1
        )
        attention = F.softmax(self.conv(self.tanh(self.tdnn(context))), dim=2)
        mean, std = self._statistics(hidden, attention)
        return torch.cat((mean, std), dim=1).unsqueeze(2)


class SpeakerEncoder(nn.Module):
    """ECAPA-TDNN x-vector extractor (``Qwen3TTSSpeakerEncoder``); keys match ``speaker_encoder.*``."""

    def __init__(
        self,
        mel_dim: int = 128,
        enc_dim: int = 1024,
        enc_channels: Sequence[int] = (512, 512, 512, 512, 1536),
        enc_kernel_sizes: Sequence[int] = (5, 3, 3, 3, 1),
        enc_dilations: Sequence[int] = (1, 2, 3, 4, 1),
        enc_attention_channels: int = 128,
        enc_res2net_scale: int = 8,
        enc_se_channels: int = 128,
        sample_rate: int = 24000,
    ) -> None:
        super().__init__()
        if not len(enc_channels) == len(enc_kernel_sizes) == len(enc_dilations):
            raise ValueError("enc_channels, enc_kernel_sizes and enc_dilations should have same length")
        if mel_dim != N_MELS or sample_rate != SAMPLE_RATE:
            raise ValueError(f"speaker encoder front-end is fixed at {N_MELS} mels / {SAMPLE_RATE} Hz")
        self.mel_dim = mel_dim
        self.enc_dim = enc_dim
        self.sample_rate = sample_rate
        channels = list(enc_channels)
        self.blocks = nn.ModuleList(
            [TimeDelayNetBlock(mel_dim, channels[0], enc_kernel_sizes[0], enc_dilations[0])]
        )
        for i in range(1, len(channels) - 1):
            self.blocks.append(
                SqueezeExcitationRes2NetBlock(
                    channels[i - 1],
                    channels[i],
                    enc_res2net_scale,
                    enc_se_channels,
                    enc_kernel_sizes[i],
                    enc_dilations[i],
                )
            )
        self.mfa = TimeDelayNetBlock(channels[-1], channels[-1], enc_kernel_sizes[-1], enc_dilations[-1])
        self.asp = AttentiveStatisticsPooling(channels[-1], enc_attention_channels)
        self.fc = nn.Conv1d(channels[-1] * 2, enc_dim, kernel_size=1, padding="same", padding_mode="reflect")
        # Reflect padding needs more frames than the widest one-sided pad of any time convolution.
        self.min_frames = 1 + max(math.ceil(d * (k - 1) / 2) for k, d in zip(enc_kernel_sizes, enc_dilations))

    @classmethod
    def from_config(cls, config: Optional[dict] = None) -> "SpeakerEncoder":
        """Build from the ``speaker_encoder_config`` dict of config.json (reference defaults fill gaps)."""
        merged = dict(_DEFAULTS)
        merged.update({k: v for k, v in (config or {}).items() if k in _DEFAULTS})
        return cls(**merged)  # type: ignore[arg-type]  # the defaults table holds the right types

    @property
    def min_samples(self) -> int:
        """Shortest 24 kHz input ``embed`` accepts (frames = (T + 768 - 1024) // 256 + 1)."""
        return self.min_frames * HOP_SIZE

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """``mels [B, frames, mel_dim]`` -> x-vectors ``[B, enc_dim]``."""
        hidden = mels.transpose(1, 2)
        outputs = []
        for layer in self.blocks:
            hidden = layer(hidden)
            outputs.append(hidden)
        hidden = self.mfa(torch.cat(outputs[1:], dim=1))
        return self.fc(self.asp(hidden)).squeeze(-1)

    @torch.inference_mode()
    def embed(self, wave_24k: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:
        """x-vector ``[enc_dim]`` of one mono 24 kHz waveform, in the module's dtype and device.

        Same as the reference ``extract_speaker_embedding``: fp32 CPU mel, then cast to the module.
        Raises ``AudioError("audio_too_short")`` when the clip is too short for the reflect paddings.
        """
        if isinstance(wave_24k, np.ndarray):  # copy: avoids torch's warning on read-only arrays
            wave = torch.from_numpy(np.array(wave_24k, dtype=np.float32))
        else:
            wave = torch.as_tensor(wave_24k).detach().to(torch.float32)
        if wave.dim() != 1:
            raise ValueError(f"embed expects a 1-D waveform, got shape {tuple(wave.shape)}")
        if wave.shape[0] < self.min_samples:
            raise AudioError(
                "audio_too_short",
                f"reference audio has {wave.shape[0]} samples; the speaker encoder needs {self.min_samples}",
            )
        mels = mel_spectrogram(wave.unsqueeze(0)).transpose(1, 2)
        param = next(self.parameters())
        return self(mels.to(param.device).to(param.dtype))[0]
