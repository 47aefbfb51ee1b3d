"""Settings of the Wyoming server: where it listens, what it announces, its data and its logging."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..core.vocab import DEFAULT_MAX_TEXT_CHARS
from .checks import (
    _check_bool,
    _check_log_format,
    _check_path,
    _check_positive_int,
    _check_str,
    _check_uri,
    _check_zeroconf,
    _optional,
)
from .constants import DEFAULT_ZEROCONF_NAME
from .spec import NEGATE, OPTIONAL, SWITCH, Addon, setting


@dataclass
class ServerSettings:
    uri: str = setting(
        "tcp://0.0.0.0:10200",
        check=_check_uri,
        help="tcp://HOST:PORT, unix:///PATH or stdio:// (default: {default})",
        doc="`tcp://HOST:PORT`, `unix:///path.sock` or `stdio://`",
        doc_addon="(fixed)",
    )
    # None = off; "" = announce under DEFAULT_ZEROCONF_NAME
    zeroconf: Optional[str] = setting(
        None,
        check=_check_zeroconf,
        flag=OPTIONAL,
        metavar="NAME",
        help=f"announce over mDNS/zeroconf (tcp only); NAME defaults to '{DEFAULT_ZEROCONF_NAME}'",
        doc=f"announce `_wyoming._tcp.local.` (name `{DEFAULT_ZEROCONF_NAME}`); bound to 0.0.0.0 it "
        "announces the real interface address",
        doc_default="off",
        doc_addon="(discovery service)",
    )
    data_dir: Path = setting(
        Path("data"),
        check=_check_path,
        metavar="DIR",
        help="voice library and caches (default: {default})",
        doc="server data; the voice library defaults to `DATA_DIR/voices`",
        doc_addon="`/data`",
    )
    voices_dir: Optional[Path] = setting(  # None = <data_dir>/voices
        None,
        check=_optional(_check_path),
        metavar="DIR",
        help="voice library (default: DATA_DIR/voices)",
        doc="the voice library",
        doc_default="`DATA_DIR/voices`",
        doc_addon="`/config/voices`",
    )
    cache_dir: Optional[str] = setting(
        None,
        check=_optional(_check_str),
        metavar="DIR",
        help="Hugging Face download cache (default: the hub's own)",
        doc="Hugging Face cache",
        doc_default="hub default",
        doc_addon="`/data/models`",
    )
    local_files_only: bool = setting(
        False,
        check=_check_bool,
        flag=SWITCH,
        help="never download; use local files only",
        doc="never download",
    )
    samples_per_chunk: int = setting(  # int16 samples per audio-chunk event
        1024,
        check=_check_positive_int,
        metavar="N",
        help="samples per audio-chunk event (default: {default})",
        doc="16-bit samples per `audio-chunk` event",
    )
    max_concurrent: int = setting(
        4,
        check=_check_positive_int,
        metavar="N",
        help="requests synthesised at once (default: {default})",
        doc="requests admitted at once over all clients; more get `server-busy`",
        addon=Addon("int(1,16)", default=2),
    )
    max_text_chars: int = setting(
        DEFAULT_MAX_TEXT_CHARS,
        check=_check_positive_int,
        metavar="N",
        help="longest accepted text (default: {default})",
        doc="longest text per request",
    )
    streaming: bool = setting(
        True,
        check=_check_bool,
        flag=NEGATE,
        help="do not advertise or accept streaming synthesis (synthesize-start/chunk/stop)",
        doc="do not advertise or accept `synthesize-start/-chunk/-stop`",
        doc_default="streaming on",
        addon=Addon("bool"),
    )
    debug: bool = setting(
        False,
        check=_check_bool,
        flag=SWITCH,
        help="debug logging",
        doc="debug logging",
        addon=Addon("bool"),
    )
    log_format: str = setting(
        "%(asctime)s %(levelname)s %(name)s: %(message)s",
        check=_check_log_format,
        metavar="FORMAT",
        help="Python logging format string",
        doc="Python logging format string",
    )
