"""Zeroconf (mDNS) announcement of the Wyoming server for Home Assistant discovery.

Announces ``<name>._wyoming._tcp.local.`` exactly like ``wyoming.zeroconf.HomeAssistantZeroconf`` does
(same service type, one address record, the port, no TXT properties), with three fixes over that helper
and over what wyoming-piper passes to it:

* when bound to a wildcard (``0.0.0.0``, ``::``, ``""``) the *real* interface address is announced, never
  ``0.0.0.0`` (Home Assistant would try to connect to it);
* ``stop()`` sends the goodbye packets and closes the sockets (the helper has no unregister API);
* a name already taken on the network is renamed (``<name>-2``) with a warning instead of failing.

``zeroconf`` is an optional dependency (extra ``[zeroconf]``): it is imported only when announcing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from typing import Any, Optional, Sequence

_LOGGER = logging.getLogger(__name__)

SERVICE_TYPE = "_wyoming._tcp.local."
DEFAULT_NAME = "qwen3-tts"

# Targets of the route probe. connect() on a UDP socket only asks the kernel for a route: nothing is sent.
# 224.0.0.251 is the mDNS group (what wyoming's helper probes: the interface mDNS leaves on); an IPv6
# link-local multicast group cannot be connected to without a scope, so a documentation address is used.
MDNS_PROBE_IPV4 = "224.0.0.251"
PROBE_IPV6 = "2001:db8::1"

_WILDCARD_HOSTS = {"", "0.0.0.0", "::", "*", "[::]"}
_LABEL_MAX_BYTES = 63  # DNS label limit; zeroconf rejects longer instance names
_STOP_TIMEOUT = 5.0


class DiscoveryError(RuntimeError):
    """Zeroconf announcement could not be started (missing package, no usable socket, bad name)."""


def _ip(text: str) -> Optional[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _is_usable(text: Optional[str]) -> bool:
    """A unicast address another host can connect to (loopback counts: last resort, handled by callers)."""
    addr = _ip(text) if text else None
    return addr is not None and not (addr.is_unspecified or addr.is_multicast)


def _route_address(target: str, family: int) -> Optional[str]:
    """Local address the kernel would use to reach ``target`` (UDP connect: no packet is sent)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect((target, 9))
        local = str(sock.getsockname()[0])
    except OSError as err:  # no route (offline host, sandbox without default route)
        _LOGGER.debug("No route to %s: %s", target, err)
        return None
    finally:
        sock.close()
    return local if _is_usable(local) else None


def _interface_addresses(family: int) -> list[str]:
    """Addresses of the local interfaces, best candidates first (global, then link-local, then loopback)."""
    found: list[str] = []
    try:
        import ifaddr  # installed with zeroconf; optional here

        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                if family == socket.AF_INET and ip.is_IPv4:
                    found.append(str(ip.ip))
                elif family == socket.AF_INET6 and ip.is_IPv6:
                    found.append(str(ip.ip[0]))
    except ImportError:
        try:  # without ifaddr: whatever the host name resolves to (often only loopback)
            infos = socket.getaddrinfo(socket.gethostname(), None, family, socket.SOCK_STREAM)
            found = [str(info[4][0]) for info in infos]
        except OSError:
            found = []

    def rank(text: str) -> int:
        addr = _ip(text)
        assert addr is not None
        if addr.is_loopback:
            return 2
        return 1 if addr.is_link_local else 0

    usable = [a for a in dict.fromkeys(found) if _is_usable(a)]
    return sorted(usable, key=rank)


def advertised_host(bind_host: str, probe_target: Optional[str] = None) -> str:
    """Address to announce for a server bound to ``bind_host``; never a wildcard address.

    Wildcards: ``0.0.0.0`` and ``""`` give an IPv4 address, ``::`` an IPv6 one (asyncio sets IPV6_V6ONLY on
    a ``::`` listener, so IPv4 clients could not connect to it). The address comes from the interface that
    routes to ``probe_target`` (default: the mDNS group / a global IPv6 address; ``""`` skips the probe),
    then from the interface list, then loopback. A literal address is returned as is, a host name resolved.
    """
    host = bind_host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]

    if host not in _WILDCARD_HOSTS:
        if _ip(host) is not None:
            return host
        try:  # host name (e.g. "localhost"): announce what it resolves to, IPv4 first
            infos = socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)
        except OSError as err:
            raise DiscoveryError(
                f"Cannot resolve bind host {host!r} to an address to announce: {err}"
            ) from err
        addresses = sorted((str(i[4][0]) for i in infos), key=lambda a: ":" in a)
        if not addresses:
            raise DiscoveryError(f"Bind host {host!r} has no address to announce")
        return addresses[0]

    family = socket.AF_INET6 if host in ("::", "[::]") else socket.AF_INET
    if probe_target is None:
        probe_target = PROBE_IPV6 if family == socket.AF_INET6 else MDNS_PROBE_IPV4

    candidates: list[str] = []
    if probe_target:
        routed = _route_address(probe_target, family)
        if routed:
            candidates.append(routed)
    candidates.extend(_interface_addresses(family))
    candidates.append("::1" if family == socket.AF_INET6 else "127.0.0.1")

    # Prefer a non-loopback address even when the probe answered loopback (e.g. probe target 127.x).
    for candidate in candidates:
        addr = _ip(candidate)
        if addr is not None and not addr.is_loopback:
            _LOGGER.debug("Bound to %r: announcing %s", bind_host, candidate)
            return candidate
    _LOGGER.warning("No network interface found for %r: announcing loopback %s", bind_host, candidates[0])
    return candidates[0]


