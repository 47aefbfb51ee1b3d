"""``voices import DIR``: bring the voices of another Qwen3-TTS server into the library.

Two layouts are read:

* The OpenAI-compatible FastAPI server's voice library, ``DIR/profiles/<id>/meta.json`` (or ``DIR`` being
  that ``profiles`` folder) with ``name``, ``profile_id``, ``ref_audio_filename``, ``ref_text``,
  ``x_vector_only_mode``, ``language`` and ``task_type``, plus the reference file next to it. Its
  ``clone:<name>`` becomes our ``clone:<name>`` (lower-cased; characters outside ``a-z 0-9 _ -`` become
  ``-``).
* The flat layout, ``DIR/<name>.wav`` (or .flac/.ogg/.mp3) + ``DIR/<name>.txt`` (the transcript).

Every voice goes through :meth:`VoiceLibrary.add_clone`: the uploads' checks and limits, and an atomic write
(a voice is there completely or not at all). Each source is reported as imported, skipped (already imported,
or a different voice of that name exists) or failed (a broken profile, with the reason); one broken profile
never stops the others. Re-running imports nothing new: a voice whose clip, transcript and mode equal the
source's is "already imported".

The directory is not trusted: nothing is read through a link that leads out of it (a transcript linked to
``/etc/passwd`` would otherwise be imported and served by ``GET /v1/voices``), only regular files are read
(``meta.json`` linked to ``/dev/zero`` would read forever), and only up to a size: ``meta.json``
``MAX_META_BYTES``, a transcript ``MAX_TEXT_BYTES``, a clip ``MAX_BYTES``.
"""

from __future__ import annotations

import json
import os
import re
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import soundfile as sf

from ..core.vocab import MAX_DISPLAY_NAME_CHARS, MAX_TRANSCRIPT_CHARS, ErrorCode
from ..engine.audio import AudioError, load_audio, resample, to_pcm16
from .errors import VoiceLibraryError
from .library import (
    FLAT_AUDIO_EXTS,
    MAX_BYTES,
    MAX_SECONDS,
    SAMPLE_RATE,
    VoiceLibrary,
    normalize_language,
)
from .library import normalize_name as check_name


@dataclass
class Source:
    """One voice found in the directory."""

    path: Path  # the profile folder or the flat audio file
    raw_name: str
    audio: Optional[Path] = None
    transcript: Optional[str] = None
    mode: str = "icl"
    language: Optional[str] = None
    error: Optional[str] = None  # why it cannot be imported
    notes: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    source: str
    name: Optional[str]  # our voice name
    status: str  # imported | skipped | failed
    reason: str = ""
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "voice": f"clone:{self.name}" if self.name else None,
            "status": self.status,
            "reason": self.reason,
            "warnings": self.warnings,
        }


def voice_name(raw: str) -> str:
    """Our voice name for another server's profile name: ASCII, lower case, ``a-z 0-9 _ -``."""
    text = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"[^a-z0-9_-]+", "-", text).strip("-_")[:64].strip("-_")
    return check_name(text or raw)  # invalid-name (e.g. nothing ASCII left) is reported by the caller


MAX_META_BYTES = 64 * 1024
MAX_TEXT_BYTES = MAX_TRANSCRIPT_CHARS * 4 + 1024  # UTF-8


class Unsafe(OSError):
    """A file the import does not read: a link out of the directory, not a regular file, too large."""


def inside(path: Path, root: Path) -> bool:
    """Whether ``path``, links resolved, lies within ``root`` (resolved)."""
    try:
        return Path(os.path.realpath(path)).is_relative_to(Path(os.path.realpath(root)))
    except (OSError, ValueError):
        return False


def checked_file(path: Path, root: Path, limit: int) -> Path:
    """``path`` when it is a regular file inside ``root`` of at most ``limit`` bytes; Unsafe otherwise
    (FileNotFoundError when it does not exist)."""
    if not os.path.lexists(path):
        raise FileNotFoundError(str(path.name))
    if not inside(path, root):
        raise Unsafe(f"{path.name} links out of the directory")
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise Unsafe(f"{path.name} is not a regular file")
    if info.st_size > limit:
        raise Unsafe(f"{path.name} is larger than {limit} bytes")
    return path


def read_text(path: Path, root: Path, limit: int) -> str:
    with open(checked_file(path, root, limit), "rb") as fh:
        data = fh.read(limit + 1)  # the file may have grown since the check
    if len(data) > limit:
        raise Unsafe(f"{path.name} is larger than {limit} bytes")
    return data.decode("utf-8")


def find_sources(directory: Path) -> list[Source]:
    """Every profile and flat clip under ``directory``, sorted by path."""
    if not directory.is_dir():
        raise VoiceLibraryError(ErrorCode.INVALID_ARGUMENT, f"{directory} is not a directory")
    profiles = directory / "profiles"
    if not (profiles.is_dir() and inside(profiles, directory)):
        profiles = directory
    sources = []
    for entry in sorted(profiles.iterdir()):
        if entry.is_dir() and not entry.name.startswith("."):
            sources.append(_profile(entry, directory))
    for entry in sorted(directory.iterdir()):
        if entry.is_file() and entry.suffix.lower() in FLAT_AUDIO_EXTS and not entry.name.startswith("."):
            sources.append(_flat(entry, directory))
    return sources


