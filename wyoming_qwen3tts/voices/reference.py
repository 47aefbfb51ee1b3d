"""Uploaded reference audio in, a bounded and validated 24 kHz mono clip out: the one entry point for
reference clips a client sends (library uploads, and anything else that clones from an upload).

Bounds: the upload size (``MAX_BYTES``), the sample rate and the decoded size (engine.audio: at most
``MAX_SAMPLE_RATE`` Hz and ``MAX_DECODED_SAMPLES`` frames x channels, decoded in blocks and downmixed as it
goes), 1-60 s, not silent (validation.py), and at most ``UPLOAD_SLOTS`` clips decoded at once: a further
upload gets ``server-busy`` at once instead of piling up decoded audio in memory.
"""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np

from ..engine.audio import AudioError, AudioSource, load_audio, resample
from .errors import VoiceLibraryError
from .validation import MAX_BYTES, MAX_SECONDS, SAMPLE_RATE, check_audio

UPLOAD_SLOTS = 2
_slots = threading.BoundedSemaphore(UPLOAD_SLOTS)

_CODES = {"audio_too_long": "audio-too-long", "audio_too_large": "audio-too-large"}


def decode_reference_audio(
    source: AudioSource, transcript: Optional[str] = None, label: str = "reference audio"
) -> tuple[np.ndarray, list[str]]:
    """Validates and decodes a reference clip (file path, bytes, base64 or ``(array, sr)``): returns the
    24 kHz mono float32 waveform and the soft warnings (validation.check_audio). Raises VoiceLibraryError:
    audio-unreadable, audio-too-large, audio-too-long, audio-too-short, audio-silent, server-busy."""
    if not _slots.acquire(blocking=False):
        raise VoiceLibraryError(
            "server-busy", f"{UPLOAD_SLOTS} reference clips are being processed; try again"
        )
    try:
        try:
            wave, sr = load_audio(source, max_seconds=MAX_SECONDS, max_bytes=MAX_BYTES)
        except AudioError as err:
            raise VoiceLibraryError(
                _CODES.get(err.code, "audio-unreadable"), f"{label}: {err.message}"
            ) from None
        warnings = check_audio(wave, sr, transcript, label)
        wave = resample(wave, sr, SAMPLE_RATE) if sr != SAMPLE_RATE else wave
        return wave, warnings
    finally:
        _slots.release()
