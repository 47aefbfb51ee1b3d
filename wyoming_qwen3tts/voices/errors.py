"""The voice library's exception type: the one coded error (core/errors.py), still a ValueError."""

from __future__ import annotations

from ..core.errors import CodedError
from ..core.vocab import ErrorCode

__all__ = ["ErrorCode", "VoiceLibraryError"]


class VoiceLibraryError(CodedError, ValueError):
    """A library operation failed; ``code`` is stable (the CLI exit message, a Wyoming or HTTP error).

    Codes: ``invalid-name``, ``invalid-language``, ``invalid-argument``, ``voice-exists``,
    ``voice-not-found``, ``voice-corrupt``, ``voice-read-only``, ``voice-quota``, ``audio-unreadable``,
    ``audio-too-short``, ``audio-too-long``, ``audio-too-large``, ``audio-silent``, ``freeze-failed``.
    """

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
