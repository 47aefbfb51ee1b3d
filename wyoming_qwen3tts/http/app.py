"""The aiohttp application: routes, the error and access middlewares, the web page, health, start/stop.

Routes (all under the same optional API key and allow-list, see auth.py):

* ``POST /v1/audio/speech``, ``GET /v1/audio/voices``, ``GET /v1/audio/models``, ``GET /v1/models``
  (openai_api.py); inline cloning, ``POST /v1/audio/voice-clone`` (inline_clone.py)
* ``GET|POST /api/tts``, ``GET /speakers``, ``GET /info`` (coqui_api.py)
* ``GET|POST /v1/voices``, ``GET|DELETE /v1/voices/{name}``, ``GET /v1/voices/{name}/audio`` (voices_api.py)
* ``GET /`` the web page: no key needed for the page itself (it holds no data and asks for the key when
  the API wants one); behind Home Assistant ingress it gets ``<base href="$X-Ingress-Path/">`` so that
  its relative URLs go through the ingress proxy.
* ``GET /healthz`` (the process answers; also ``/health``, the other Qwen3-TTS servers' probe) and
  ``GET /readyz`` (the main model is loaded and warmed up):
  never behind the key or the allow-list, so container health checks keep working.

The server runs on the Wyoming server's event loop: every request is a coroutine, synthesis runs on the
engines' worker threads, encoding and file work in worker threads.
"""

from __future__ import annotations

import functools
import logging
import re
from importlib import resources
from typing import Any, Awaitable, Callable, Optional

from aiohttp import web

from ..core.errors import CodedError
from ..core.vocab import ErrorCode
from ..service.logsafe import safe
from ..service.models import ROLE_LABELS
from ..service.state import ServerState
from ..settings import Settings
from . import coqui_api, inline_clone, openai_api, voices_api
from .auth import Access
from .context import CONTEXT, STARTED, HttpContext, context
from .errors import ApiError, error_response, from_http_exception
from .gate import ConnectionGate, GatedSite
from .guard import RequestGuard, local_names
from .watchdog import ConnectionWatchdog, quiet_protocol_errors

_LOGGER = logging.getLogger(__name__)

PUBLIC = frozenset({"/healthz", "/health", "/readyz"})  # no key, no allow-list: health checks
PAGE_PATHS = frozenset({"/", "/index.html"})  # allow-list, but no key (the page asks for it)
# Routes whose bodies may carry a clip; every other route's cap is the app's client_max_size (text).
BODY_CAPS = {
    "/v1/audio/speech": inline_clone.MAX_SPEECH_BODY,
    "/v1/audio/voice-clone": inline_clone.MAX_SPEECH_BODY,
    "/v1/voices": voices_api.MAX_UPLOAD_BODY,
}
_INGRESS_PATH = re.compile(r"/[A-Za-z0-9_./-]*")
# The page loads nothing from elsewhere: no CDN (Home Assistant users' browsers may reach nothing else).
_PAGE_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "media-src 'self' blob: data:; img-src 'self' data:; connect-src 'self'"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as an OpenAI-style JSON error with a stable code."""
    try:
        return await handler(request)
    except Exception as exc:
        if request.get(STARTED):  # a stream already sent its headers: only cutting it short is left
            raise
        if isinstance(exc, CodedError):  # ApiError, ServiceError, VoiceLibraryError: one table of statuses
            return error_response(exc.code, exc.message, exc.param)
        if isinstance(exc, web.HTTPException):
            if exc.status < 400:
                raise  # redirects
            return from_http_exception(exc)
        _LOGGER.exception("HTTP %s %s failed", request.method, safe(request.path))
        return error_response(ErrorCode.INTERNAL_ERROR, f"internal error: {exc}")


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A declared ``Content-Length`` over the route's cap is refused before a byte of the body is read (the
    routes also count what actually arrives: chunked bodies declare nothing)."""
    cap = BODY_CAPS.get(request.path, request.client_max_size)
    if request.content_length is not None and request.content_length > cap:
        _LOGGER.warning(
            "HTTP %s %s: a body of %d bytes refused",
            request.method,
            safe(request.path),
            request.content_length,
        )
        raise ApiError(ErrorCode.REQUEST_TOO_LARGE, f"the body exceeds {cap} bytes")
    return await handler(request)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path not in PUBLIC:
        context(request).access.check(request, key_required=request.path not in PAGE_PATHS)
    return await handler(request)


