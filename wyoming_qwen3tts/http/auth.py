"""Who may use the HTTP side: an optional bearer API key and an optional allow-list of peer addresses.

* The key (``--http-api-key`` or ``$WYOMING_QWEN3TTS_HTTP_API_KEY``) is compared in constant time
  (``hmac.compare_digest``), so response timing does not leak how much of a guess was right. It guards every
  route but the health checks and the web page's static shell (which holds no data; the page asks for the
  key when the API answers 401 and sends it as a bearer header).
* The allow-list (``--http-allow``) checks the TCP peer address only, never ``X-Forwarded-For`` or other
  headers a client can forge (wyoming-piper's rule). Behind Home Assistant ingress the peer is the
  Supervisor (172.30.32.2).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from typing import Optional, Sequence, Union

from aiohttp import web

from ..core.vocab import ErrorCode
from ..service.logsafe import safe
from .errors import ApiError

_LOGGER = logging.getLogger(__name__)

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class Access:
    def __init__(
        self,
        api_key: Optional[str] = None,
        allow: Optional[Sequence[str]] = None,
        trusted: Optional[Sequence[str]] = None,
    ) -> None:
        self._key = api_key.encode("utf-8") if api_key else None
        self.networks: Optional[list[Network]] = _networks(allow) if allow else None
        # Peers that need no key: Home Assistant's ingress proxy, which has authenticated the user already.
        self.trusted: list[Network] = _networks(trusted or ())

    def peer_allowed(self, peer: Optional[str]) -> bool:
        if self.networks is None:
            return True
        return _in_any(peer, self.networks)

    def peer_trusted(self, peer: Optional[str]) -> bool:
        return bool(self.trusted) and _in_any(peer, self.trusted)

    def key_ok(self, header: Optional[str]) -> bool:
        if self._key is None:
            return True
        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            token = ""
        # Both sides are compared in full whatever the input: constant time for equal-length inputs.
        return hmac.compare_digest(token.strip().encode("utf-8"), self._key)

    def check(self, request: web.Request, key_required: bool = True) -> None:
        """Raises forbidden / invalid-api-key."""
        peer = request.transport.get_extra_info("peername") if request.transport else None
        host = peer[0] if isinstance(peer, (tuple, list)) and peer else None
        if not self.peer_allowed(host):
            _LOGGER.info(
                "HTTP %s %s from %s: not in the allow-list", request.method, safe(request.path), host
            )
            raise ApiError(ErrorCode.FORBIDDEN, f"address {host} is not allowed to use this server")
        if (
            key_required
            and not self.peer_trusted(host)
            and not self.key_ok(request.headers.get("Authorization"))
        ):
            raise ApiError(
                ErrorCode.INVALID_API_KEY, "missing or wrong API key: send 'Authorization: Bearer <key>'"
            )


def _networks(items: Sequence[str]) -> list[Network]:
    return [ipaddress.ip_network(n, strict=False) for n in items]


def _in_any(peer: Optional[str], networks: Sequence[Network]) -> bool:
    if not peer:
        return False  # a unix socket or an unknown peer: not on any list
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.5 from a dual-stack socket is 10.0.0.5
    return any(address in network for network in networks)
