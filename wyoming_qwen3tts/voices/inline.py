"""Per-request clone voices ("inline cloning"): a reference clip sent with a request instead of a stored
voice.

The clip goes through the voice library's own upload path (:meth:`VoiceLibrary.add_clone`: the same decoding,
limits and checks as ``voices add`` and ``POST /v1/voices``) into a small hidden library,
``<voices>/.inline/``, one profile per distinct (clip, transcript, mode), named by their sha256. The profile
then runs through the ordinary :class:`~.prompts.PromptCache`, so a client that sends the same clip on every
request (as the OpenAI-compatible Qwen3-TTS servers' clients do) pays for the encoders once, and the prompt
survives restarts next to the clip.

At most ``MAX_ENTRIES`` clips are kept; the least recently used ones are deleted (with their prompts, on disk
and in memory), so a client cloning a new clip per request cannot fill the disk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Optional

from ..core.vocab import ErrorCode
from .errors import VoiceLibraryError
from .library import VoiceLibrary, VoiceProfile
from .prompts import PromptCache

_LOGGER = logging.getLogger(__name__)

MAX_ENTRIES = 32
DIR_NAME = ".inline"  # hidden: the library's listing skips it
PREFIX = "inline:"  # profile names with a colon cannot collide with library voices (a-z 0-9 _ -)


def inline_key(audio: bytes, transcript: Optional[str], mode: str) -> str:
    """The clip's identity: sha256 over the audio bytes, the transcript and the mode (64 hex digits)."""
    digest = hashlib.sha256(audio)
    digest.update(b"\0" + (transcript or "").encode("utf-8") + b"\0" + mode.encode("ascii"))
    return digest.hexdigest()


class InlineVoices:
    """Inline reference clips stored as hidden clone profiles, bounded in number. Thread-safe."""

    def __init__(
        self, root: Path, prompts: Optional[PromptCache] = None, max_entries: int = MAX_ENTRIES
    ) -> None:
        self.root = Path(root)
        self.prompts = prompts
        self.max_entries = max(1, max_entries)
        self._lock = threading.Lock()

    @classmethod
    def beside(cls, library: Optional[VoiceLibrary], prompts: Optional[PromptCache]) -> "InlineVoices":
        """Under the voice library (``<voices>/.inline``) when it is writable, else in the temp folder."""
        if library is not None:
            root = library.root / DIR_NAME
            try:
                root.mkdir(parents=True, exist_ok=True)
                if os.access(root, os.W_OK):
                    return cls(root, prompts)
            except OSError:
                pass
        fallback = Path(tempfile.gettempdir()) / f"wyoming-qwen3tts-inline-{os.getuid()}"
        _LOGGER.info("Inline reference clips go to %s (the voice library is not writable)", fallback)
        return cls(fallback, prompts)

    def profile(self, audio: bytes, transcript: Optional[str], mode: str) -> VoiceProfile:
        """The clone profile of a clip (stored on first use); raises VoiceLibraryError like an upload."""
        key = inline_key(audio, transcript, mode)[:48]
        library = VoiceLibrary(self.root)
        with self._lock:
            try:
                profile = library.get(key)
                # Recently used: evicted last. The folder, not the clip: the prompt cache re-hashes a clip
                # whose mtime changed.
                os.utime(self.root / key)
            except VoiceLibraryError as err:
                if err.code != ErrorCode.VOICE_NOT_FOUND:
                    _LOGGER.warning(
                        "Inline clip %s is unusable (%s); storing it again", key[:12], err.message
                    )
                profile = library.add_clone(
                    key, audio, transcript, None, mode, display_name="inline reference", overwrite=True
                )
                self._evict(library, keep=key)
        return dataclasses.replace(profile, name=PREFIX + key)

    def _evict(self, library: VoiceLibrary, keep: str) -> None:
        entries = [
            p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != keep
        ]
        excess = len(entries) + 1 - self.max_entries
        if excess <= 0:
            return
        entries.sort(key=_last_used)
        for entry in entries[:excess]:
            shutil.rmtree(entry, ignore_errors=True)
            if self.prompts is not None:
                self.prompts.forget(PREFIX + entry.name)
            _LOGGER.debug("Dropped the inline clip %s (least recently used)", entry.name[:12])


def _last_used(directory: Path) -> float:
    try:
        return max(p.stat().st_mtime for p in [directory, *directory.iterdir()])
    except (OSError, ValueError):
        return 0.0
