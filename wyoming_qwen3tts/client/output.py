"""Where the received audio goes: a WAV file (written atomically), a WAV stream on stdout, a player pipe.

All outputs get ONE format: the first ``audio-start``'s (or the first chunk's, if a server sends no
start). A chunk in another format (a server switching rate/width/channels between cycles) is converted to
it with the ``wyoming`` package's own converter and a note is printed once; a conversion the converter
cannot do (e.g. to more than 2 channels) fails with a clear message. Pipes (stdout, players) are written
from a thread, so a slow consumer (a player plays in real time) never stalls the network reading and the
timings.
"""

from __future__ import annotations

import logging
import queue
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Sequence

from wyoming.audio import AudioChunk, AudioChunkConverter

from ..core.audio import wav_header as core_wav_header
from ..core.files import AtomicFile

_LOGGER = logging.getLogger(__name__)

PLAYERS = ("aplay", "paplay", "ffplay")
PLAYER_PACKAGES = "alsa-utils (aplay), pulseaudio-utils (paplay) or ffmpeg (ffplay)"


class OutputError(Exception):
    """A local output problem (cannot write, no player, unconvertible format); the message is one line."""


@dataclass(frozen=True)
class PcmFormat:
    rate: int
    width: int  # bytes per sample
    channels: int

    @property
    def frame_bytes(self) -> int:
        return self.width * self.channels

    def __str__(self) -> str:
        layout = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} ch")
        return f"{self.rate} Hz, {8 * self.width}-bit, {layout}"


def wav_header(fmt: PcmFormat, data_bytes: Optional[int]) -> bytes:
    """44-byte PCM WAV header; ``data_bytes=None`` writes the 'unknown length' sizes used for streams."""
    return core_wav_header(data_bytes, rate=fmt.rate, width=fmt.width, channels=fmt.channels)


class Sink:
    """An audio destination. ``finish(ok)`` publishes (ok) or discards (not ok) what was written."""

    name = "output"

    def start(self, fmt: PcmFormat) -> None:  # pragma: no cover - interface
        pass

    def write(self, pcm: bytes) -> None:  # pragma: no cover - interface
        pass

    def finish(self, ok: bool) -> None:  # pragma: no cover - interface
        pass


