"""The voices a server offers: built-in speakers plus the voice library's `clone:`, `design:` and `style:`
voices.

The library is re-read on every `describe` and every request, so voices added or removed with
`python -m wyoming_qwen3tts voices ...` (or by dropping files in) appear and disappear without a restart.
A voice is advertised only when the model that speaks it is configured (loaded or loadable on demand);
a request for a library voice whose model is off gets `model-not-loaded`, not `voice-not-found`.

Home Assistant never sends a language, only the voice a user picked in the pipeline's (per-language) voice
list. So `describe` advertises language-bound voices: each built-in speaker (and each library voice without
a language) once per model language, named ``ryan@de`` and described "Ryan · Deutsch (...)", only under that
language; a library voice with a language under its own language (``clone:anna`` as before). A bound name
always speaks its language; the plain names (``ryan``) are still accepted and keep the configured/guessed
language.
Over Wyoming a voice that is not found falls back to the default voice with a WARNING (``strict``:
voice-not-found, as the HTTP API always answers).
"""

from __future__ import annotations

import logging
from typing import Optional

from ..core.languages import BCP47, from_bcp47
from ..core.vocab import LIBRARY_KINDS, ErrorCode, ModelRole, VoiceKind
from ..voices.library import VoiceLibrary, VoiceLibraryError, VoiceProfile
from .errors import ServiceError
from .models import ModelPool
from .voice import Voice, bind

_LOGGER = logging.getLogger(__name__)

PREFIXES = LIBRARY_KINDS  # clone:NAME, design:NAME, style:NAME


def library_voice(profile: VoiceProfile) -> Voice:
    return Voice(
        name=f"{profile.kind}:{profile.name}",
        description=profile.display_name,
        language=profile.language,
        kind=profile.kind,
        profile=profile,
        speaker=getattr(profile, "speaker", None),
        speed=getattr(profile, "speed", None),
        instruct=profile.instruct if profile.kind == VoiceKind.STYLE else None,
        bound=profile.language is not None,
    )


class VoiceCatalog:
    def __init__(
        self,
        builtin: list[Voice],
        library: Optional[VoiceLibrary],
        models: ModelPool,
        default_voice: Optional[str] = None,
        languages: Optional[list[str]] = None,
        strict: bool = False,
    ) -> None:
        self.builtin = list(builtin)
        self.library = library
        self.models = models
        self.default_voice = default_voice
        self.languages = [name for name in (languages or []) if name in BCP47]  # engine names
        self.strict = strict

    def voices(self) -> list[Voice]:
        """The plain voices (one per speaker / library voice) whose model is configured."""
        voices = list(self.builtin) if self.models.enabled(ModelRole.CUSTOM_VOICE) else []
        if self.library is not None:
            for profile in self.library.list():
                voice = library_voice(profile)
                if self.models.enabled(voice.role):
                    voices.append(voice)
        return voices

    def advertised(self) -> list[Voice]:
        """What describe advertises: a voice with a language of its own (a library voice) as it is, under
        that language; every other voice (the built-in speakers, library voices without a language) bound
        to each model language. No model is touched: fast."""
        out: list[Voice] = []
        for voice in self.voices():
            if voice.language is None and self.languages:
                out.extend(bind(voice, language) for language in self.languages)
            else:
                out.append(voice)
        return out

    def find(self, name: Optional[str]) -> Voice:
        """The voice a request names (or the default voice); raises voice-not-found / model-not-loaded /
        voice-unusable. The HTTP API's lookup: a caller there typed the name and wants to hear a mistake."""
        wanted = (name or "").strip()
        if not wanted:
            return self._default()
        voice = self.lookup(wanted)
        if voice is None:
            available = ", ".join(v.name for v in self.voices()) or "none"
            raise ServiceError(ErrorCode.VOICE_NOT_FOUND, f"voice {name!r} not found; available: {available}")
        self.models.check_enabled(voice.role)
        return voice

    def find_or_default(self, name: Optional[str]) -> Voice:
        """Wyoming's lookup: a voice still selected in a Home Assistant pipeline after it was deleted or
        renamed speaks with the default voice (a WARNING names it) instead of failing every reply; with
        ``strict`` it is voice-not-found."""
        try:
            return self.find(name)
        except ServiceError as exc:
            if exc.code != ErrorCode.VOICE_NOT_FOUND or self.strict or not (name or "").strip():
                raise
        voice = self._default()
        _LOGGER.warning(
            "Voice %r not found (deleted or renamed?); using the default voice %s", name, voice.name
        )
        return voice

    def lookup(self, wanted: str) -> Optional[Voice]:
        """A voice by name: ``ryan``, ``ryan@de``, ``clone:anna``, ``anna``, ``style:night@en``."""
        base, at, code = wanted.strip().rpartition("@")
        if at:
            language = from_bcp47(code)
            voice = self._plain(base) if language else None
            return None if voice is None else bind(voice, language)  # type: ignore[arg-type]
        return self._plain(wanted)

    def _plain(self, wanted: str) -> Optional[Voice]:
        key = wanted.strip().lower()
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
            if err.code not in (ErrorCode.VOICE_NOT_FOUND, ErrorCode.INVALID_NAME):
                _LOGGER.warning("Voice %r is unusable: %s", wanted, err.message)
                raise ServiceError(
                    ErrorCode.VOICE_UNUSABLE, f"voice {wanted!r} is unusable: {err.message}"
                ) from None
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
            raise ServiceError(ErrorCode.VOICE_NOT_FOUND, "no voices are available")
        return voices[0]
