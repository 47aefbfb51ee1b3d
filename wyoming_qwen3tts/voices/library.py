"""Voice profiles on disk: ``<data_dir>/voices/<name>/`` with ``meta.json`` (+ ``reference.wav`` for clones).

Layout of one profile directory:

* ``meta.json``: name, display name, kind (``clone`` or ``design``), language (engine name or null),
  transcript, mode (``icl`` / ``xvector``), instruct (design voices), sha256 of the stored audio, times.
* ``reference.wav`` (clones): the reference clip normalised to mono 24 kHz 16-bit PCM.
* ``prompt.<model>.safetensors``: cached voice prompts, written by :mod:`.prompts`.

The simple layout other servers use, ``<root>/<name>.wav`` (+ ``<name>.txt`` with the transcript), is
imported read-only; a profile directory of the same name wins.

Every write is atomic: files are written to a temp file in the same directory and ``os.replace``-d, and a
new profile is built in a hidden temp directory that is renamed into place, so readers (a running server)
never see a half-written profile; an overwrite interrupted by a crash is recovered (store.py). Broken
profiles are skipped with a warning and never hide the others. Quotas: ``max_voices`` profiles and
``max_bytes`` of disk (store.check_quota).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import numpy as np
import soundfile as sf

from ..core.files import atomic_write_bytes  # noqa: F401 (used here and by prompts.py)
from ..core.languages import from_bcp47, parse_language
from ..core.vocab import (
    LIBRARY_KINDS,
    MAX_DISPLAY_NAME_CHARS,
    MAX_INSTRUCT_CHARS,
    MAX_TRANSCRIPT_CHARS,
    ErrorCode,
    VoiceKind,
)
from ..engine.audio import AudioSource, to_pcm16
from . import store
from .errors import VoiceLibraryError
from .reference import decode_reference_audio
from .validation import MAX_BYTES, MAX_SECONDS, MIN_SECONDS, SAMPLE_RATE, read_speed  # noqa: F401 (API)

_LOGGER = logging.getLogger(__name__)

META_FILE = "meta.json"
AUDIO_FILE = "reference.wav"
FLAT_AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Windows device names (the library may live on a share) and words the server uses for "no voice chosen".
RESERVED_NAMES = frozenset(
    ["con", "prn", "aux", "nul", "default", "auto"]
    + [f"com{i}" for i in range(10)]
    + [f"lpt{i}" for i in range(10)]
)

MODES = ("icl", "xvector")


@dataclass(frozen=True)
class VoiceProfile:
    name: str
    kind: str  # "clone" | "design"
    display_name: str
    language: Optional[str] = None  # engine language name ("german"), None = let the model decide
    transcript: Optional[str] = None
    mode: Optional[str] = None  # clones: "icl" | "xvector"
    instruct: Optional[str] = None  # design and style voices
    speaker: Optional[str] = None  # style voices: the built-in speaker
    speed: Optional[float] = None  # speaking rate of this voice (None: the server's --speed)
    audio_path: Optional[Path] = None
    sha256: Optional[str] = None  # of the stored audio file
    created: Optional[str] = None  # ISO 8601, UTC
    updated: Optional[str] = None
    read_only: bool = False  # imported from the flat <name>.wav layout
    warnings: tuple[str, ...] = field(default=(), compare=False)  # validation warnings from add_*

    @property
    def directory(self) -> Optional[Path]:
        return None if self.read_only or self.audio_path is None else self.audio_path.parent


def normalize_name(name: str) -> str:
    """Lower-case and validate a voice name; raises ``invalid-name``."""
    if not isinstance(name, str):
        raise VoiceLibraryError(
            ErrorCode.INVALID_NAME, f"voice name must be a string, got {type(name).__name__}"
        )
    key = name.strip().lower()
    if not NAME_RE.fullmatch(key):
        raise VoiceLibraryError(
            ErrorCode.INVALID_NAME,
            f"invalid voice name {name[:80]!r}: use 1-64 of a-z 0-9 _ - (starting with a letter or digit)",
        )
    if key in RESERVED_NAMES:
        raise VoiceLibraryError(ErrorCode.INVALID_NAME, f"voice name {key!r} is reserved")
    return key


def normalize_language(language: Optional[str]) -> Optional[str]:
    """A profile's language: None for auto/empty, else the engine name (core.languages.parse_language)."""
    try:
        return parse_language(language)
    except ValueError:
        raise VoiceLibraryError(ErrorCode.INVALID_LANGUAGE, f"unsupported language {language!r}") from None