# -- pages and health ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _page_template() -> str:
    return (resources.files(__package__) / "static" / "index.html").read_text(encoding="utf-8")


def render_page(ingress_path: Optional[str]) -> str:
    """The page, with a <base> for Home Assistant ingress (a header value we check strictly: it ends up
    in HTML, so only a plain path is accepted)."""
    base = ""
    if (
        ingress_path
        and _INGRESS_PATH.fullmatch(ingress_path)
        and ".." not in ingress_path
        and "//" not in ingress_path
    ):
        base = f'<base href="{ingress_path.rstrip("/")}/">'
    return _page_template().replace("<!--BASE-->", base, 1)


async def page(request: web.Request) -> web.Response:
    try:
        html = render_page(request.headers.get("X-Ingress-Path"))
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise ApiError(
            ErrorCode.INTERNAL_ERROR, f"the web page is missing from this installation: {exc}"
        ) from exc
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": _PAGE_CSP}
    return web.Response(text=html, content_type="text/html", headers=headers)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = context(request).state
    if not state.warm:
        return error_response(ErrorCode.NOT_READY, "the model is loading or warming up")
    loaded = [ROLE_LABELS[role] for role in state.models.loaded_roles()]
    return web.json_response({"status": "ready", "models": loaded, "active_requests": state.active_jobs})


# -- wiring ---------------------------------------------------------------------------------------------
def build_app(
    ctx: HttpContext, watchdog: Optional[ConnectionWatchdog] = None, host_names: Optional[list[str]] = None
) -> web.Application:
    # JSON and form bodies hold text (at most max_text_chars) and are read whole: a small cap. Clips come as
    # multipart, which voices_api.py streams with its own cap (the library's MAX_BYTES).
    max_body = max(2 << 20, 8 * getattr(ctx.state, "max_text_chars", 0))
    guard = RequestGuard(local_names(host_names), PUBLIC, PAGE_PATHS)  # Host / Origin checks (guard.py)
    middlewares = [errors_middleware, access_middleware, guard.middleware, body_limit_middleware]
    if watchdog is not None:  # timeouts and the per-peer limit (watchdog.py)
        middlewares.insert(0, watchdog.middleware)
    app = web.Application(middlewares=middlewares, client_max_size=max_body)
    app[CONTEXT] = ctx
    openai_api.add_routes(app)
    inline_clone.add_routes(app)
    coqui_api.add_routes(app)
    voices_api.add_routes(app)
    app.router.add_get("/", page)
    app.router.add_get("/index.html", page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/health", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def context_from(settings: Settings, state: ServerState) -> HttpContext:
    return HttpContext(
        state=state,
        access=Access(settings.http_api_key, settings.http_allow, settings.http_trusted),
        voice_aliases=dict(settings.openai_voices),
        model_names=[str(m).rstrip("/").split("/")[-1] for m in state.models.models.values() if m],
    )


class HttpServer:
    """The HTTP site on the running event loop. ``start`` raises OSError when the port cannot be bound."""

    def __init__(self, settings: Settings, state: ServerState, **runner_args: Any) -> None:
        self.host = settings.http_host
        self.port = settings.http_port
        quiet_protocol_errors()
        self.watchdog = ConnectionWatchdog(settings.idle_timeout, settings.write_timeout)
        # Connections counted from accept, per client and in all (gate.py).
        self.gate = ConnectionGate(settings.max_connections_per_peer, settings.max_connections)
        self.app = build_app(context_from(settings, state), self.watchdog, settings.http_host_names)
        # handler_cancellation: a client that hangs up cancels its request at once, which cancels the
        # engine streams (frees KV slots) instead of generating audio nobody will hear.
        self.runner = web.AppRunner(
            self.app,
            handler_cancellation=True,
            shutdown_timeout=2.0,
            access_log=logging.getLogger("aiohttp.access") if settings.debug else None,
            keepalive_timeout=settings.idle_timeout,
            **runner_args,
        )

    async def start(self) -> None:
        await self.runner.setup()
        site = GatedSite(self.runner, self.gate, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await self.runner.cleanup()
            raise
        assert self.runner.server is not None
        self.watchdog.start(self.runner.server)

    async def stop(self) -> None:
        await self.watchdog.stop()
        await self.runner.cleanup()
