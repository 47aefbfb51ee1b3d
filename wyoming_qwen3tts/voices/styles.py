"""Style voices and per-voice speed in the voice library.

A style voice (``kind: style`` in meta.json) is a built-in CustomVoice speaker plus a standing instruction
("calm, quiet night-time voice") and optionally a speed: what a Home Assistant user can pick in a pipeline,
since Home Assistant itself sends no instruction or speed. Any voice may carry a ``speed`` (``voices add
--speed``, ``voices set NAME --speed``); 1 (or none) means the server's ``--speed``.
"""

from __future__ import annotations

import json
from typing import Optional

from ..core.files import atomic_write_bytes
from ..core.vocab import ErrorCode
from .errors import VoiceLibraryError
from .library import (
    META_FILE,
    VoiceLibrary,
    VoiceProfile,
    _now,
    clean_instruct,
    normalize_language,
    normalize_name,
)
from .validation import check_speed

SPEAKER_RE_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"


def add_style(
    library: VoiceLibrary,
    name: str,
    speaker: str,
    instruct: str,
    language: Optional[str] = None,
    speed: Optional[float] = None,
    *,
    display_name: Optional[str] = None,
    overwrite: bool = False,
) -> VoiceProfile:
    """Store a style voice; the speaker is checked against the model when it is used (model-specific)."""
    key = normalize_name(name)
    lang = normalize_language(language)
    who = (speaker or "").strip().lower()
    if not who or any(ch not in SPEAKER_RE_CHARS for ch in who):
        raise VoiceLibraryError(
            ErrorCode.INVALID_ARGUMENT, f"invalid speaker {speaker!r} (e.g. ryan, ono_anna)"
        )
    text = clean_instruct(instruct, "a style voice needs an instruction")
    rate = check_speed(speed)

    def fill(tmp) -> dict:
        meta: dict = dict(kind="style", speaker=who, instruct=text)
        if rate is not None:
            meta["speed"] = rate
        return meta

    return library._create(key, display_name or name.strip(), lang, fill, overwrite)


def set_speed(library: VoiceLibrary, name: str, speed: Optional[float]) -> VoiceProfile:
    """Sets (or with None / 1, clears) a stored voice's speed; atomic like every library write."""
    key = normalize_name(name)
    profile = library.get(key)  # raises voice-not-found / voice-corrupt
    if profile.read_only:
        raise VoiceLibraryError(
            ErrorCode.VOICE_READ_ONLY, f"{profile.name!r} is an imported file; add it as a voice"
        )
    rate = check_speed(speed)
    path = library.root / key / META_FILE
    with library._lock:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if rate is None:
            meta.pop("speed", None)
        else:
            meta["speed"] = rate
        meta["updated"] = _now()
        atomic_write_bytes(path, json.dumps(meta, indent=2, ensure_ascii=False).encode())
    return library.get(key)
