"""Zeroconf discovery: advertised address and a real announce -> browse/resolve -> goodbye round trip.

Everything runs on the loopback interface only (zeroconf ``interfaces=["127.0.0.1"]``; route probes aimed at
127.0.0.1 / ::1), so no packet leaves the machine. A second, independent AsyncZeroconf instance plays Home
Assistant: it browses ``_wyoming._tcp.local.`` and resolves the instance over multicast on lo.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import uuid
from typing import Any, Awaitable, Callable

import pytest

from wyoming_qwen3tts.server import discovery
from wyoming_qwen3tts.server.discovery import SERVICE_TYPE, ServiceAnnouncer, advertised_host

zeroconf = pytest.importorskip("zeroconf")
from zeroconf import IPVersion, ServiceStateChange  # noqa: E402
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf  # noqa: E402

LOOPBACK = ["127.0.0.1"]
TEST_TIMEOUT = 20.0  # seconds for a whole async test body


def _run(body: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(body(), TEST_TIMEOUT)

    asyncio.run(bounded())


def _unique_name() -> str:
    return f"qwen3-tts-test-{uuid.uuid4().hex[:8]}"


def _assert_local_address(address: str) -> None:
    addr = ipaddress.ip_address(address)
    assert not addr.is_unspecified and not addr.is_multicast
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))  # only succeeds for an address of this machine


# --------------------------------------------------------------------------------------------------
# advertised_host


@pytest.mark.parametrize("bind_host", ["0.0.0.0", "", " 0.0.0.0 "])
def test_advertised_host_ipv4_wildcard_is_a_real_local_address(bind_host: str) -> None:
    for probe in ("127.0.0.1", ""):  # loopback probe target, then no probe at all
        address = advertised_host(bind_host, probe_target=probe)
        assert address != "0.0.0.0"
        assert ipaddress.ip_address(address).version == 4
        _assert_local_address(address)


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 support in this Python")
@pytest.mark.parametrize("bind_host", ["::", "[::]"])
def test_advertised_host_ipv6_wildcard_is_a_real_local_address(bind_host: str) -> None:
    address = advertised_host(bind_host, probe_target="::1")
    assert ipaddress.ip_address(address).version == 6  # asyncio's "::" listener is IPv6-only
    try:
        _assert_local_address(address)
    except OSError as err:  # IPv6 disabled in the kernel: nothing to bind, nothing to assert
        pytest.skip(f"IPv6 unusable here: {err}")


def test_advertised_host_prefers_a_non_loopback_interface() -> None:
    # The probe towards 127.0.0.1 answers loopback; an interface address (if any) must win over it.
    address = advertised_host("0.0.0.0", probe_target="127.0.0.1")
    others = [a for a in discovery._interface_addresses(socket.AF_INET) if not a.startswith("127.")]
    if others:
        assert address in others
    else:
        assert address == "127.0.0.1"


def test_advertised_host_without_any_interface_falls_back_to_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Simulates a host with no network (no route, no interface list): loopback, never the wildcard.
    monkeypatch.setattr(discovery, "_interface_addresses", lambda family: [])
    assert advertised_host("0.0.0.0", probe_target="") == "127.0.0.1"
    assert advertised_host("::", probe_target="") == "::1"


def test_route_probe_uses_the_kernel_route_without_sending() -> None:
    assert discovery._route_address("127.0.0.1", socket.AF_INET) == "127.0.0.1"
    assert discovery._route_address("127.0.0.1", socket.AF_INET6) is None  # wrong family -> no route


@pytest.mark.parametrize(
    ("bind_host", "expected"),
    [("127.0.0.1", "127.0.0.1"), ("192.0.2.50", "192.0.2.50"), ("[::1]", "::1"), ("fd00::7", "fd00::7")],
)
def test_advertised_host_keeps_a_literal_bind_address(bind_host: str, expected: str) -> None:
    assert advertised_host(bind_host) == expected


def test_advertised_host_resolves_a_host_name() -> None:
    assert advertised_host("localhost") in ("127.0.0.1", "::1")


def test_service_label_is_a_valid_dns_label() -> None:
    assert discovery.service_label("") == discovery.DEFAULT_NAME
    assert discovery.service_label("kitchen.tts") == "kitchen-tts"
    assert len(discovery.service_label("x" * 200).encode()) == 63
    assert discovery._host_label("Küche TTS") == "K-che-TTS"


# --------------------------------------------------------------------------------------------------
# ServiceAnnouncer against a real zeroconf browser on loopback


class _Browser:
    """A second zeroconf stack on lo that records browse events, like Home Assistant's discovery."""

    def __init__(self) -> None:
        self.aiozc: Any = None
        self.events: "asyncio.Queue[tuple[ServiceStateChange, str]]" = asyncio.Queue()
        self._browser: Any = None

    async def __aenter__(self) -> "_Browser":
        try:
            self.aiozc = AsyncZeroconf(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
        except OSError as err:
            pytest.skip(f"cannot open mDNS sockets on loopback here: {err}")

        def on_change(zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange) -> None:
            self.events.put_nowait((state_change, name))

        self._browser = AsyncServiceBrowser(self.aiozc.zeroconf, SERVICE_TYPE, handlers=[on_change])
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._browser.async_cancel()
        await self.aiozc.async_close()

    async def wait_for(self, change: ServiceStateChange, name: str, timeout: float = 8.0) -> None:
        async def match() -> None:
            while (await self.events.get()) != (change, name):
                pass

        await asyncio.wait_for(match(), timeout)

    async def resolve(self, name: str, timeout_ms: int = 3000) -> AsyncServiceInfo:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        assert await info.async_request(self.aiozc.zeroconf, timeout_ms), f"{name} did not resolve"
        return info


@pytest.mark.timeout(60)
def test_announce_resolve_and_unregister_on_loopback() -> None:
    async def body() -> None:
        name = _unique_name()
        full_name = f"{name}.{SERVICE_TYPE}"
        async with _Browser() as browser:
            announcer = ServiceAnnouncer(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
            registered = await announcer.start(name, "127.0.0.1", 10299)
            assert registered == full_name == announcer.service_name
            assert announcer.running
            with pytest.raises(discovery.DiscoveryError):
                await announcer.start(name, "127.0.0.1", 10299)  # already announcing

            await browser.wait_for(ServiceStateChange.Added, full_name)
            info = await browser.resolve(full_name)
            assert info.name == full_name
            assert info.port == 10299
            assert info.parsed_addresses() == ["127.0.0.1"]
            assert info.server == f"{name}.local."
            assert not info.properties  # like wyoming's own helper: no TXT properties

            await announcer.stop()
            assert not announcer.running
            # Goodbye packets (TTL 0) make the browser drop the service.
            await browser.wait_for(ServiceStateChange.Removed, full_name)
            await announcer.stop()  # second stop: no-op, no error

    _run(body)


@pytest.mark.timeout(60)
def test_wildcard_bind_announces_the_real_address_not_0000() -> None:
    async def body() -> None:
        name = _unique_name()
        async with _Browser() as browser:
            # mDNS stays on lo; the address record is what advertised_host picked for 0.0.0.0.
            announcer = ServiceAnnouncer(
                interfaces=LOOPBACK, ip_version=IPVersion.V4Only, probe_target="127.0.0.1"
            )
            try:
                full_name = await announcer.start(name, "0.0.0.0", 10298)
                info = await browser.resolve(full_name)
            finally:
                await announcer.stop()
            assert announcer.address is not None and announcer.address != "0.0.0.0"
            assert info.parsed_addresses() == [announcer.address]
            assert "0.0.0.0" not in info.parsed_addresses()

    _run(body)


@pytest.mark.timeout(60)
def test_name_conflict_is_renamed_not_fatal() -> None:
    async def body() -> None:
        name = _unique_name()
        first = ServiceAnnouncer(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
        second = ServiceAnnouncer(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
        try:
            try:
                first_name = await first.start(name, "127.0.0.1", 10297)
            except discovery.DiscoveryError as err:
                pytest.skip(f"cannot announce on loopback here: {err}")
            second_name = await second.start(name, "127.0.0.1", 10296)
        finally:
            await second.stop()
            await first.stop()
        assert first_name == f"{name}.{SERVICE_TYPE}"  # and the second start did not fail: not fatal
        if second_name == first_name:
            # The defender answers the prober's QU probe by unicast to 127.0.0.1:5353; with two responders in
            # one host both sockets share that port (SO_REUSEPORT) and the kernel hands the datagram to one
            # of them by a hash, which on some kernels is the defender's own. Two hosts never share a socket.
            pytest.skip("this kernel delivered the unicast probe answer to the defender's own socket")
        assert second_name == f"{name}-2.{SERVICE_TYPE}"

    _run(body)


def test_stop_without_start_is_a_noop_and_bad_port_is_rejected() -> None:
    async def body() -> None:
        announcer = ServiceAnnouncer(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
        await announcer.stop()  # never started: no-op
        with pytest.raises(discovery.DiscoveryError):
            await announcer.start("x", "127.0.0.1", 0)  # invalid port, checked before any socket opens
        assert not announcer.running

    _run(body)
