"""Settings of the OpenAI-compatible HTTP API and the voice web page (wyoming_qwen3tts/http)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .checks import (
    _check_allow,
    _check_bool,
    _check_host,
    _check_host_names,
    _check_port,
    _check_str,
    _check_voice_map,
    _optional,
)
from .constants import DEFAULT_OPENAI_VOICES, ENV_HTTP_API_KEY
from .spec import APPEND, BOTH, Addon, setting


@dataclass
class HttpSettings:
    http: bool = setting(
        True,
        check=_check_bool,
        flag=BOTH,
        help="serve the OpenAI-compatible HTTP API and the voice web page (default: on; --no-http: off)",
        doc="the [HTTP API and voice page](#openai-compatible-speech-api-and-voice-page)",
        doc_addon="(on, ingress)",
    )
    http_host: str = setting(
        "0.0.0.0",
        check=_check_host,
        metavar="HOST",
        help="HTTP bind address (default: {default})",
        doc="HTTP bind address",
    )
    http_port: int = setting(
        8880,
        check=_check_port,
        metavar="PORT",
        help="HTTP port (default: {default})",
        doc="HTTP port",
        doc_addon="8880",
    )
    http_api_key: Optional[str] = setting(  # never in logs
        None,
        check=_optional(_check_str),
        metavar="KEY",
        help="require 'Authorization: Bearer KEY' on the HTTP API and the voice page (default: off; "
        f"${ENV_HTTP_API_KEY} keeps it off the command line)",
        doc=f"require `Authorization: Bearer KEY` (or set `{ENV_HTTP_API_KEY}`, which keeps it out of `ps`)",
        doc_default="none",
        secret=True,
        addon=Addon("password?", name="api_key", env=ENV_HTTP_API_KEY),
    )
    http_allow: Optional[list[str]] = setting(  # peer networks allowed; None = everyone
        None,
        check=_check_allow,
        flag=APPEND,
        metavar="ADDR",
        help="only these peer addresses/networks may use HTTP (repeatable or comma-separated; the TCP peer "
        "address, never X-Forwarded-For; default: everyone)",
        doc="peer addresses/networks allowed to use HTTP (the TCP peer, never `X-Forwarded-For`)",
        doc_default="everyone",
    )
    http_trusted: Optional[list[str]] = setting(  # peer networks that need no API key (the ingress proxy)
        None,
        check=_check_allow,
        flag=APPEND,
        metavar="ADDR",
        help="peer addresses/networks that need no API key, e.g. Home Assistant's ingress proxy 172.30.32.2 "
        "(repeatable or comma-separated; default: none)",
        doc="peers that need no key (Home Assistant's ingress proxy)",
        doc_default="none",
        doc_addon="`172.30.32.2`",
    )
    http_host_names: Optional[list[str]] = setting(  # extra Host names the HTTP API answers (DNS rebinding)
        None,
        check=_check_host_names,
        flag=APPEND,
        metavar="NAME",
        help="host names the HTTP API answers besides IP addresses, localhost and this machine's name, "
        "e.g. tts.lan (repeatable or comma-separated; guards against DNS rebinding)",
        doc="host names the HTTP API answers besides IP addresses, `localhost` and this machine's name (see "
        "[Limits and security](#limits-and-security))",
        doc_default="none",
        addon=Addon("str?"),
    )
    openai_voices: dict[str, str] = setting(
        check=_check_voice_map,
        factory=lambda: dict(DEFAULT_OPENAI_VOICES),
        metavar="MAP",
        help="OpenAI voice names to our voices, merged over the defaults, e.g. alloy=clone:anna,echo=ryan",
        doc="OpenAI voice names → our voices, e.g. `alloy=clone:anna`",
        doc_default=", ".join(f"{name}→{voice}" for name, voice in DEFAULT_OPENAI_VOICES.items()),
    )
