"""The one home of the audio format: 24 kHz mono 16-bit PCM, 1920 samples per 12.5 Hz codec frame."""

from __future__ import annotations

import struct
from typing import Optional

SAMPLE_RATE = 24000
SAMPLE_WIDTH = 2  # bytes (int16)
CHANNELS = 1
SAMPLES_PER_FRAME = 1920
FRAME_RATE = SAMPLE_RATE / SAMPLES_PER_FRAME  # 12.5 Hz

UNKNOWN_LENGTH = 0xFFFFFFFF


def wav_header(
    data_bytes: Optional[int] = None,
    rate: int = SAMPLE_RATE,
    width: int = SAMPLE_WIDTH,
    channels: int = CHANNELS,
) -> bytes:
    """A 44-byte PCM WAV header; `data_bytes` None (length unknown, streaming) writes 0xFFFFFFFF sizes, as
    ffmpeg and browsers accept; a length past what the sizes can hold is capped."""
    if data_bytes is None:
        riff = size = UNKNOWN_LENGTH
    else:
        size = min(data_bytes, UNKNOWN_LENGTH - 36)
        riff = size + 36
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        riff,
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        rate,
        rate * channels * width,
        channels * width,
        8 * width,
        b"data",
        size,
    )
