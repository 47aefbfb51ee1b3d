"""Uploaded reference audio in, a bounded and validated 24 kHz mono clip out: the one entry point for
reference clips a client sends (library uploads, and anything else that clones from an upload).

Bounds: the upload size (``MAX_BYTES``), the sample rate and the decoded size (engine.audio: at most
``MAX_SAMPLE_RATE`` Hz and ``MAX_DECODED_SAMPLES`` frames x channels, decoded in blocks and downmixed as it
goes), 1-60 s, not silent (validation.py), and at most ``UPLOAD_SLOTS`` clips decoded at once: a further
upload gets ``server-busy`` at once instead of piling up decoded audio in memory.

The HTTP routes take the slot (:func:`upload_slot`) before they read a body that may hold a clip, and keep it
until the clip is decoded; the slot is re-entrant within one request (``asyncio.to_thread`` carries the
request's context, and with it the held slot, into the worker thread), so the decoding does not take a
second one.
"""

from __future__ import annotations

import contextlib
import threading
from contextvars import ContextVar
from typing import Iterator, Optional

import numpy as np

from ..core.vocab import ErrorCode
from ..engine.audio import AudioError, AudioSource, load_audio, resample
from .errors import VoiceLibraryError
from .validation import MAX_BYTES, MAX_SECONDS, SAMPLE_RATE, check_audio

UPLOAD_SLOTS = 2
_slots = threading.BoundedSemaphore(UPLOAD_SLOTS)
_held: ContextVar[bool] = ContextVar("qwen3tts_upload_slot", default=False)

_CODES = {
    "audio_too_long": ErrorCode.AUDIO_TOO_LONG,
    "audio_too_large": ErrorCode.AUDIO_TOO_LARGE,
}  # core.audio's


@contextlib.contextmanager
def upload_slot() -> Iterator[None]:
    """One of the ``UPLOAD_SLOTS`` for the duration of the block, taken at once or ``server-busy``."""
    if _held.get():
        yield
        return
    if not _slots.acquire(blocking=False):
        raise VoiceLibraryError(
            ErrorCode.SERVER_BUSY, f"{UPLOAD_SLOTS} reference clips are being processed; try again"
        )
    token = _held.set(True)
    try:
        yield
    finally:
        _held.reset(token)
        _slots.release()


def decode_reference_audio(
    source: AudioSource, transcript: Optional[str] = None, label: str = "reference audio"
) -> tuple[np.ndarray, list[str]]:
    """Validates and decodes a reference clip (file path, bytes, base64 or ``(array, sr)``): returns the
    24 kHz mono float32 waveform and the soft warnings (validation.check_audio). Raises VoiceLibraryError:
    audio-unreadable, audio-too-large, audio-too-long, audio-too-short, audio-silent, server-busy."""
    with upload_slot():
        try:
            wave, sr = load_audio(source, max_seconds=MAX_SECONDS, max_bytes=MAX_BYTES)
        except AudioError as err:
            raise VoiceLibraryError(
                _CODES.get(err.code, ErrorCode.AUDIO_UNREADABLE), f"{label}: {err.message}"
            ) from None
        warnings = check_audio(wave, sr, transcript, label)
        wave = resample(wave, sr, SAMPLE_RATE) if sr != SAMPLE_RATE else wave
        return wave, warnings