def clean_instruct(instruct: Optional[str], missing: str) -> str:
    """A voice's instruction on one line, checked: ``missing`` when empty, too long over the limit."""
    text = " ".join((instruct or "").split())
    if not text:
        raise VoiceLibraryError(ErrorCode.INVALID_ARGUMENT, missing)
    if len(text) > MAX_INSTRUCT_CHARS:
        raise VoiceLibraryError(
            ErrorCode.INVALID_ARGUMENT, f"instruct longer than {MAX_INSTRUCT_CHARS} chars"
        )
    return text


def clean_display_name(value: Optional[str], fallback: str) -> str:
    """A display name on one line (control characters become spaces); invalid-argument over the limit."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in (value or "")).split())
    if len(text) > MAX_DISPLAY_NAME_CHARS:
        raise VoiceLibraryError(
            ErrorCode.INVALID_ARGUMENT, f"display name longer than {MAX_DISPLAY_NAME_CHARS} chars"
        )
    return text or fallback


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _mtime_iso(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")


def _source_sha256(source: Any) -> Optional[str]:
    """Checksum of the clip as given (a file or bytes), to tell later which upload a voice came from."""
    try:
        if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
            return sha256_file(Path(source))
        if isinstance(source, (bytes, bytearray)):
            return hashlib.sha256(source).hexdigest()
    except OSError:
        pass
    return None


class VoiceLibrary:
    """The voice profiles under ``root``; the only writer of the library. Safe to share between threads."""

    def __init__(
        self, root: Path, max_voices: int = store.DEFAULT_MAX_VOICES, max_bytes: int = store.DEFAULT_MAX_BYTES
    ) -> None:
        self.root = Path(root)
        self.max_voices, self.max_bytes = max_voices, max_bytes
        self._lock = threading.Lock()  # serialises writers of this process; readers never need it
        self._warned: set[tuple[str, str]] = set()
        self._sha_memo: dict[str, tuple[tuple[int, int], str]] = {}  # describe re-lists: hash once
        if self.root.is_dir():
            store.recover(self.root)  # an overwrite cut short by a crash gets its previous version back

    # -- reading -------------------------------------------------------------------------------------------
    def list(self) -> list[VoiceProfile]:
        """All valid profiles sorted by name; broken ones are skipped with a (once per state) warning."""
        found: dict[str, VoiceProfile] = {}
        if not self.root.is_dir():
            return []
        try:
            entries = sorted(self.root.iterdir())
        except OSError as err:
            _LOGGER.warning("Cannot read voice library %s: %s", self.root, err)
            return []
        flat: list[Path] = []
        for entry in entries:
            if entry.name.startswith("."):  # temp dirs/files of in-flight writes, caches
                continue
            if entry.is_dir():
                profile = self._try_load(entry)
                if profile is not None:
                    found[profile.name] = profile
            elif entry.suffix.lower() in FLAT_AUDIO_EXTS:
                flat.append(entry)
        for audio in flat:
            profile = self._try_load(audio)
            if profile is not None and profile.name not in found:
                found[profile.name] = profile
        return [found[name] for name in sorted(found)]

    def get(self, name: str) -> VoiceProfile:
        key = normalize_name(name)
        directory = self.root / key
        if directory.is_dir():
            try:
                return self._load_dir(directory)
            except VoiceLibraryError:
                raise
            except Exception as err:  # noqa: BLE001 - anything unreadable is "corrupt"
                raise VoiceLibraryError(ErrorCode.VOICE_CORRUPT, f"voice {key!r} is corrupt: {err}") from None
        if self.root.is_dir():
            for audio in sorted(self.root.iterdir()):
                if audio.suffix.lower() in FLAT_AUDIO_EXTS and audio.stem.lower() == key and audio.is_file():
                    return self._load_flat(audio)
        raise VoiceLibraryError(ErrorCode.VOICE_NOT_FOUND, f"no voice named {key!r}")

    def _try_load(self, path: Path) -> Optional[VoiceProfile]:
        try:
            return self._load_dir(path) if path.is_dir() else self._load_flat(path)
        except Exception as err:  # noqa: BLE001 - one broken profile never hides the others
            try:
                state = str(path.stat().st_mtime_ns)
            except OSError:
                state = "gone"
            if (str(path), state) not in self._warned:  # once per state, not on every describe
                self._warned.add((str(path), state))
                _LOGGER.warning("Skipping voice %s: %s", path, err)
            return None

    def _load_dir(self, directory: Path) -> VoiceProfile:
        name = normalize_name(directory.name)
        if name != directory.name:
            raise VoiceLibraryError(
                ErrorCode.INVALID_NAME, f"directory name {directory.name!r} is not lower-case"
            )
        try:
            meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VoiceLibraryError(ErrorCode.VOICE_CORRUPT, f"{META_FILE} is missing") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise VoiceLibraryError(ErrorCode.VOICE_CORRUPT, f"{META_FILE} is unreadable: {err}") from None
        if not isinstance(meta, dict):
            raise VoiceLibraryError(ErrorCode.VOICE_CORRUPT, f"{META_FILE} is not a JSON object")
        kind = meta.get("kind")
        if kind not in LIBRARY_KINDS:
            raise VoiceLibraryError(ErrorCode.VOICE_CORRUPT, f"unknown kind {kind!r}")
        if meta.get("name", name) != name:
            _LOGGER.debug("meta.json of %s names %r; the directory name wins", directory, meta.get("name"))
        language = meta.get("language")
        common: dict[str, Any] = dict(
            name=name,
            kind=kind,
            display_name=str(meta.get("display_name") or name)[:MAX_DISPLAY_NAME_CHARS],  # hand-edited
            language=from_bcp47(language) if isinstance(language, str) else None,
            created=meta.get("created"),
            updated=meta.get("updated"),
            speed=read_speed(meta.get("speed")),
        )
        if kind in (VoiceKind.DESIGN, VoiceKind.STYLE):
            instruct = meta.get("instruct")
            if not isinstance(instruct, str) or not instruct.strip():
                raise VoiceLibraryError(ErrorCode.VOICE_CORRUPT, f"{kind} voice without instruct text")
            speaker = meta.get("speaker") if kind == VoiceKind.STYLE else None
            if kind == VoiceKind.STYLE and not (isinstance(speaker, str) and speaker.strip()):
                raise VoiceLibraryError(ErrorCode.VOICE_CORRUPT, "style voice without a speaker")
            return VoiceProfile(**common, instruct=instruct, speaker=speaker)
        audio = directory / AUDIO_FILE
        if not audio.is_file():
            raise VoiceLibraryError(ErrorCode.VOICE_CORRUPT, f"{AUDIO_FILE} is missing")
        transcript = meta.get("transcript")
        mode = meta.get("mode")
        if mode not in MODES or (mode == "icl" and not (isinstance(transcript, str) and transcript.strip())):
            raise VoiceLibraryError(ErrorCode.VOICE_CORRUPT, f"bad mode {mode!r} (icl needs a transcript)")
        return VoiceProfile(
            **common,
            transcript=transcript if isinstance(transcript, str) and transcript.strip() else None,
            mode=mode,
            audio_path=audio,
            sha256=meta.get("sha256"),
            instruct=meta.get("instruct") if isinstance(meta.get("instruct"), str) else None,
        )

    def _load_flat(self, audio: Path) -> VoiceProfile:
        name = normalize_name(audio.stem)
        transcript = None
        for txt in (audio.with_suffix(".txt"), audio.with_suffix(".TXT")):
            if txt.is_file():
                transcript = txt.read_text(encoding="utf-8").strip() or None
                break
        return VoiceProfile(
            name=name,
            kind="clone",
            display_name=audio.stem,
            transcript=transcript,
            mode="icl" if transcript else "xvector",
            audio_path=audio,
            sha256=self._sha256(audio),
            created=_mtime_iso(audio),
            updated=_mtime_iso(audio),
            read_only=True,
        )

    def _sha256(self, path: Path) -> str:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        memo = self._sha_memo.get(str(path))
        if memo is None or memo[0] != stamp:
            memo = (stamp, sha256_file(path))
            self._sha_memo[str(path)] = memo
        return memo[1]

    # -- writing -------------------------------------------------------------------------------------------
    def add_clone(
        self,
        name: str,
        audio_source: AudioSource,
        transcript: Optional[str] = None,
        language: Optional[str] = None,
        mode: str = "icl",
        *,
        display_name: Optional[str] = None,
        overwrite: bool = False,
        instruct: Optional[str] = None,
    ) -> VoiceProfile:
        """Store a clone voice from a reference clip (path, bytes, base64 or ``(array, sr)``). ``instruct``
        records the description a frozen design voice was made from."""
        key = normalize_name(name)
        lang = normalize_language(language)
        display = clean_display_name(display_name, name.strip())
        if mode not in MODES:
            raise VoiceLibraryError(
                ErrorCode.INVALID_ARGUMENT, f"mode must be one of {', '.join(MODES)}, got {mode!r}"
            )
        transcript = " ".join(transcript.split()) if transcript and transcript.strip() else None
        if transcript and len(transcript) > MAX_TRANSCRIPT_CHARS:
            raise VoiceLibraryError(
                ErrorCode.INVALID_ARGUMENT, f"transcript longer than {MAX_TRANSCRIPT_CHARS} chars"
            )
        label = str(audio_source) if isinstance(audio_source, (str, os.PathLike)) else "reference audio"
        label = label if len(label) < 200 else "reference audio"
        wave, warnings = decode_reference_audio(audio_source, transcript, label)
        source_sha = _source_sha256(audio_source)
        if mode == "icl" and not transcript:
            warnings.append(f"{label}: no transcript given; using x-vector mode (less similar than ICL)")
            mode = "xvector"
        pcm = np.frombuffer(to_pcm16(wave), dtype="<i2")
        for warning in warnings:
            _LOGGER.warning("Voice %r: %s", key, warning)

        def fill(tmp: Path) -> dict[str, Any]:
            sf.write(tmp / AUDIO_FILE, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
            meta = dict(
                kind="clone",
                transcript=transcript,
                mode=mode,
                audio=AUDIO_FILE,
                sha256=sha256_file(tmp / AUDIO_FILE),
                source_sha256=source_sha,
            )
            if instruct:
                meta["instruct"] = instruct
            return meta

        profile = self._create(key, display, lang, fill, overwrite)
        return dataclasses.replace(profile, warnings=tuple(warnings))

    def add_design(
        self,
        name: str,
        instruct: str,
        language: Optional[str] = None,
        *,
        display_name: Optional[str] = None,
        overwrite: bool = False,
    ) -> VoiceProfile:
        """Store a design voice: an instruct text for the VoiceDesign model."""
        key = normalize_name(name)
        lang = normalize_language(language)
        text = clean_instruct(instruct, "a design voice needs an instruct text")
        return self._create(
            key,
            clean_display_name(display_name, name.strip()),
            lang,
            lambda tmp: dict(kind="design", instruct=text),
            overwrite,
        )

    def remove(self, name: str) -> None:
        """Delete a profile: renamed to a hidden temp name first, so it disappears atomically."""
        key = normalize_name(name)
        directory = self.root / key
        with self._lock:
            if not directory.is_dir():
                profile = self.get(key)  # raises voice-not-found
                raise VoiceLibraryError(
                    ErrorCode.VOICE_READ_ONLY, f"{profile.audio_path} is an imported file; delete it by hand"
                )
            store.remove(self.root, key)
        _LOGGER.info("Removed voice %r", key)

    def _create(self, key: str, display: str, language: Optional[str], fill, overwrite: bool) -> VoiceProfile:
        display = clean_display_name(display, key)  # every writer (styles, freeze) too
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / key
        with self._lock:
            created = _now()
            if final.exists():
                if not overwrite:
                    raise VoiceLibraryError(ErrorCode.VOICE_EXISTS, f"a voice named {key!r} already exists")
                try:
                    created = self._load_dir(final).created or created
                except Exception:  # noqa: BLE001 - replacing a broken profile is fine
                    pass
            store.recover(self.root)
            store.clean_stale(self.root)
            store.check_quota(self.root, key, self.max_voices, self.max_bytes)
            tmp = Path(tempfile.mkdtemp(prefix=f"{store.TMP_PREFIX}{key}-", dir=self.root))
            os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the server may run as another user
            try:
                meta = dict(
                    name=key, display_name=display, language=language, created=created, updated=_now()
                )
                meta.update(fill(tmp))
                meta = {"version": 1, **meta}  # type: ignore[dict-item]
                atomic_write_bytes(tmp / META_FILE, json.dumps(meta, indent=2, ensure_ascii=False).encode())
                store.put_in_place(self.root, tmp, key, overwrite)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            # Read back under the lock: a DELETE right after must not turn this success into an error.
            profile = self._load_dir(final)
        _LOGGER.info("Saved %s voice %r in %s", meta["kind"], key, final)
        return profile
