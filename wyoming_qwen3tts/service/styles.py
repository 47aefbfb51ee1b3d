"""Style voices: a built-in speaker plus a standing instruction ("calm, quiet night-time voice"), stored in
the voice library (``voices style NAME --speaker ryan --instruct ...``) and picked like any other voice.

Only the 1.7B CustomVoice model follows instructions (the 0.6B one ignores them), so on a 0.6B main model a
style voice answers ``model-not-loaded`` with the reason instead of silently speaking without its style.
"""

from __future__ import annotations

from typing import Any, Optional

from ..core.vocab import ErrorCode
from .errors import ServiceError
from .models import ModelNotLoaded
from .voice import Voice


def style_args(voice: Voice, engine: Any, instruct: Optional[str] = None) -> dict[str, Any]:
    """The engine arguments of a style voice; a request's own instructions are appended to the style."""
    if engine.config.is_small:
        raise ModelNotLoaded(
            f"style voice {voice.name!r} needs the 1.7B CustomVoice model (the 0.6B model ignores "
            "instructions); set --model Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice"
        )
    if voice.speaker not in engine.speakers:
        raise ServiceError(
            ErrorCode.VOICE_UNUSABLE, f"style voice {voice.name!r}: no built-in speaker {voice.speaker!r}"
        )
    text = voice.instruct or ""
    return {"speaker": voice.speaker, "instruct": f"{text} {instruct}".strip() if instruct else text}
