"""Limits against broken or hostile clients (README "Limits and security") and the voice library's quotas."""

from __future__ import annotations

from dataclasses import dataclass

from .checks import _check_positive_int
from .spec import Addon, setting


@dataclass
class LimitSettings:
    idle_timeout: int = setting(
        60,
        check=_check_positive_int,
        metavar="S",
        help="seconds a connection may sit idle with a stream open or a request half sent before it is cut "
        "(default: {default})",
        doc="seconds before an idle open stream or a half-sent request is cut",
        addon=Addon("int(10,3600)"),
    )
    write_timeout: int = setting(
        60,
        check=_check_positive_int,
        metavar="S",
        help="seconds a client may stop reading its audio before it is cut (default: {default})",
        doc="seconds before a client that stopped reading its audio is cut",
    )
    max_connections_per_peer: int = setting(
        16,
        check=_check_positive_int,
        metavar="N",
        help="open connections per client address on each port (default: {default})",
        doc="open connections per client address (IPv6: per /64), each port, counted from accept",
    )
    max_connections: int = setting(
        200,
        check=_check_positive_int,
        metavar="N",
        help="open connections in all on each port (default: {default})",
        doc="open connections in all, each port, counted from accept",
    )
    connection_idle_timeout: int = setting(
        300,
        check=_check_positive_int,
        metavar="S",
        help="seconds a Wyoming connection with no stream or request in progress may idle before it is "
        "closed (default: {default})",
        doc="seconds a Wyoming connection with no stream or request in progress may stay open",
    )
    max_voices: int = setting(  # voice library: profiles at most
        500,
        check=_check_positive_int,
        metavar="N",
        help="voices the library may hold (default: {default})",
        doc="voices the library may hold",
    )
    max_library_mb: int = setting(  # voice library: disk use at most
        2048,
        check=_check_positive_int,
        metavar="MB",
        help="disk space the voice library may use (default: {default})",
        doc="disk space the voice library may use",
    )
