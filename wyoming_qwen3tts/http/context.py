"""What every HTTP route can reach: the Wyoming server's shared state and the HTTP settings."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from aiohttp import web

from ..core.vocab import ErrorCode
from ..service.state import ServerState
from .auth import Access
from .errors import ApiError

_LOGGER = logging.getLogger(__name__)


@dataclass
class HttpContext:
    state: ServerState
    access: Access = field(default_factory=Access)
    voice_aliases: dict[str, str] = field(default_factory=dict)  # OpenAI voice name -> our voice name
    model_names: list[str] = field(default_factory=list)  # checkpoint names for /v1/models


CONTEXT = web.AppKey("context", HttpContext)
# Request key: a streamed response has sent its headers (typed keys since aiohttp 3.12, strings before).
STARTED: Any = web.RequestKey("response_started", bool) if hasattr(web, "RequestKey") else "response_started"


def context(request: web.Request) -> HttpContext:
    return request.app[CONTEXT]


async def read_json(request: web.Request) -> dict[str, Any]:
    """The JSON object body; invalid-json otherwise (see json_object)."""
    return json_object(request, await request.read())  # the size cap first (413), then the type


def json_object(request: web.Request, data: Union[bytes, bytearray]) -> dict[str, Any]:
    """``data`` (the request's body) as a JSON object; invalid-json otherwise. The body must say
    application/json: a web page can send text/plain without asking (a CORS "simple request"), so such a
    body is never read as JSON."""
    if request.content_type != "application/json":
        raise ApiError(
            ErrorCode.INVALID_JSON, f"send the body as application/json, not {request.content_type[:80]!r}"
        )
    try:
        body = json.loads(data.decode(request.charset or "utf-8"))
    except (ValueError, LookupError) as exc:
        raise ApiError(ErrorCode.INVALID_JSON, f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # deeply nested JSON
        raise ApiError(ErrorCode.INVALID_JSON, "the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(ErrorCode.INVALID_JSON, "the body must be a JSON object")
    return body


def refuse_unknown_fields(params: Any, known: frozenset[str], route: str) -> None:
    """Refuses a field ``route`` does not implement, naming it (a silently ignored field hides a client's
    mistake)."""
    unknown = sorted(set(params) - known)
    if unknown:
        raise ApiError(
            ErrorCode.INVALID_FIELD,
            f"unknown field {unknown[0]!r}; {route} takes {', '.join(sorted(known))}",
            param=unknown[0],
        )


def optional_str(body: dict[str, Any], key: str, limit: int = 100_000) -> Optional[str]:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(ErrorCode.INVALID_FIELD, f"{key} must be a string", param=key)
    if len(value) > limit:
        raise ApiError(ErrorCode.INVALID_FIELD, f"{key} is longer than {limit} characters", param=key)
    return value
