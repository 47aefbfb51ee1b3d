"""HTTP errors in OpenAI's JSON shape, ``{"error": {"message", "type", "param", "code"}}``, with our stable
codes (core.vocab.ErrorCode) and the status of each from the one table, core.errors.HTTP_STATUS:

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

from ..core.errors import CodedError, http_status
from ..core.vocab import ErrorCode
from ..service.public import redact_paths

_LOGGER = logging.getLogger(__name__)

# aiohttp's own HTTP errors (unknown route, wrong method, body over client_max_size) -> our codes.
_HTTP_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED, 413: ErrorCode.REQUEST_TOO_LARGE}


class ApiError(CodedError):
    """A request-level HTTP failure: the client gets the JSON error with ``http_status(code)``; ``param``
    names the request field at fault."""

    def __init__(self, code: ErrorCode, message: str, param: Optional[str] = None) -> None:
        super().__init__(code, message, param=param)


def error_response(code: str, message: str, param: Optional[str] = None) -> web.Response:
    status = http_status(code)
    body = {
        "error": {
            "message": redact_paths(message),  # no server path in any answer (service/public.py)
            "type": "invalid_request_error" if status < 500 else "server_error",
            "param": param,
            "code": str(code),
        }
    }
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="wyoming-qwen3tts"'
    elif status == 503:
        headers["Retry-After"] = "1"  # busy or loading: worth a retry soon
    return web.json_response(body, status=status, headers=headers)


def from_http_exception(exc: web.HTTPException) -> web.Response:
    fallback = ErrorCode.BAD_REQUEST if exc.status < 500 else ErrorCode.INTERNAL_ERROR
    code = _HTTP_CODES.get(exc.status, fallback)
    message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    response = error_response(code, message or exc.reason)
    if exc.status != response.status:  # statuses without a code of ours keep their own number
        response.set_status(exc.status)
    return response
