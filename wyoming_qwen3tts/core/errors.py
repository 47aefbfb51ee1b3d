"""One coded error type for every layer, and one table from its code to the HTTP status.

A request-level failure raises ``CodedError(ErrorCode.X, message, **details)`` (or one of its thin
subclasses: service's ``ServiceError``, HTTP's ``ApiError``, the voice library's ``VoiceLibraryError``, which
exist only so a layer can catch its own). Both front doors answer it the same way: the Wyoming handler sends
``error(text=message, code=wyoming_code(code))``, the HTTP app the JSON error with ``http_status(code)``.
"""

from __future__ import annotations

from typing import Any

from .vocab import ErrorCode

E = ErrorCode
# code -> HTTP status. 503s answer with ``Retry-After: 1``, 401 with ``WWW-Authenticate`` (http/errors.py).
HTTP_STATUS: dict[ErrorCode, int] = {
    E.BAD_REQUEST: 400,
    E.EMPTY_TEXT: 400,
    E.INVALID_JSON: 400,
    E.INVALID_FIELD: 400,
    E.UNSUPPORTED_FORMAT: 400,
    E.INVALID_NAME: 400,
    E.INVALID_LANGUAGE: 400,
    E.INVALID_ARGUMENT: 400,
    E.AUDIO_UNREADABLE: 400,
    E.AUDIO_TOO_SHORT: 400,
    E.AUDIO_TOO_LONG: 400,
    E.AUDIO_SILENT: 400,
    E.INVALID_API_KEY: 401,
    E.FORBIDDEN: 403,
    E.VOICE_NOT_FOUND: 404,
    E.NOT_FOUND: 404,
    E.METHOD_NOT_ALLOWED: 405,
    E.VOICE_EXISTS: 409,
    E.VOICE_READ_ONLY: 409,
    E.TEXT_TOO_LONG: 413,
    E.AUDIO_TOO_LARGE: 413,
    E.REQUEST_TOO_LARGE: 413,
    E.VOICE_UNUSABLE: 422,
    E.VOICE_CORRUPT: 422,
    E.SYNTHESIS_FAILED: 500,
    E.FREEZE_FAILED: 500,
    E.INTERNAL_ERROR: 500,
    E.SERVER_BUSY: 503,
    E.MODEL_NOT_LOADED: 503,
    E.MODEL_LOADING: 503,
    E.SERVER_STOPPING: 503,
    E.NOT_READY: 503,
    E.TIMEOUT: 504,  # Wyoming only (an idle stream); never raised on HTTP
    E.VOICE_QUOTA: 507,  # the library is full
}
del E


def http_status(code: str) -> int:
    """The HTTP status of a code; an unknown code is a server fault (500)."""
    try:
        return HTTP_STATUS[ErrorCode(code)]
    except ValueError:
        return 500


def wyoming_code(code: str) -> str:
    """The Wyoming ``error`` event's ``code``: the code's own value, a plain ``str`` on the wire."""
    return str(code)  # an ErrorCode formats as its value (core/vocab.py)


class CodedError(Exception):
    """A request-level failure with a stable ``code``; the connection stays usable. ``details`` carry
    extras for one front door (HTTP's ``param``: the request field at fault)."""

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.details = details

    @property
    def param(self) -> Any:
        return self.details.get("param")

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]