def _profile(directory: Path, root: Path) -> Source:
    source = Source(path=directory, raw_name=directory.name)
    if not inside(directory, root):
        source.error = "the profile folder links out of the directory"
        return source
    try:
        meta = json.loads(read_text(directory / "meta.json", root, MAX_META_BYTES))
    except FileNotFoundError:
        source.error = "not a voice profile (no meta.json)"
        return source
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        source.error = f"meta.json is unreadable: {err}"
        return source
    if not isinstance(meta, dict):
        source.error = "meta.json is not a JSON object"
        return source
    source.raw_name = str(meta.get("name") or meta.get("profile_id") or directory.name)
    filename = meta.get("ref_audio_filename")
    if not isinstance(filename, str) or not filename.strip():
        cloud = " (a cloud voice_id profile has no clip to clone)" if meta.get("voice_id") else ""
        source.error = f"meta.json names no ref_audio_filename{cloud}"
        return source
    if Path(filename).name != filename:  # only a file inside the profile folder
        source.error = f"ref_audio_filename {filename!r} points outside the profile folder"
        return source
    source.audio = directory / filename
    try:
        checked_file(source.audio, root, MAX_BYTES)
    except FileNotFoundError:
        source.error = f"the reference file {filename} is missing"
        return source
    except OSError as err:
        source.error = f"the reference file is not read: {err}"
        return source
    text = meta.get("ref_text")
    source.transcript = text.strip() if isinstance(text, str) and text.strip() else None
    source.mode = "xvector" if meta.get("x_vector_only_mode") is True else "icl"
    source.language = meta.get("language") if isinstance(meta.get("language"), str) else None
    task = meta.get("task_type")
    if isinstance(task, str) and task.strip().lower() not in ("", "base", "voice_clone", "clone"):
        source.notes.append(f"task_type {task}: imported as a clone of its reference clip")
    return source


def _flat(audio: Path, root: Path) -> Source:
    source = Source(path=audio, raw_name=audio.stem, audio=audio)
    try:
        checked_file(audio, root, MAX_BYTES)
    except OSError as err:
        source.error = f"the clip is not read: {err}"
        return source
    for txt in (audio.with_suffix(".txt"), audio.with_suffix(".TXT")):
        if os.path.lexists(txt):
            try:
                source.transcript = read_text(txt, root, MAX_TEXT_BYTES).strip() or None
            except (OSError, UnicodeDecodeError) as err:
                source.error = f"{txt.name} is not read: {err}"
            break
    source.mode = "icl" if source.transcript else "xvector"
    return source


def _pcm(wave: np.ndarray, sr: int) -> bytes:
    return to_pcm16(resample(wave, sr, SAMPLE_RATE) if sr != SAMPLE_RATE else wave)


def _same_voice(library: VoiceLibrary, name: str, source: Source) -> Optional[bool]:
    """None: no voice of that name; True: it holds this source's clip, transcript and mode already."""
    try:
        existing = library.get(name)
    except VoiceLibraryError as err:
        if err.code == ErrorCode.VOICE_NOT_FOUND:
            return None
        return False
    transcript = " ".join(source.transcript.split()) if source.transcript else None
    mode = source.mode if transcript or source.mode == "xvector" else "xvector"  # add_clone's fallback
    if existing.kind != "clone" or existing.audio_path is None or existing.mode != mode:
        return False
    if mode == "icl" and existing.transcript != transcript:
        return False
    assert source.audio is not None
    stored, _ = sf.read(str(existing.audio_path), dtype="int16")
    wave, sr = load_audio(str(source.audio), max_seconds=MAX_SECONDS, max_bytes=MAX_BYTES)
    return bytes(np.ascontiguousarray(stored).tobytes()) == _pcm(wave, sr)


def import_voices(library: VoiceLibrary, directory: Path, overwrite: bool = False) -> list[Outcome]:
    """Imports every voice found in ``directory``; one outcome per source, in order."""
    outcomes = []
    for source in find_sources(directory):
        try:
            outcomes.append(_import_one(library, directory, source, overwrite))
        except Exception as err:  # noqa: BLE001 - one broken profile never stops the others
            shown = str(source.path.relative_to(directory))
            outcomes.append(Outcome(shown, None, "failed", f"{type(err).__name__}: {err}"[:300]))
    return outcomes


def _import_one(library: VoiceLibrary, directory: Path, source: Source, overwrite: bool) -> Outcome:
    shown = str(source.path.relative_to(directory))
    if source.error:
        status = "skipped" if source.error.startswith("not a voice profile") else "failed"
        return Outcome(shown, None, status, source.error)
    try:
        name = voice_name(source.raw_name)
    except VoiceLibraryError as err:
        return Outcome(shown, None, "failed", f"no usable voice name in {source.raw_name!r}: {err.message}")
    warnings = list(source.notes)
    try:
        language = normalize_language(source.language)
    except VoiceLibraryError:
        warnings.append(f"unknown language {source.language!r}: imported with auto")
        language = None
    try:
        same = _same_voice(library, name, source)
        if same:
            return Outcome(shown, name, "skipped", "already imported")
        if same is False and not overwrite:
            return Outcome(shown, name, "skipped", f"a different voice named {name!r} exists (--overwrite)")
        profile = library.add_clone(
            name,
            str(source.audio),
            source.transcript,
            language,
            source.mode,
            display_name=source.raw_name[:MAX_DISPLAY_NAME_CHARS],
            overwrite=overwrite,
        )
    except (VoiceLibraryError, AudioError) as err:
        return Outcome(shown, name, "failed", f"{err.code}: {err.message}")
    except OSError as err:
        return Outcome(shown, name, "failed", f"os-error: {err}")
    return Outcome(shown, name, "imported", "", warnings + list(profile.warnings))
