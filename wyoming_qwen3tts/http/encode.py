"""PCM (24 kHz mono int16) -> the OpenAI ``response_format``s, whole or streamed, with libsndfile.

* ``pcm``: raw signed 16-bit little-endian, 24 kHz, mono. Streamed chunk by chunk as generated.
* ``wav``: 16-bit PCM WAV. Streamed: a header whose RIFF/data sizes are 0xFFFFFFFF (length unknown, as
  streaming TTS servers do), then every chunk; whole: exact sizes.
* ``mp3``: MPEG Layer III, constant 64 kbit/s. Streamed per MP3 frame (~50 ms); the LAME/Xing info frame
  that libsndfile rewrites at the end stays a silent placeholder frame in a stream.
* ``opus``: Ogg Opus. Streamed per Ogg page (libsndfile flushes about once a second).
* ``flac``: FLAC 16-bit. Always one whole file, also when streaming is asked for: its STREAMINFO header
  carries the length and checksum, known only at the end (libsndfile-based readers such as soundfile fail
  on a streamed FLAC without them).
* ``aac``: not available, no well-kept encoder in our dependencies (libsndfile has none): 400
  ``unsupported-format``.

Constant-bitrate MP3 is used so that decoders can compute the length of a streamed file (which lacks the
Xing header) from its size. Whole files (``stream: false``) are exact: the encoders' final header rewrites
are applied. mp3 and opus need libsndfile >= 1.1 / 1.0.29 (the soundfile wheels bundle 1.2).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import soundfile as sf

from ..core.audio import SAMPLE_RATE, UNKNOWN_LENGTH
from ..core.audio import wav_header as core_wav_header
from ..core.vocab import ErrorCode
from .errors import ApiError

_LOGGER = logging.getLogger(__name__)

MP3_COMPRESSION = 0.6  # libsndfile's 0..1 scale: 0.6 = 64 kbit/s CBR at 24 kHz, plenty for speech


@dataclass(frozen=True)
class Format:
    name: str
    content_type: str
    container: Optional[str] = None  # libsndfile major format; None = our own writer (pcm, wav)
    subtype: Optional[str] = None
    streamable: bool = True


FORMATS = {
    "mp3": Format("mp3", "audio/mpeg", "MP3", "MPEG_LAYER_III"),
    "opus": Format("opus", "audio/ogg", "OGG", "OPUS"),
    "flac": Format("flac", "audio/flac", "FLAC", "PCM_16", streamable=False),
    "wav": Format("wav", "audio/wav"),
    "pcm": Format("pcm", "audio/pcm"),
}
OPENAI_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


def available_formats() -> list[str]:
    """The formats this libsndfile can write (mp3/opus depend on how it was built)."""
    majors = sf.available_formats()
    names = []
    for fmt in FORMATS.values():
        if fmt.container is None or (
            fmt.container in majors and fmt.subtype in sf.available_subtypes(fmt.container)
        ):
            names.append(fmt.name)
    return names


def get_format(name: object) -> Format:
    key = str(name or "").strip().lower()
    if key in FORMATS and key in available_formats():
        return FORMATS[key]
    supported = ", ".join(available_formats())
    if key == "aac":
        message = f"aac is not supported (no AAC encoder is available); use one of {supported}"
    elif key in FORMATS:
        message = f"{key} is not supported by this libsndfile build; use one of {supported}"
    else:
        message = f"unknown response_format {name!r}; use one of {supported}"
    raise ApiError(ErrorCode.UNSUPPORTED_FORMAT, message, param="response_format")


def wav_header(data_bytes: int = UNKNOWN_LENGTH) -> bytes:
    """A 44-byte PCM WAV header; the default sizes say "unknown length" (streaming)."""
    return core_wav_header(None if data_bytes == UNKNOWN_LENGTH else data_bytes)


class _Sink(io.RawIOBase):
    """A seekable in-memory file for libsndfile that hands out each byte once, as soon as it is written.
    Bytes the encoder rewrites after they went out (final headers) are only right in ``getvalue()``."""

    def __init__(self) -> None:
        super().__init__()
        self.buf = io.BytesIO()
        self.sent = 0

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data) -> int:
        return self.buf.write(data)

    def read(self, size: int = -1) -> bytes:
        return self.buf.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.buf.seek(offset, whence)

    def tell(self) -> int:
        return self.buf.tell()

    def take(self) -> bytes:
        view = self.buf.getbuffer()
        data = view[self.sent :].tobytes()
        view.release()
        self.sent += len(data)
        return data

    def getvalue(self) -> bytes:
        return self.buf.getvalue()


class Encoder:
    """``feed(pcm) -> bytes`` then ``finish() -> bytes``. Streaming: each call returns what can be sent
    now. Not streaming: ``feed`` returns nothing and ``finish`` the whole, exact file."""

    def __init__(self, fmt: Format, streaming: bool) -> None:
        self.format = fmt
        self.streaming = streaming and fmt.streamable
        self.frames = 0
        self._pcm: list[bytes] = []  # pcm/wav when not streaming
        self._started = False
        self._sink: Optional[_Sink] = None
        self._file: Optional[sf.SoundFile] = None
        if fmt.container is not None:
            self._sink = _Sink()
            self._file = _open(self._sink, fmt)

    @property
    def heavy(self) -> bool:
        """Worth a worker thread (real encoding) rather than the event loop."""
        return self._file is not None

    def feed(self, pcm: bytes) -> bytes:
        self.frames += len(pcm) // 2
        if self._file is not None:
            self._file.write(np.frombuffer(pcm, dtype="<i2"))
            assert self._sink is not None
            return self._sink.take() if self.streaming else b""
        if not self.streaming:
            self._pcm.append(pcm)
            return b""
        if self.format.name == "wav" and not self._started:
            self._started = True
            return wav_header() + pcm
        return pcm

    def finish(self) -> bytes:
        if self._file is not None:
            self._file.close()
            assert self._sink is not None
            return self._sink.take() if self.streaming else self._sink.getvalue()
        if self.streaming:
            return wav_header() if self.format.name == "wav" and not self._started else b""
        pcm = b"".join(self._pcm)
        return wav_header(len(pcm)) + pcm if self.format.name == "wav" else pcm


def _open(sink: _Sink, fmt: Format) -> sf.SoundFile:
    kwargs: dict = {}
    if fmt.name == "mp3":
        kwargs = {"bitrate_mode": "CONSTANT", "compression_level": MP3_COMPRESSION}
    try:
        return sf.SoundFile(sink, "w", SAMPLE_RATE, 1, subtype=fmt.subtype, format=fmt.container, **kwargs)
    except TypeError:  # soundfile < 0.13 has no bitrate settings: libsndfile's default (VBR) then
        return sf.SoundFile(sink, "w", SAMPLE_RATE, 1, subtype=fmt.subtype, format=fmt.container)
