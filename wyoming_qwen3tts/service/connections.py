"""Connection accounting shared by both front doors (Wyoming and HTTP): counted from accept, per client and in
all, so that neither one address nor one LAN host with many addresses can hold the server's file descriptors.

* A client is its IPv4 address, or its IPv6 /64 network: a host picks new IPv6 addresses inside its /64 at
  will (privacy extensions), so counting single IPv6 addresses would not bound one host. IPv4-mapped IPv6
  addresses count as their IPv4 address.
* A refused connection is told why (Wyoming ``server-busy`` event, HTTP 503 ``server-busy``) and then lingers
  briefly: the server half-closes it and reads and discards what the client still sends (a bounded number of
  bytes, for a bounded time) before closing, so the client reads its error instead of a reset. At most
  ``MAX_LINGERING`` refused connections linger at once; beyond that they are closed at once.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Optional

_LOGGER = logging.getLogger(__name__)

LINGER_SECONDS = 5.0  # a refused client has this long to send its request and read the error
LINGER_BYTES = 64 * 1024  # ... and may send this much meanwhile (read and discarded)
MAX_LINGERING = 64  # refused connections lingering at once, each port


def client_of(address: Optional[str]) -> str:
    """The unit the limits count: ``1.2.3.4``, ``2001:db8:1:2::/64``, or ``local`` (Unix socket, stdio)."""
    if not address:
        return "local"
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if ip.is_loopback:
            return str(ip)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass
class ConnectionCounter:
    """Open connections of one port, per client (see :func:`client_of`) and in all."""

    max_per_client: int = 16
    max_total: int = 200
    clients: dict[str, int] = field(default_factory=dict)
    total: int = 0
    lingering: int = 0  # refused connections still lingering

    def admit(self, address: Optional[str]) -> Optional[str]:
        """Counts a new connection; returns None, or why it is refused (not counted then)."""
        client = client_of(address)
        if self.total >= self.max_total:
            return f"the server has {self.max_total} connections open"
        if self.clients.get(client, 0) >= self.max_per_client:
            return f"too many connections from {client}"
        self.clients[client] = self.clients.get(client, 0) + 1
        self.total += 1
        return None

    def release(self, address: Optional[str]) -> None:
        client = client_of(address)
        left = self.clients.get(client, 0) - 1
        if left > 0:
            self.clients[client] = left
        else:
            self.clients.pop(client, None)
        self.total = max(0, self.total - 1)

    def may_linger(self) -> bool:
        return self.lingering < MAX_LINGERING
