"""Reference-audio input: decode, downmix, resample and PCM conversion.

Mirrors the reference wrapper (qwen_tts ``Qwen3TTSModel._normalize_audio_inputs`` and
``Qwen3TTSTokenizer.load_audio``) without librosa:

* files and bytes are decoded with ``soundfile`` as float32 (libsndfile's int scaling, e.g. int16 / 32768);
* multichannel audio is averaged to mono with ``np.mean(axis=-1)`` over a ``(frames, channels)`` array;
* resampling uses ``soxr`` at quality ``"soxr_hq"`` followed by librosa's ``fix_length`` to
  ``ceil(n * sr_to / sr_from)`` samples, which is exactly what ``librosa.resample`` (0.11, default
  ``res_type="soxr_hq"``) does, so the result is bit-identical to the reference.

Deliberate differences from the reference: URLs are not fetched (the engine never does network I/O),
integer arrays passed as ``(array, sr)`` are scaled to [-1, 1) like soundfile scales integer files (the
reference casts them unscaled, which breaks the speaker mel front-end), and non-finite samples are
rejected. Every failure raises :class:`AudioError` with a stable ``code``.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import re
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import numpy as np
import soundfile as sf
import soxr

_LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_SECONDS = 120.0
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# Decoded-size bounds: a small compressed file can announce a huge rate or many channels (a 330 KB FLAC at
# 655,350 Hz x 8 channels decodes to ~1.2 GB of float32). Files are decoded in blocks, downmixed as they go.
MAX_SAMPLE_RATE = 192_000
MAX_DECODED_SAMPLES = 24 * 1024 * 1024  # frames x channels: ~2 min of 48 kHz stereo, 96 MB of float32 at most
BLOCK_FRAMES = 1 << 16
_ADDRESS_RE = re.compile(
    r"<[^<>]* at 0x[0-9a-fA-F]+>"
)  # "<_io.BytesIO object at 0x7f..>" in libsndfile errors

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Tuple[Any, int]]

_B64_RE = re.compile(r"[A-Za-z0-9+/\s]+={0,2}\s*")
# Full-scale value per integer dtype: the same normalisation libsndfile applies when reading PCM as float.
_INT_SCALE = {np.dtype(np.int8): 2.0**7, np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}


class AudioError(ValueError):
    """Invalid or unusable audio input; ``code`` is stable and safe to show to clients.

    Codes: ``audio_bad_source`` (unsupported type, URL, bad sample rate or shape), ``audio_unreadable``
    (missing file, undecodable data, bad base64), ``audio_too_large`` (over ``max_bytes``),
    ``audio_too_long`` (over ``max_seconds``), ``audio_empty`` (no samples), ``audio_not_finite``
    (NaN or Inf samples), ``audio_too_short`` (raised by consumers that need a minimum length).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def load_audio(
    source: AudioSource,
    *,
    max_seconds: Optional[float] = DEFAULT_MAX_SECONDS,
    max_bytes: Optional[int] = DEFAULT_MAX_BYTES,
) -> Tuple[np.ndarray, int]:
    """Load reference audio as ``(mono float32 waveform, sample_rate)`` at its original rate.

    ``source`` is a file path (str or PathLike; wav/flac/ogg/mp3 or anything libsndfile reads), the raw
    bytes of such a file, a base64 string of such a file (raw or ``data:audio/...;base64,`` URL), or a
    tuple ``(array, sample_rate)`` with ``array`` shaped ``(frames,)`` or ``(frames, channels)`` (numpy or
    torch; a 2-D array with at most 8 rows and more columns is taken as ``(channels, frames)``).
    ``max_seconds`` / ``max_bytes`` of ``None`` disable that limit.
    """
    if isinstance(source, tuple):
        wave, sr = _from_array(source)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        wave, sr = _decode_bytes(bytes(source), max_bytes, max_seconds)
    elif isinstance(source, os.PathLike):
        wave, sr = _read_file(Path(source), max_bytes, max_seconds)
    elif isinstance(source, str):
        wave, sr = _from_string(source, max_bytes, max_seconds)
    else:
        raise AudioError("audio_bad_source", f"unsupported audio source type {type(source).__name__}")
    return _finish(wave, sr, max_seconds)


