"""The voices a server offers: built-in speakers plus the voice library's `clone:` and `design:` voices.

The library is re-read on every `describe` and every request, so voices added or removed with
`python -m wyoming_qwen3tts voices ...` (or by dropping files in) appear and disappear without a restart.
A voice is advertised only when the model that speaks it is configured (loaded or loadable on demand);
a request for a library voice whose model is off gets `model-not-loaded`, not `voice-not-found`.
"""

from __future__ import annotations

import logging
from typing import Optional

from ..voices.library import VoiceLibrary, VoiceLibraryError, VoiceProfile
from .errors import ServiceError
from .models import ModelPool
from .voice import Voice

_LOGGER = logging.getLogger(__name__)

PREFIXES = ("clone", "design")


def library_voice(profile: VoiceProfile) -> Voice:
    return Voice(
        name=f"{profile.kind}:{profile.name}",
        description=profile.display_name,
        language=profile.language,
        kind=profile.kind,
        profile=profile,
    )


class VoiceCatalog:
    def __init__(
        self,
        builtin: list[Voice],
        library: Optional[VoiceLibrary],
        models: ModelPool,
        default_voice: Optional[str] = None,
    ) -> None:
        self.builtin = list(builtin)
        self.library = library
        self.models = models
        self.default_voice = default_voice

    def voices(self) -> list[Voice]:
        """What describe advertises right now."""
        voices = list(self.builtin) if self.models.enabled("custom_voice") else []
        if self.library is not None:
            for profile in self.library.list():
                voice = library_voice(profile)
                if self.models.enabled(voice.role):
                    voices.append(voice)
        return voices

    def find(self, name: Optional[str]) -> Voice:
        """The voice a request names (or the default voice); raises voice-not-found / model-not-loaded."""
        wanted = (name or "").strip()
        if not wanted:
            return self._default()
        voice = self.lookup(wanted)
        if voice is None:
            available = ", ".join(v.name for v in self.voices()) or "none"
            raise ServiceError("voice-not-found", f"voice {name!r} not found; available: {available}")
        self.models.check_enabled(voice.role)
        return voice

    def lookup(self, wanted: str) -> Optional[Voice]:
        key = wanted.lower()
        for voice in self.builtin:
            if voice.name.lower() == key:
                return voice
        if self.library is None:
            return None
        prefix, _, bare = key.partition(":")
        if not bare:  # a bare library name is accepted too ("anna" for "clone:anna")
            prefix, bare = "", key
        elif prefix not in PREFIXES:
            return None
        try:
            profile = self.library.get(bare)
        except VoiceLibraryError as err:
            if err.code not in ("voice-not-found", "invalid-name"):
                _LOGGER.warning("Voice %r is unusable: %s", wanted, err.message)
                raise ServiceError("voice-unusable", f"voice {wanted!r} is unusable: {err.message}") from None
            return None
        if prefix and prefix != profile.kind:
            return None
        return library_voice(profile)

    def _default(self) -> Voice:
        if self.default_voice:
            voice = self.lookup(self.default_voice)
            if voice is not None and self.models.enabled(voice.role):
                return voice
            _LOGGER.warning("Default voice %r is not available; using the first voice", self.default_voice)
        voices = self.voices()
        if not voices:
            raise ServiceError("voice-not-found", "no voices are available")
        return voices[0]