def service_label(name: str) -> str:
    """Instance label: dots would split the DNS name, and a label is at most 63 bytes."""
    label = re.sub(r"\s+", " ", name.replace(".", "-")).strip() or DEFAULT_NAME
    while len(label.encode("utf-8")) > _LABEL_MAX_BYTES:
        label = label[:-1]
    return label


def _host_label(label: str) -> str:
    """Host name label for the SRV target: letters, digits and hyphens only."""
    host = re.sub(r"[^A-Za-z0-9-]+", "-", label).strip("-")
    return host[:_LABEL_MAX_BYTES] or DEFAULT_NAME


class ServiceAnnouncer:
    """Registers the server as ``<name>._wyoming._tcp.local.`` until ``stop()``.

    ``interfaces``/``ip_version`` are passed to zeroconf (default: all interfaces, zeroconf's default IP
    version), tests use ``["127.0.0.1"]`` so that no packet leaves the machine.
    """

    def __init__(
        self,
        interfaces: Optional[Sequence[str]] = None,
        ip_version: Any = None,
        probe_target: Optional[str] = None,
    ) -> None:
        self._interfaces = list(interfaces) if interfaces is not None else None
        self._ip_version = ip_version
        self._probe_target = probe_target
        self._aiozc: Any = None
        self._info: Any = None
        self.service_name: Optional[str] = None  # final registered name (after a rename)
        self.address: Optional[str] = None  # announced address

    @property
    def running(self) -> bool:
        return self._aiozc is not None

    async def start(self, name: str, host: str, port: int) -> str:
        """Announce ``name`` for a server bound to ``host``:``port``; returns the registered service name."""
        if self._aiozc is not None:
            raise DiscoveryError(f"Zeroconf announcement already running as {self.service_name}")
        try:
            from zeroconf import Error as ZeroconfError
            from zeroconf import InterfaceChoice, NonUniqueNameException
            from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf
        except ImportError as err:
            raise DiscoveryError(
                "--zeroconf needs the zeroconf package: pip install 'wyoming-qwen3tts[zeroconf]'"
            ) from err

        if not 0 < port < 65536:
            raise DiscoveryError(f"Cannot announce port {port}")
        label = service_label(name)
        address = advertised_host(host, self._probe_target)
        packed = socket.inet_pton(
            socket.AF_INET6 if ":" in address else socket.AF_INET, address.split("%")[0]
        )
        info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{label}.{SERVICE_TYPE}",
            addresses=[packed],
            port=port,
            server=f"{_host_label(label)}.local.",
        )

        kwargs: dict[str, Any] = {
            "interfaces": self._interfaces if self._interfaces is not None else InterfaceChoice.All
        }
        if self._ip_version is not None:
            kwargs["ip_version"] = self._ip_version
        try:
            aiozc = AsyncZeroconf(**kwargs)
        except OSError as err:  # no multicast-capable interface, port 5353 unusable, ...
            raise DiscoveryError(f"Cannot open mDNS sockets for zeroconf: {err}") from err

        try:
            # allow_name_change: another host already announcing this name gets us "<name>-2".
            announced = await aiozc.async_register_service(info, allow_name_change=True)
            await announced  # the announcements themselves (three broadcasts, < 1 s)
        except (ZeroconfError, OSError, ValueError) as err:
            await self._close(aiozc)
            if isinstance(err, NonUniqueNameException):
                raise DiscoveryError(f"Zeroconf name {label!r} is already taken on the network") from err
            raise DiscoveryError(f"Zeroconf registration of {label!r} failed: {err!r}") from err
        except BaseException:  # cancelled during start: do not leak the sockets
            await self._close(aiozc)
            raise

        self._aiozc, self._info = aiozc, info
        self.service_name, self.address = info.name, address
        if info.name != f"{label}.{SERVICE_TYPE}":
            _LOGGER.warning(
                "Zeroconf name %r is already in use on the network; announced as %r instead "
                "(set a distinct --zeroconf NAME per server)",
                label,
                info.name,
            )
        _LOGGER.info("Zeroconf: announced %s at %s:%s", info.name, address, port)
        return str(info.name)

    async def stop(self) -> None:
        """Send goodbyes and close the sockets; idempotent, never raises (runs at shutdown)."""
        aiozc, info = self._aiozc, self._info
        self._aiozc = self._info = None
        if aiozc is None:
            return
        try:
            goodbyes = await asyncio.wait_for(aiozc.async_unregister_service(info), _STOP_TIMEOUT)
            await asyncio.wait_for(goodbyes, _STOP_TIMEOUT)
        except Exception as err:  # noqa: BLE001 - shutdown must go on
            _LOGGER.warning("Zeroconf unregister of %s failed: %r", self.service_name, err)
        await self._close(aiozc)
        _LOGGER.info("Zeroconf: unregistered %s", self.service_name)

    @staticmethod
    async def _close(aiozc: Any) -> None:
        try:
            await asyncio.wait_for(aiozc.async_close(), _STOP_TIMEOUT)
        except Exception as err:  # noqa: BLE001 - shutdown must go on
            _LOGGER.warning("Zeroconf close failed: %r", err)