def resample(wave: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Resample a 1-D waveform exactly like ``librosa.resample(y, orig_sr, target_sr)`` (soxr_hq).

    The dtype of a floating input is kept (librosa's rule); other dtypes are converted to float32.
    """
    y = np.asarray(wave)
    if not np.issubdtype(y.dtype, np.floating):
        y = y.astype(np.float32)
    if y.ndim != 1:
        raise AudioError("audio_bad_source", f"resample expects a 1-D waveform, got shape {y.shape}")
    _check_rate(sr_from)
    _check_rate(sr_to)
    if sr_from == sr_to:
        return y
    n_out = int(np.ceil(y.shape[-1] * (float(sr_to) / sr_from)))
    y_hat = soxr.resample(y, sr_from, sr_to, quality="soxr_hq")
    # librosa.util.fix_length: trim, or zero-pad at the end, to the nominal length.
    if y_hat.shape[-1] > n_out:
        y_hat = y_hat[:n_out]
    elif y_hat.shape[-1] < n_out:
        y_hat = np.pad(y_hat, (0, n_out - y_hat.shape[-1]))
    return np.asarray(y_hat, dtype=y.dtype)


def to_pcm16(wave: Any) -> bytes:
    """Convert a float waveform in [-1, 1] to little-endian signed 16-bit PCM bytes.

    Rule: ``int16(clip(rint(x * 32768), -32768, 32767))`` with round-half-to-even; NaN becomes 0 and
    +-Inf clip to full scale. Scaling by 32768 makes this the exact inverse of reading int16 as
    ``x / 32768`` (soundfile/libsndfile), so int16 -> float -> int16 round-trips bit-exactly; +1.0 maps to
    32767 and -1.0 to -32768.
    """
    if hasattr(wave, "detach"):  # torch tensor, without importing torch here
        wave = wave.detach().float().cpu().numpy()
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    pcm = np.clip(np.rint(x * 32768.0), -32768, 32767).astype("<i2")
    return pcm.tobytes()


def _check_rate(sr: Any) -> int:
    try:
        rate = int(sr)
    except (TypeError, ValueError):
        raise AudioError("audio_bad_source", f"invalid sample rate {sr!r}") from None
    if rate <= 0 or rate != sr:
        raise AudioError("audio_bad_source", f"invalid sample rate {sr!r}")
    return rate


def _from_array(source: Tuple[Any, int]) -> Tuple[np.ndarray, int]:
    if len(source) != 2:
        raise AudioError("audio_bad_source", "array input must be a tuple (array, sample_rate)")
    data, sr = source
    rate = _check_rate(sr)
    if hasattr(data, "detach"):  # torch tensor
        data = data.detach().cpu().numpy()
    arr = np.asarray(data)
    if arr.ndim == 2 and arr.shape[0] <= 8 < arr.shape[1]:
        # (channels, frames) as torch/torchaudio produce it; the reference would average the wrong axis.
        arr = arr.T
    if arr.dtype == np.uint8:  # 8-bit PCM is unsigned with a 128 offset
        wave = ((arr.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    elif arr.dtype in _INT_SCALE:
        wave = arr.astype(np.float32) * np.float32(1.0 / _INT_SCALE[arr.dtype])
    elif np.issubdtype(arr.dtype, np.floating):
        wave = arr.astype(np.float32)
    else:
        raise AudioError("audio_bad_source", f"unsupported sample dtype {arr.dtype}")
    return wave, rate


def _from_string(source: str, max_bytes: Optional[int], max_seconds: Optional[float]):
    text = source.strip()
    lowered = text[:16].lower()
    if lowered.startswith(("http://", "https://")):
        raise AudioError("audio_bad_source", "URLs are not supported; pass a file path, bytes or base64")
    if lowered.startswith("data:"):
        return _decode_bytes(_b64decode(text, max_bytes), max_bytes, max_seconds)
    if os.path.isfile(text):
        return _read_file(Path(text), max_bytes, max_seconds)
    # Not a file: treat base64-looking text as base64. (The reference's heuristic, "> 256 chars and no
    # '/'", misses most real base64, which contains '/'; an existing file always wins here.)
    if len(text) >= 64 and _B64_RE.fullmatch(text):
        return _decode_bytes(_b64decode(text, max_bytes), max_bytes, max_seconds)
    raise AudioError("audio_unreadable", f"audio file not found: {source[:200]!r}")


def _b64decode(text: str, max_bytes: Optional[int]) -> bytes:
    if text[:5].lower() == "data:":
        if "," not in text:
            raise AudioError("audio_unreadable", "malformed data URL")
        text = text.split(",", 1)[1]
    # Reject before decoding: base64 carries 3 bytes per 4 characters.
    if max_bytes is not None and len(text) // 4 * 3 > max_bytes + 3:
        raise AudioError("audio_too_large", f"audio data exceeds {max_bytes} bytes")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as err:
        raise AudioError("audio_unreadable", f"invalid base64 audio: {err}") from None


def _read_file(path: Path, max_bytes: Optional[int], max_seconds: Optional[float]):
    try:
        size = path.stat().st_size
    except OSError as err:
        raise AudioError("audio_unreadable", f"cannot open audio file {str(path)!r}: {err}") from None
    if max_bytes is not None and size > max_bytes:
        raise AudioError("audio_too_large", f"audio file is {size} bytes, limit {max_bytes}")
    return _sf_read(str(path), max_seconds)


def _decode_bytes(data: bytes, max_bytes: Optional[int], max_seconds: Optional[float]):
    if max_bytes is not None and len(data) > max_bytes:
        raise AudioError("audio_too_large", f"audio data is {len(data)} bytes, limit {max_bytes}")
    if not data:
        raise AudioError("audio_empty", "audio data is empty")
    return _sf_read(io.BytesIO(data), max_seconds)


def _sf_read(target: Any, max_seconds: Optional[float]) -> Tuple[np.ndarray, int]:
    try:
        with sf.SoundFile(target) as snd:
            rate, channels = int(snd.samplerate), int(snd.channels)
            # Check the header before decoding so oversized uploads cost nothing.
            if not 0 < rate <= MAX_SAMPLE_RATE:
                raise AudioError(
                    "audio_bad_source", f"sample rate {rate} Hz is not supported (at most {MAX_SAMPLE_RATE})"
                )
            if max_seconds is not None and snd.frames > max_seconds * rate:
                raise AudioError(
                    "audio_too_long", f"audio is {snd.frames / rate:.1f} s long, limit {max_seconds:g} s"
                )
            if snd.frames * channels > MAX_DECODED_SAMPLES:
                raise AudioError("audio_too_large", _too_large(channels))
            wave = _read_blocks(snd, rate, channels, max_seconds)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as err:
        message = _ADDRESS_RE.sub("the audio data", str(err))
        raise AudioError("audio_unreadable", f"cannot decode audio: {message}") from None
    return wave, rate


def _too_large(channels: int) -> str:
    return f"audio decodes to more than {MAX_DECODED_SAMPLES} samples ({channels} channels)"


def _read_blocks(snd: Any, rate: int, channels: int, max_seconds: Optional[float]) -> np.ndarray:
    """Decodes block by block, downmixing each (the header's frame count can lie: the limits are enforced
    on what is actually decoded). Per row this is the same mean as the reference's whole-array downmix."""
    max_frames = MAX_DECODED_SAMPLES // max(channels, 1)
    if max_seconds is not None:
        max_frames = min(max_frames, int(max_seconds * rate) + 1)
    parts, frames = [], 0
    for block in snd.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
        frames += block.shape[0]
        if frames > max_frames:
            if max_seconds is not None and frames > max_seconds * rate:
                raise AudioError("audio_too_long", f"audio is longer than {max_seconds:g} s")
            raise AudioError("audio_too_large", _too_large(channels))
        parts.append(block[:, 0].copy() if channels == 1 else np.mean(block, axis=-1).astype(np.float32))
    if channels == 0:
        raise AudioError("audio_empty", "audio has no channels")
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def _finish(wave: np.ndarray, sr: int, max_seconds: Optional[float]) -> Tuple[np.ndarray, int]:
    if wave.ndim == 2:
        if wave.shape[-1] == 0:
            raise AudioError("audio_empty", "audio has no channels")
        wave = np.mean(wave, axis=-1).astype(np.float32)  # reference downmix: mean over channels
    elif wave.ndim != 1:
        raise AudioError("audio_bad_source", f"expected (frames,) or (frames, channels), got {wave.shape}")
    if wave.shape[0] == 0:
        raise AudioError("audio_empty", "audio has no samples")
    if max_seconds is not None and wave.shape[0] > max_seconds * sr:
        raise AudioError(
            "audio_too_long", f"audio is {wave.shape[0] / sr:.1f} s long, limit {max_seconds:g} s"
        )
    if not np.isfinite(wave).all():
        raise AudioError("audio_not_finite", "audio contains NaN or Inf samples")
    return np.ascontiguousarray(wave, dtype=np.float32), sr