class WavFileSink(Sink):
    """Writes a hidden ``.NAME.*.part`` next to the target and renames it over the target on success only:
    an interrupted or failed run never leaves a half-written WAV (nor replaces an older one)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.name = str(path)
        if not self.path.resolve().parent.is_dir():
            raise OutputError(f"cannot write {path}: directory {self.path.parent} does not exist")
        if self.path.is_dir():
            raise OutputError(f"cannot write {path}: it is a directory")
        self._out: Optional[AtomicFile] = None
        self._fmt: Optional[PcmFormat] = None
        self._bytes = 0

    def start(self, fmt: PcmFormat) -> None:
        self._fmt = fmt
        try:
            self._out = AtomicFile(self.path.resolve(), suffix=".part")
            self._out.write(wav_header(fmt, 0))
        except OSError as err:
            raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from err

    def write(self, pcm: bytes) -> None:
        assert self._out is not None
        try:
            self._out.write(pcm)
        except OSError as err:
            raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from err
        self._bytes += len(pcm)

    def finish(self, ok: bool) -> None:
        out, self._out = self._out, None
        if out is None:
            return
        try:
            if ok:
                assert self._fmt is not None
                out.file.seek(0)
                out.write(wav_header(self._fmt, self._bytes))
                out.commit()
            else:
                out.discard()
        except OSError as err:
            out.discard()
            raise OutputError(f"cannot write {self.path}: {err.strerror or err}") from err


class _PipeWriter(threading.Thread):
    """Writes queued bytes to a pipe and flushes each piece; remembers the first error."""

    def __init__(self, pipe: BinaryIO, name: str) -> None:
        super().__init__(name=f"client-{name}-writer", daemon=True)
        self.pipe = pipe
        self.error: Optional[OSError] = None
        self._queue: "queue.Queue[Optional[bytes]]" = queue.Queue()
        self.start()

    def put(self, data: bytes) -> None:
        self._queue.put(data)

    def run(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            if self.error is not None:
                continue  # keep draining so close() never waits on a dead pipe
            try:
                self.pipe.write(data)
                self.pipe.flush()
            except (OSError, ValueError) as err:
                self.error = err if isinstance(err, OSError) else BrokenPipeError(str(err))

    def close(self) -> None:
        self._queue.put(None)
        self.join()


class WavStdoutSink(Sink):
    """WAV on stdout as audio arrives (header with 'unknown length' sizes, patched if stdout is a file)."""

    name = "standard output"

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self._writer: Optional[_PipeWriter] = None
        self._fmt: Optional[PcmFormat] = None
        self._header_at: Optional[int] = None
        self._bytes = 0

    def start(self, fmt: PcmFormat) -> None:
        self._fmt = fmt
        try:
            self._header_at = self.stream.tell() if self.stream.seekable() else None
        except OSError:
            self._header_at = None
        self._writer = _PipeWriter(self.stream, "stdout")
        self._writer.put(wav_header(fmt, None))

    def write(self, pcm: bytes) -> None:
        assert self._writer is not None
        if self._writer.error is not None:
            raise OutputError(f"cannot write to standard output: {self._writer.error}")
        self._writer.put(pcm)
        self._bytes += len(pcm)

    def finish(self, ok: bool) -> None:
        if self._writer is None:
            return
        self._writer.close()
        if self._writer.error is not None:
            raise OutputError(f"cannot write to standard output: {self._writer.error}")
        if self._header_at is not None and self._fmt is not None:  # a regular file: give it real sizes
            end = self.stream.tell()
            self.stream.seek(self._header_at)
            self.stream.write(wav_header(self._fmt, self._bytes))
            self.stream.seek(end)
            self.stream.flush()


def find_player(preferred: Optional[str] = None) -> tuple[str, str]:
    """(name, path) of the first available player; raises OutputError naming what to install."""
    for name in [preferred] if preferred else PLAYERS:
        path = shutil.which(name)
        if path:
            return name, path
    if preferred:
        raise OutputError(f"player {preferred!r} not found on PATH")
    raise OutputError(
        f"--play needs an audio player: install {PLAYER_PACKAGES}, or use --out FILE.wav / --out -"
    )


def player_command(name: str, path: str, fmt: PcmFormat) -> list[str]:
    """Command line that plays raw PCM of ``fmt`` from stdin (ffplay gets a WAV stream instead, because its
    raw channel option changed name across ffmpeg versions)."""
    if name == "aplay":
        sample = {1: "U8", 2: "S16_LE", 3: "S24_3LE", 4: "S32_LE"}[fmt.width]
        return [path, "-q", "-t", "raw", "-f", sample, "-r", str(fmt.rate), "-c", str(fmt.channels)]
    if name == "paplay":
        sample = {1: "u8", 2: "s16le", 3: "s24le", 4: "s32le"}[fmt.width]
        return [path, "--raw", f"--format={sample}", f"--rate={fmt.rate}", f"--channels={fmt.channels}"]
    if name == "ffplay":
        return [path, "-nodisp", "-autoexit", "-loglevel", "error", "-f", "wav", "-i", "-"]
    raise OutputError(f"unknown player {name!r}; choose one of {', '.join(PLAYERS)}")


class PlayerSink(Sink):
    """Pipes PCM to a player as it arrives, so a stream is heard while it is generated."""

    def __init__(self, name: str, path: str, warn: Callable[[str], None]) -> None:
        self.name = name
        self.path = path
        self.warn = warn
        self._proc: Optional[subprocess.Popen] = None
        self._writer: Optional[_PipeWriter] = None
        self._warned = False

    def start(self, fmt: PcmFormat) -> None:
        if fmt.width not in (1, 2, 3, 4):
            raise OutputError(f"{self.name} cannot play {8 * fmt.width}-bit audio")
        command = player_command(self.name, self.path, fmt)
        _LOGGER.debug("player: %s", " ".join(command))
        try:
            self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        except OSError as err:
            raise OutputError(f"cannot start {self.name}: {err.strerror or err}") from err
        assert self._proc.stdin is not None
        self._writer = _PipeWriter(self._proc.stdin, self.name)  # type: ignore[arg-type]
        if self.name == "ffplay":
            self._writer.put(wav_header(fmt, None))

    def write(self, pcm: bytes) -> None:
        assert self._writer is not None
        if self._writer.error is not None:
            if not self._warned:  # the player died (no sound device?): keep the exchange going
                self.warn(f"warning: {self.name} stopped reading audio ({self._writer.error}); not playing")
                self._warned = True
            return
        self._writer.put(pcm)

    def finish(self, ok: bool) -> None:
        """Waits until the player has played everything (or kills it when the run is aborted)."""
        if self._proc is None or self._writer is None:
            return
        if not ok:
            self._proc.terminate()
        self._writer.close()
        if self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        code = self._proc.wait()
        if ok and code != 0:
            self.warn(f"warning: {self.name} exited with code {code}")


class AudioPipeline:
    """Counts the audio and fans it out to the sinks in one format (see the module docstring)."""

    def __init__(self, sinks: Sequence[Sink], warn: Callable[[str], None]) -> None:
        self.sinks = list(sinks)
        self.warn = warn
        self.format: Optional[PcmFormat] = None
        self.bytes = 0
        self.converted = False
        self._converters: dict[PcmFormat, AudioChunkConverter] = {}
        self._partial: dict[PcmFormat, bytes] = {}  # per source format: bytes short of a whole frame

    @property
    def samples(self) -> int:
        """Frames (samples per channel) received so far, in the output format."""
        return self.bytes // self.format.frame_bytes if self.format else 0

    @property
    def seconds(self) -> float:
        return self.samples / self.format.rate if self.format else 0.0

    def start(self, fmt: PcmFormat) -> None:
        if self.format is None:
            self.format = fmt
            for sink in self.sinks:
                sink.start(fmt)
        elif fmt != self.format and not self.converted:
            self.warn(f"note: the server switched audio format to {fmt}; converting to {self.format}")
            self.converted = True

    def write(self, chunk: AudioChunk) -> None:
        fmt = PcmFormat(chunk.rate, chunk.width, chunk.channels)
        if self.format is None:  # a chunk without audio-start: its own fields are the format
            self.start(fmt)
        assert self.format is not None
        audio = chunk.audio
        if fmt != self.format:
            if not self.converted:
                self.warn(f"note: audio arrived as {fmt}; converting to {self.format}")
                self.converted = True
            converter = self._converters.setdefault(
                fmt, AudioChunkConverter(self.format.rate, self.format.width, self.format.channels)
            )
            # Chunk boundaries need not fall on frames; the converter needs whole frames.
            pending = self._partial.get(fmt, b"") + audio
            whole = len(pending) - len(pending) % fmt.frame_bytes
            self._partial[fmt] = pending[whole:]
            try:
                audio = converter.convert(
                    AudioChunk(fmt.rate, fmt.width, fmt.channels, pending[:whole])
                ).audio
            except Exception as err:  # noqa: BLE001 - audioop raises assorted errors
                raise OutputError(f"cannot convert audio from {fmt} to {self.format}: {err}") from err
        self.bytes += len(audio)
        for sink in self.sinks:
            sink.write(audio)

    def finish(self, ok: bool) -> None:
        """Finishes every sink (even after one fails), then re-raises the first failure."""
        first: Optional[BaseException] = None
        for sink in self.sinks:
            try:
                sink.finish(ok)
            except BaseException as err:  # noqa: BLE001 - finish the others first
                first = first or err
        if first is not None:
            raise first
