"""Requests a web page must not be able to make: DNS rebinding and cross-site requests.

* ``Host`` must be an IP literal, ``localhost``, this machine's name (``NAME``, ``NAME.local``) or one of
  ``--http-host-names``. A rebinding attack reaches us under the attacker's own domain name, so it fails
  here, and with it reading ``/v1/voices`` or downloading reference recordings from a web page.
* State-changing methods (anything but GET/HEAD/OPTIONS) with a foreign ``Origin`` are refused: multipart
  and urlencoded POSTs are CORS "simple requests" a page can send without asking. A browser fetch marked
  ``Sec-Fetch-Site: cross-site`` is refused too (except a top-level navigation to a page).
* JSON bodies must say ``application/json`` (context.read_json), so a ``text/plain`` "simple" POST cannot
  start a synthesis.
* Any request a browser marks ``Sec-Fetch-Site: cross-site`` gets 403, whatever its method, except opening the
  page itself (``GET /``): a foreign page's iframe, image, form or navigation to ``/api/tts?text=...`` would
  otherwise make the server synthesize (and answer with audio).

Home Assistant ingress: the Supervisor's proxy (a ``--http-trusted`` peer, which has logged the user in)
forwards the browser's Host and Origin of the Home Assistant front end; requests from trusted peers skip
these checks, and a request carrying ``X-Ingress-Path`` skips the Origin check (see ``check``). The health
checks never get them (container health checks use any name).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Awaitable, Callable, Iterable, Optional
from urllib.parse import urlsplit

from aiohttp import web

from ..core.vocab import ErrorCode
from ..service.logsafe import safe
from .context import context
from .errors import ApiError

_LOGGER = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def local_names(extra: Optional[Iterable[str]] = None) -> frozenset[str]:
    """Host names this server answers to (lower case, no port)."""
    names = {"localhost"}
    try:
        hostname = socket.gethostname().lower().rstrip(".")
    except OSError:
        hostname = ""
    if hostname:
        short = hostname.split(".", 1)[0]
        names |= {hostname, short, f"{short}.local"}
    names |= {n.lower().rstrip(".") for n in extra or ()}
    return frozenset(names)


def split_host(value: str) -> str:
    """The host part of a Host header value (``[::1]:8880`` -> ``::1``, ``tts.lan:8880`` -> ``tts.lan``)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        return value.split(":", 1)[0].rstrip(".")
    return value.rstrip(".")


def host_allowed(value: str, names: frozenset[str]) -> bool:
    host = split_host(value)
    if host in names or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def same_origin(origin: str, host_header: str) -> bool:
    """Whether ``Origin`` names the very host:port the request was sent to."""
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return parts.netloc.lower() == host_header.strip().lower()


class RequestGuard:
    def __init__(
        self, names: frozenset[str], public: frozenset[str], pages: frozenset[str] = frozenset()
    ) -> None:
        self.names = names
        self.public = public
        self.pages = pages  # opening these from a link on another site is fine: they hold no data

    def check(self, request: web.Request) -> None:
        """Raises ``forbidden`` for a request a foreign web page made or a rebound host name carries."""
        if request.path in self.public:
            return
        peer = request.remote
        if context(request).access.peer_trusted(peer):
            return  # the ingress proxy
        host = request.headers.get("Host")
        if host is not None and not host_allowed(host, self.names):
            _LOGGER.warning(
                "HTTP %s %s from %s: unknown Host %.80r", request.method, safe(request.path), peer, host
            )
            raise ApiError(
                ErrorCode.FORBIDDEN,
                f"unknown host name {split_host(host)[:80]!r}: use the server's address, or add the name "
                "with --http-host-names",
            )
        fetch_site = request.headers.get("Sec-Fetch-Site", "").lower()
        opens_page = request.method in ("GET", "HEAD") and request.path in self.pages
        if fetch_site == "cross-site" and not opens_page:
            _LOGGER.warning(
                "HTTP %s %s from %s: cross-site request refused", request.method, safe(request.path), peer
            )
            raise ApiError(ErrorCode.FORBIDDEN, "cross-site requests are not allowed")
        if request.method in SAFE_METHODS or "X-Ingress-Path" in request.headers:
            # X-Ingress-Path: a custom header, which a page of another site can only send after a CORS
            # preflight that this server never grants; an ingress proxy forwards its front end's Origin.
            return
        origin = request.headers.get("Origin")
        if origin is not None and not same_origin(origin, host or ""):
            _LOGGER.warning(
                "HTTP %s %s from %s: foreign Origin %.80r refused",
                request.method,
                safe(request.path),
                peer,
                origin,
            )
            raise ApiError(ErrorCode.FORBIDDEN, "requests from another web site are not allowed")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.check(request)
        return await handler(request)
