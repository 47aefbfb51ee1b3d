"""The voice library's one exception type, with stable codes."""

from __future__ import annotations


class VoiceLibraryError(ValueError):
    """A library operation failed; ``code`` is stable (e.g. for the CLI exit message or a Wyoming error).

    Codes: ``invalid-name``, ``invalid-language``, ``invalid-argument``, ``voice-exists``,
    ``voice-not-found``, ``voice-corrupt``, ``voice-read-only``, ``audio-unreadable``, ``audio-too-short``,
    ``audio-too-long``, ``audio-too-large``, ``audio-silent``, ``freeze-failed``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
