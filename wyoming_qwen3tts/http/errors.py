"""HTTP errors in OpenAI's JSON shape, ``{"error": {"message", "type", "param", "code"}}``, with our stable
codes (the Wyoming error codes plus the voice library's and a few HTTP ones) and proper statuses.

* 400: bad-request, empty-text, invalid-json, invalid-field, unsupported-format, invalid-name,
  invalid-language, invalid-argument, audio-unreadable, audio-too-short, audio-too-long, audio-silent
* 401: invalid-api-key; 403: forbidden (the peer address is not in the allow-list)
* 404: voice-not-found, not-found; 405: method-not-allowed
* 409: voice-exists, voice-read-only
* 413: text-too-long, audio-too-large, request-too-large; 507: voice-quota (the library is full)
* 422: voice-unusable, voice-corrupt (the voice exists, but its files cannot be used)
* 500: synthesis-failed, freeze-failed, internal-error
* 503: server-busy, model-not-loaded, model-loading, server-stopping, not-ready (with ``Retry-After: 1``)
"""

from __future__ import annotations

import logging
from typing import Optional

from aiohttp import web

from ..service.public import redact_paths

_LOGGER = logging.getLogger(__name__)

STATUS = {
    "bad-request": 400,
    "empty-text": 400,
    "invalid-json": 400,
    "invalid-field": 400,
    "unsupported-format": 400,
    "invalid-name": 400,
    "invalid-language": 400,
    "invalid-argument": 400,
    "audio-unreadable": 400,
    "audio-too-short": 400,
    "audio-too-long": 400,
    "audio-silent": 400,
    "invalid-api-key": 401,
    "forbidden": 403,
    "voice-not-found": 404,
    "not-found": 404,
    "method-not-allowed": 405,
    "voice-exists": 409,
    "voice-read-only": 409,
    "text-too-long": 413,
    "audio-too-large": 413,
    "request-too-large": 413,
    "voice-quota": 507,
    "voice-unusable": 422,
    "voice-corrupt": 422,
    "synthesis-failed": 500,
    "freeze-failed": 500,
    "internal-error": 500,
    "server-busy": 503,
    "model-not-loaded": 503,
    "model-loading": 503,
    "server-stopping": 503,
    "not-ready": 503,
}
# aiohttp's own HTTP errors (unknown route, wrong method, body over client_max_size) -> our codes.
_HTTP_CODES = {404: "not-found", 405: "method-not-allowed", 413: "request-too-large"}


class ApiError(Exception):
    """A request-level HTTP failure: the client gets the JSON error with ``STATUS[code]``."""

    def __init__(self, code: str, message: str, param: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def error_response(code: str, message: str, param: Optional[str] = None) -> web.Response:
    status = STATUS.get(code, 500)
    body = {
        "error": {
            "message": redact_paths(message),  # no server path in any answer (service/public.py)
            "type": "invalid_request_error" if status < 500 else "server_error",
            "param": param,
            "code": code,
        }
    }
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="wyoming-qwen3tts"'
    elif status == 503:
        headers["Retry-After"] = "1"  # busy or loading: worth a retry soon
    return web.json_response(body, status=status, headers=headers)


def from_http_exception(exc: web.HTTPException) -> web.Response:
    code = _HTTP_CODES.get(exc.status, "bad-request" if exc.status < 500 else "internal-error")
    message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    response = error_response(code, message or exc.reason)
    if exc.status != response.status:  # statuses without a code of ours keep their own number
        response.set_status(exc.status)
    return response
