"""How profile directories are put in place, replaced, removed and recovered on disk, and the library quotas.

Overwriting a voice takes two renames (``final -> .old-<name>-<id>``, then ``tmp -> final``). A crash
between them used to hide both versions until the next write deleted the old one. Now:

* the old version is parked under ``.old-`` (deletions use ``.trash-``), so :func:`recover` can tell them
  apart: at start-up (every :class:`VoiceLibrary` runs it) and before each write, a name that is missing
  while a ``.old-`` copy of it exists gets that copy back; ``.old-`` copies whose name exists are removed;
* every rename is followed by an fsync of the library directory, so a power loss cannot undo it.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterator

from ..core.vocab import ErrorCode
from .errors import VoiceLibraryError

_LOGGER = logging.getLogger(__name__)

OLD_PREFIX = ".old-"  # the previous version of an overwritten voice, until the new one is in place
TRASH_PREFIX = ".trash-"  # a deleted voice, until its files are gone
TMP_PREFIX = ".tmp-"  # a voice being written
STALE_SECONDS = 3600.0
DEFAULT_MAX_VOICES = 500
DEFAULT_MAX_BYTES = 2048 << 20


def fsync_dir(path: Path) -> None:
    """Makes renames in ``path`` durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    try:
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())
    except OSError:
        pass


def _parked_name(entry: Path, prefix: str) -> str:
    """``.old-anna-1a2b3c4d`` -> ``anna`` (names may contain dashes; the id never does)."""
    return entry.name[len(prefix) :].rsplit("-", 1)[0]


def recover(root: Path) -> None:
    """Puts back the previous version of voices whose overwrite was cut short; drops obsolete copies."""
    try:
        parked = sorted(root.glob(OLD_PREFIX + "*"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    changed = False
    for entry in parked:
        name = _parked_name(entry, OLD_PREFIX)
        final = root / name
        try:
            if not final.exists():
                os.rename(entry, final)  # the newest parked copy wins
                _LOGGER.warning(
                    "Voice %r: restored the previous version after an interrupted overwrite", name
                )
            else:
                shutil.rmtree(entry, ignore_errors=True)
            changed = True
        except OSError as err:
            _LOGGER.warning("Cannot recover %s: %s", entry, err)
    if changed:
        fsync_dir(root)


def clean_stale(root: Path, max_age: float = STALE_SECONDS) -> None:
    """Deletes temp/trash directories left behind by writers that died (never listed as voices)."""
    for entry in root.glob(".t*-*"):
        try:
            if (
                entry.name.startswith((TMP_PREFIX, TRASH_PREFIX))
                and time.time() - entry.stat().st_mtime > max_age
            ):
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def put_in_place(root: Path, tmp: Path, key: str, overwrite: bool) -> None:
    """Publishes the finished profile ``tmp`` as ``root/key``; the previous version (overwrite) is parked
    under ``.old-`` until the new one is in place, then deleted."""
    final = root / key
    for path in _files(tmp):  # the clip (soundfile does not fsync) and meta.json
        _fsync_file(path)
    fsync_dir(tmp)
    old = root / f"{OLD_PREFIX}{key}-{uuid.uuid4().hex[:8]}"
    parked = False
    if overwrite:
        try:
            os.replace(final, old)
            parked = True
        except FileNotFoundError:
            pass
    try:
        os.replace(tmp, final)
    except OSError:  # another writer created it meanwhile (rename onto a non-empty dir fails)
        if parked and not final.exists():
            os.rename(old, final)
        raise VoiceLibraryError(ErrorCode.VOICE_EXISTS, f"a voice named {key!r} already exists") from None
    fsync_dir(root)
    if parked:
        shutil.rmtree(old, ignore_errors=True)


def remove(root: Path, key: str) -> None:
    """Deletes ``root/key``: renamed away first, so it disappears atomically."""
    trash = root / f"{TRASH_PREFIX}{key}-{uuid.uuid4().hex[:8]}"
    os.replace(root / key, trash)
    fsync_dir(root)
    shutil.rmtree(trash, ignore_errors=True)


def _files(root: Path) -> Iterator[Path]:
    for directory, _dirs, files in os.walk(root):
        for name in files:
            yield Path(directory) / name


def check_quota(root: Path, key: str, max_voices: int, max_bytes: int) -> None:
    """Refuses a new voice beyond ``max_voices`` profiles, or any write once the library (prompt caches
    included) uses ``max_bytes``. Raises ``voice-quota``."""
    try:
        entries = [e for e in root.iterdir() if not e.name.startswith(".")]
    except OSError:
        return
    names = {e.name.lower() if e.is_dir() else e.stem.lower() for e in entries}
    if key not in names and len(names) >= max_voices:
        raise VoiceLibraryError(
            ErrorCode.VOICE_QUOTA, f"the library holds {len(names)} voices, the limit is {max_voices}"
        )
    used = 0
    for path in _files(root):
        try:
            used += path.stat().st_size
        except OSError:
            pass
    if used >= max_bytes:
        raise VoiceLibraryError(
            ErrorCode.VOICE_QUOTA, f"the library uses {used >> 20} MB, the limit is {max_bytes >> 20} MB"
        )
