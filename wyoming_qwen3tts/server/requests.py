"""Strict reading of the client events a TTS server acts on. wyoming's ``from_event`` trusts field types (a
number as ``text``, a string as ``voice``) and raises KeyError/AttributeError deep inside the handler, which
dropped the connection without a word; here every wrong type is a ``bad-request`` ServiceError."""

from __future__ import annotations

from typing import Any, Optional

from wyoming.event import Event

from ..core.languages import from_bcp47
from ..core.vocab import ErrorCode
from ..service.errors import ServiceError
from ..service.ssml import is_ssml


def _str_field(data: dict[str, Any], key: str, what: str, required: bool = False) -> Optional[str]:
    value = data.get(key)
    if value is None:
        if required:
            raise ServiceError(ErrorCode.BAD_REQUEST, f"{what} needs a {key!r} string")
        return None
    if not isinstance(value, str):
        raise ServiceError(
            ErrorCode.BAD_REQUEST, f"{what}: {key!r} must be a string, got {type(value).__name__}"
        )
    return value


def voice_name(event: Event) -> Optional[str]:
    """The ``voice.name`` of a synthesize or synthesize-start, checked."""
    voice = event.data.get("voice")
    if voice is None:
        return None
    if not isinstance(voice, dict):
        raise ServiceError(ErrorCode.BAD_REQUEST, f"{event.type}: 'voice' must be an object")
    return _str_field(voice, "name", f"{event.type} voice")


def voice_language(event: Event) -> Optional[str]:
    """The engine language a synthesize or synthesize-start asks for by ``voice.language``, or None. The
    protocol sends it only without a ``voice.name`` ("a voice for this language"; a name overrides it); a
    language the model does not speak is ignored (the voice's own language, or detection, decides)."""
    voice = event.data.get("voice")
    if not isinstance(voice, dict) or voice.get("name") is not None:
        return None
    return from_bcp47(_str_field(voice, "language", f"{event.type} voice"))


def text_of(event: Event) -> str:
    """The ``text`` of a synthesize or synthesize-chunk, checked."""
    return _str_field(event.data, "text", event.type, required=True) or ""


def ping_text(event: Event) -> Optional[str]:
    value = event.data.get("text")
    return value if isinstance(value, str) else None


def ssml_of(event: Event) -> bool:
    """Whether a synthesize or synthesize-start says ``text_format: "ssml"`` (wyoming 1.10); checked."""
    return is_ssml(event.data.get("text_format"), f"{event.type} text_format")
