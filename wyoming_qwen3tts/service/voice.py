"""A voice the service can speak with, the built-in speakers' cards, and the model languages as BCP-47."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

from ..core.languages import BCP47
from ..core.vocab import VoiceKind

# The 9 built-in CustomVoice speakers: display name and a short character (from the model card).
SPEAKER_CARDS = {
    "vivian": ("Vivian", "bright young female voice, Chinese"),
    "serena": ("Serena", "warm, gentle young female voice, Chinese"),
    "uncle_fu": ("Uncle Fu", "seasoned male voice with a low, mellow timbre, Chinese"),
    "dylan": ("Dylan", "youthful Beijing male voice, Beijing dialect"),
    "eric": ("Eric", "lively Chengdu male voice, Sichuan dialect"),
    "ryan": ("Ryan", "dynamic male voice with strong rhythm, English"),
    "aiden": ("Aiden", "sunny American male voice, English"),
    "ono_anna": ("Ono Anna", "playful Japanese female voice"),
    "sohee": ("Sohee", "warm Korean female voice"),
}


ROLES = {kind.value: kind.role.value for kind in VoiceKind}  # voice kind -> the model role that speaks it
# How a language-bound voice's display name says its language (Home Assistant shows the description).
NATIVE_NAMES = {
    "english": "English",
    "chinese": "中文",
    "german": "Deutsch",
    "italian": "Italiano",
    "portuguese": "Português",
    "spanish": "Español",
    "japanese": "日本語",
    "korean": "한국어",
    "french": "Français",
    "russian": "Русский",
}


@dataclass(frozen=True)
class Voice:
    """A voice the server can speak with: how to ask the engine for it."""

    name: str  # what clients send in synthesize.voice.name
    description: str  # what Home Assistant shows
    speaker: Optional[str] = None  # built-in CustomVoice speaker
    language: Optional[str] = None  # the voice's own language (engine name), if it has one
    kind: str = VoiceKind.BUILTIN.value  # core.vocab.VoiceKind
    profile: Any = None  # the library's VoiceProfile of clone/design/style voices
    bound: bool = False  # the language is part of the name ("ryan@de"): never guessed
    speed: Optional[float] = None  # the library's per-voice speaking rate (None: the server's --speed)
    instruct: Optional[str] = None  # a style voice's instruction for its built-in speaker

    @property
    def role(self) -> str:
        """The model type that speaks this voice."""
        return ROLES[self.kind]


def bind(voice: Voice, language: str) -> Voice:
    """``voice`` fixed to ``language`` (engine name): named ``<name>@<code>``, described in that language."""
    code = BCP47[language]
    head, paren, rest = voice.description.partition(" (")  # "Ryan (character)" -> "Ryan · Deutsch (...)"
    return replace(
        voice,
        name=f"{voice.name}@{code}",
        description=f"{head} · {NATIVE_NAMES.get(language, code)}{paren}{rest}",
        language=language,
        bound=True,
    )


def language_codes(engine_languages: list[str]) -> list[str]:
    """The model's languages as BCP-47 codes, English first (Home Assistant's default is the first)."""
    codes = [BCP47[name] for name in engine_languages if name in BCP47]
    return sorted(codes, key=lambda c: (c != "en", c))


def builtin_voices(speakers: list[str]) -> list[Voice]:
    voices = []
    for speaker in speakers:
        title, character = SPEAKER_CARDS.get(speaker, (speaker.replace("_", " ").title(), "built-in voice"))
        voices.append(Voice(name=speaker, description=f"{title} ({character})", speaker=speaker))
    return voices
