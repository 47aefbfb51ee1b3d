"""Value checks of the settings: (value, from_text) -> the normalised value, or ValueError with a reason.

Which check a setting uses is part of its declaration (settings/options_*.py)."""

from __future__ import annotations

import ipaddress
import logging
import re
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from ..core.languages import parse_language
from .constants import _DTYPES, _QUANTIZE, AUTO, DEFAULT_OPENAI_VOICES

# ---------------------------------------------------------------------------------------------------------
# Value checks. Each takes (value, from_text) and returns the normalised value or raises ValueError with a
# short reason; from_text is True for flags (strings to convert), False for YAML values (types must match).


def _want_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def _check_uri(value: Any, from_text: bool) -> str:
    uri = _want_str(value)
    parts = urlsplit(uri)
    if parts.scheme == "tcp":
        try:
            port = parts.port
        except ValueError:
            port = -1
        if not parts.hostname or port is None or not 1 <= port <= 65535 or parts.path not in ("", "/"):
            raise ValueError(f"{uri!r} is not tcp://HOST:PORT with a port in 1..65535")
        return uri
    if parts.scheme == "unix":
        # The wyoming library binds urlparse(uri).path, so anything in the netloc would be silently dropped.
        if parts.netloc or not parts.path:
            raise ValueError(f"{uri!r} is not unix:///absolute/path/to.sock")
        return uri
    if parts.scheme == "stdio":
        return uri
    raise ValueError(f"{uri!r} is not a tcp://HOST:PORT, unix:///PATH or stdio:// URI")


def _check_device(value: Any, from_text: bool) -> str:
    device = _want_str(value).lower()
    if device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", device):
        return device
    raise ValueError(f"unknown device {value!r}; use auto, cpu, cuda or cuda:N (ROCm GPUs are cuda too)")


def _check_dtype(value: Any, from_text: bool) -> str:
    key = _want_str(value).lower()
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {value!r}; use one of {', '.join(_DTYPES)}")
    return _DTYPES[key]


def _check_quantize(value: Any, from_text: bool) -> str:
    key = _want_str(value).lower()
    if key not in _QUANTIZE:
        raise ValueError(f"unknown quantize mode {value!r}; use one of {', '.join(_QUANTIZE)}")
    return key


def normalize_language(value: str) -> str:
    """'auto', an engine language name or a BCP-47 tag (en, en-US, zh_Hans) -> 'auto' or the engine name."""
    return parse_language(value) or "auto"


def _check_language(value: Any, from_text: bool) -> str:
    return normalize_language(_want_str(value))


def _check_log_format(value: Any, from_text: bool) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a logging format string, got {value!r}")
    try:
        logging.Formatter(value).format(logging.LogRecord("x", logging.INFO, "x", 1, "m", None, None))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"invalid logging format {value!r} ({exc})") from None
    return value


def _check_positive_int(value: Any, from_text: bool) -> int:
    if from_text and isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"expected a positive integer, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return value


def _check_bool(value: Any, from_text: bool) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _check_str(value: Any, from_text: bool) -> str:
    return _want_str(value)


def _check_path(value: Any, from_text: bool) -> Path:
    return Path(_want_str(str(value) if isinstance(value, Path) else value))


def _check_zeroconf(value: Any, from_text: bool) -> Optional[str]:
    # YAML convenience: `zeroconf: true` = default name, `false` = off (same as null).
    if value is None or value is False:
        return None
    if value is True:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"expected a service name, true/false or null, got {value!r}")
    return value.strip()


def _check_model_choice(value: Any, from_text: bool) -> Optional[str]:
    """A hub id or directory, ``auto`` (the official sibling of the main model) or ``none``/null (off)."""
    if value is None or value is False:
        return None
    text = _want_str(value)
    if text.lower() in ("none", "off", "false"):
        return None
    return AUTO if text.lower() == AUTO else text


def _check_port(value: Any, from_text: bool) -> int:
    port = _check_positive_int(value, from_text)
    if port > 65535:
        raise ValueError(f"expected a port in 1..65535, got {port}")
    return port


def _check_host(value: Any, from_text: bool) -> str:
    host = _want_str(value)
    if any(ch.isspace() or ch in "/[]" for ch in host):
        raise ValueError(f"{host!r} is not a host name or IP address")
    return host


def _check_allow(value: Any, from_text: bool) -> Optional[list[str]]:
    """IP addresses / CIDR networks (a list, or comma-separated text); empty = everyone."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"expected a list of addresses or networks, got {value!r}")
    networks = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"expected an address or network, got {item!r}")
        for part in filter(None, (p.strip() for p in item.split(","))):
            try:
                networks.append(str(ipaddress.ip_network(part, strict=False)))
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or network (like 192.168.1.0/24)") from None
    return networks or None


def _check_voice_map(value: Any, from_text: bool) -> dict[str, str]:
    """OpenAI voice name -> our voice name, merged over the defaults; text form: alloy=vivian,echo=ryan."""
    if from_text and isinstance(value, str):
        pairs = {}
        for part in filter(None, (p.strip() for p in value.split(","))):
            key, sep, target = part.partition("=")
            if not sep:
                raise ValueError(f"expected NAME=VOICE pairs separated by commas, got {part!r}")
            pairs[key] = target
        value = pairs
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of OpenAI voice name: voice, got {value!r}")
    merged = dict(DEFAULT_OPENAI_VOICES)
    for key, target in value.items():
        if not isinstance(key, str) or not key.strip() or not isinstance(target, str) or not target.strip():
            raise ValueError(f"expected non-empty names, got {key!r}: {target!r}")
        merged[key.strip().lower()] = target.strip()
    return merged


def _check_host_names(value: Any, from_text: bool) -> Optional[list[str]]:
    """Host names (a list, or comma-separated text) the HTTP API accepts in the Host header."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"expected a list of host names, got {value!r}")
    names = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"expected a host name, got {item!r}")
        for part in filter(None, (p.strip().lower().rstrip(".") for p in item.split(","))):
            if not re.fullmatch(r"[a-z0-9_]([a-z0-9_.-]{0,252})", part):
                raise ValueError(f"{part!r} is not a host name")
            names.append(part)
    return names or None


def _optional(check: Callable[[Any, bool], Any]) -> Callable[[Any, bool], Any]:
    def wrapped(value: Any, from_text: bool) -> Any:
        return None if value is None else check(value, from_text)

    return wrapped
