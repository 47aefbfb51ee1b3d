"""Server settings: piper-style flags, a YAML config file and an env var passthrough, validated up front.

Precedence (lowest to highest): built-in defaults < config file (`--config PATH`, else
`$WYOMING_QWEN3TTS_CONFIG`) < flags in `$WYOMING_QWEN3TTS_ARGS` (shell-split, for Compose) < command-line
flags. Every problem is a `SettingsError` with one line naming where the bad value came from, raised before
anything heavy (torch, the model) is imported.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import re
import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence
from urllib.parse import urlsplit

import yaml

from . import __version__
from .core.languages import BCP47, parse_language

_LOGGER = logging.getLogger(__name__)

ENV_ARGS = "WYOMING_QWEN3TTS_ARGS"
ENV_CONFIG = "WYOMING_QWEN3TTS_CONFIG"
ENV_HTTP_API_KEY = "WYOMING_QWEN3TTS_HTTP_API_KEY"  # read when http_api_key is unset (keeps it out of `ps`)
DEFAULT_ZEROCONF_NAME = "qwen3-tts"
AUTO = "auto"
MODEL_TYPES = ("custom_voice", "base", "voice_design")
# Official hub ids: Qwen/Qwen3-TTS-12Hz-<size>-<CustomVoice|Base|VoiceDesign>.

# The model's 10 languages (engine names) and their BCP-47 codes: one table, in server/language.py.
LANGUAGES = BCP47
# OpenAI voice names -> our voices (any voice name works as a target: a speaker, clone:NAME, design:NAME).
DEFAULT_OPENAI_VOICES = {
    "alloy": "vivian",
    "echo": "ryan",
    "fable": "serena",
    "nova": "aiden",
    "onyx": "eric",
    "shimmer": "dylan",
}
_DTYPES = {
    "auto": "auto",
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}
_QUANTIZE = ("auto", "none", "int8", "int4")  # engine.QUANT_MODES (not imported: settings load without torch)


class SettingsError(ValueError):
    """Invalid configuration; the message is one line fit for the user."""


@dataclass
class Settings:
    uri: str = "tcp://0.0.0.0:10200"
    zeroconf: Optional[str] = None  # None = off; "" = announce under DEFAULT_ZEROCONF_NAME
    model: str = "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"
    clone_model: Optional[str] = AUTO  # Base model of clone: voices; None = clone voices off
    design_model: Optional[str] = AUTO  # VoiceDesign model of design: voices; None = design voices off
    data_dir: Path = Path("data")
    voices_dir: Optional[Path] = None  # None = <data_dir>/voices
    cache_dir: Optional[str] = None
    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "auto"  # int8/int4 weights of the talker and code predictor (CPU only); engine/policy.py
    voice: Optional[str] = None
    language: str = "auto"
    samples_per_chunk: int = 1024  # int16 samples per audio-chunk event
    max_concurrent: int = 4
    slots: int = 4  # KV-cache slots of the engine
    max_text_chars: int = 5000
    local_files_only: bool = False
    streaming: bool = True
    debug: bool = False
    log_format: str = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    threads: Optional[int] = None
    max_loaded_models: int = 2
    preload: bool = False
    http: bool = True  # the OpenAI-compatible HTTP API and web UI (wyoming_qwen3tts/http)
    http_host: str = "0.0.0.0"
    http_port: int = 8880
    http_api_key: Optional[str] = field(default=None, repr=False)  # never in logs
    http_allow: Optional[list[str]] = None  # peer networks allowed; None = everyone
    http_trusted: Optional[list[str]] = None  # peer networks that need no API key (the ingress proxy)
    openai_voices: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_OPENAI_VOICES))

    @property
    def voices_path(self) -> Path:
        """The voice library directory."""
        return self.voices_dir if self.voices_dir is not None else self.data_dir / "voices"

    @property
    def zeroconf_name(self) -> Optional[str]:
        """Service name to announce, or None when zeroconf is off."""
        if self.zeroconf is None:
            return None
        return self.zeroconf or DEFAULT_ZEROCONF_NAME


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


def _optional(check: Callable[[Any, bool], Any]) -> Callable[[Any, bool], Any]:
    def wrapped(value: Any, from_text: bool) -> Any:
        return None if value is None else check(value, from_text)

    return wrapped


_CHECKS: dict[str, Callable[[Any, bool], Any]] = {
    "uri": _check_uri,
    "zeroconf": _check_zeroconf,
    "model": _check_str,
    "clone_model": _check_model_choice,
    "design_model": _check_model_choice,
    "data_dir": _check_path,
    "voices_dir": _optional(_check_path),
    "cache_dir": _optional(_check_str),
    "device": _check_device,
    "dtype": _check_dtype,
    "quantize": _check_quantize,
    "voice": _optional(_check_str),
    "language": _check_language,
    "samples_per_chunk": _check_positive_int,
    "max_concurrent": _check_positive_int,
    "slots": _check_positive_int,
    "max_text_chars": _check_positive_int,
    "local_files_only": _check_bool,
    "streaming": _check_bool,
    "debug": _check_bool,
    "log_format": _check_log_format,
    "threads": _optional(_check_positive_int),
    "max_loaded_models": _check_positive_int,
    "preload": _check_bool,
    "http": _check_bool,
    "http_host": _check_host,
    "http_port": _check_port,
    "http_api_key": _optional(_check_str),
    "http_allow": _check_allow,
    "http_trusted": _check_allow,
    "openai_voices": _check_voice_map,
}
assert set(_CHECKS) == {f.name for f in fields(Settings)}, "every Settings field needs a check"

# Flag spelling of each field (for error messages); --no-streaming is the one inverted flag.
_FLAGS = {name: "--" + name.replace("_", "-") for name in _CHECKS}
_FLAGS["streaming"] = "--no-streaming"
_FLAGS["http"] = "--no-http"


# ---------------------------------------------------------------------------------------------------------
# Parser


class _Parser(argparse.ArgumentParser):
    """Raises SettingsError instead of printing usage and exiting: the caller prints one line, exits 2."""

    def error(self, message: str):  # argparse: never returns
        raise SettingsError(message)


def build_parser() -> argparse.ArgumentParser:
    """Server flags. Defaults are SUPPRESSed so a parsed namespace holds only what was given (precedence)."""
    d = Settings()
    p = _Parser(
        prog="wyoming-qwen3tts",
        description="Wyoming text-to-speech server running Qwen3-TTS.",
        epilog="Also: 'python -m wyoming_qwen3tts synth --help' writes one WAV file without a server. "
        f"Flags can come from a YAML file (--config or ${ENV_CONFIG}) and from ${ENV_ARGS}; "
        "precedence: defaults < config file < env < command line.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
    )
    p.add_argument("--uri", help=f"tcp://HOST:PORT, unix:///PATH or stdio:// (default: {d.uri})")
    p.add_argument(
        "--zeroconf",
        nargs="?",
        const="",
        metavar="NAME",
        help=f"announce over mDNS/zeroconf (tcp only); NAME defaults to '{DEFAULT_ZEROCONF_NAME}'",
    )
    p.add_argument("--model", help=f"Hugging Face id or local checkpoint directory (default: {d.model})")
    p.add_argument(
        "--clone-model",
        metavar="MODEL",
        help="Base model for clone: voices: hub id, directory, auto (the Base model of the main model's "
        "size) or none (default: auto)",
    )
    p.add_argument(
        "--design-model",
        metavar="MODEL",
        help="VoiceDesign model for design: voices: hub id, directory, auto (the official 1.7B one) or none "
        "(default: auto)",
    )
    p.add_argument(
        "--max-loaded-models",
        metavar="N",
        help="models kept in memory at once; the least recently used idle one is unloaded to load another "
        f"(default: {d.max_loaded_models})",
    )
    p.add_argument(
        "--preload",
        action="store_true",
        help="load every configured model at start and keep them (no loading on demand)",
    )
    p.add_argument("--data-dir", metavar="DIR", help=f"voice library and caches (default: {d.data_dir})")
    p.add_argument("--voices-dir", metavar="DIR", help="voice library (default: DATA_DIR/voices)")
    p.add_argument("--cache-dir", metavar="DIR", help="Hugging Face download cache (default: the hub's own)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N; ROCm GPUs are cuda too (default: auto)")
    p.add_argument(
        "--dtype",
        help="auto (bf16 on GPUs and on CPUs with native bf16, else fp32), float32, bfloat16, float16",
    )
    p.add_argument(
        "--quantize",
        help="weights of the talker and code predictor on CPU: auto (int8 where this CPU has a fast int8 "
        "kernel: x86-64 AVX2 and up, ARM64), none, int8, int4 (experimental, AVX-512 only; elsewhere "
        "int8); ignored on a GPU (default: auto)",
    )
    p.add_argument("--voice", help="default voice when the client names none")
    p.add_argument(
        "--language",
        metavar="LANG",
        help="default language: auto, a language name or BCP-47 code (default: auto)",
    )
    p.add_argument(
        "--samples-per-chunk",
        metavar="N",
        help=f"samples per audio-chunk event (default: {d.samples_per_chunk})",
    )
    p.add_argument(
        "--max-concurrent", metavar="N", help=f"requests synthesised at once (default: {d.max_concurrent})"
    )
    p.add_argument("--slots", metavar="N", help=f"engine KV-cache slots (default: {d.slots})")
    p.add_argument(
        "--max-text-chars", metavar="N", help=f"longest accepted text (default: {d.max_text_chars})"
    )
    p.add_argument("--threads", metavar="N", help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--local-files-only", action="store_true", help="never download; use local files only")
    p.add_argument(
        "--no-streaming",
        dest="streaming",
        action="store_false",
        help="do not advertise or accept streaming synthesis (synthesize-start/chunk/stop)",
    )
    p.add_argument(
        "--http",
        action=argparse.BooleanOptionalAction,
        help="serve the OpenAI-compatible HTTP API and the voice web page (default: on; --no-http: off)",
    )
    p.add_argument("--http-host", metavar="HOST", help=f"HTTP bind address (default: {d.http_host})")
    p.add_argument("--http-port", metavar="PORT", help=f"HTTP port (default: {d.http_port})")
    p.add_argument(
        "--http-api-key",
        metavar="KEY",
        help=f"require 'Authorization: Bearer KEY' on the HTTP API and the voice page (default: off; "
        f"${ENV_HTTP_API_KEY} keeps it off the command line)",
    )
    p.add_argument(
        "--http-allow",
        action="append",
        metavar="ADDR",
        help="only these peer addresses/networks may use HTTP (repeatable or comma-separated; the TCP peer "
        "address, never X-Forwarded-For; default: everyone)",
    )
    p.add_argument(
        "--http-trusted",
        action="append",
        metavar="ADDR",
        help="peer addresses/networks that need no API key, e.g. Home Assistant's ingress proxy 172.30.32.2 "
        "(repeatable or comma-separated; default: none)",
    )
    p.add_argument(
        "--openai-voices",
        metavar="MAP",
        help="OpenAI voice names to our voices, merged over the defaults, e.g. alloy=clone:anna,echo=ryan",
    )
    p.add_argument("--debug", action="store_true", help="debug logging")
    p.add_argument("--log-format", metavar="FORMAT", help="Python logging format string")
    p.add_argument("--version", action="version", version=__version__)
    p.add_argument("--config", metavar="PATH", help=f"YAML settings file (default: ${ENV_CONFIG}, else none)")
    return p


# ---------------------------------------------------------------------------------------------------------
# Sources


def _parse_flags(parser: argparse.ArgumentParser, argv: Sequence[str], where: str) -> dict[str, Any]:
    try:
        return vars(parser.parse_args(list(argv)))
    except SettingsError as exc:
        raise SettingsError(f"{where}{exc}") from None


def _check_flags(values: dict[str, Any], where: str) -> dict[str, Any]:
    out = {}
    for name, value in values.items():
        try:
            out[name] = _CHECKS[name](value, True)
        except ValueError as exc:
            raise SettingsError(f"{where}{_FLAGS[name]}: {exc}") from None
    return out


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def read_config_file(path: Path) -> dict[str, Any]:
    """Validated, normalised values of a YAML settings file (only the keys it sets)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"config file {path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path}: cannot read ({_one_line(exc)})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise SettingsError(f"config file {path}: invalid YAML{where}: {_one_line(problem)}") from None
    if raw is None:  # empty or comments only
        return {}
    if not isinstance(raw, dict):
        raise SettingsError(
            f"config file {path}: expected a mapping of setting: value, got {type(raw).__name__}"
        )
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in _CHECKS:
            raise SettingsError(f"config file {path}: unknown key {key!r}; valid keys: {', '.join(_CHECKS)}")
        if name in out:
            raise SettingsError(f"config file {path}: {name!r} is set twice")
        try:
            out[name] = _CHECKS[name](value, False)
        except ValueError as exc:
            raise SettingsError(f"config file {path}: {key}: {exc}") from None
    return out


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """defaults < config file < $WYOMING_QWEN3TTS_ARGS < argv. Raises SettingsError (SystemExit for
    --help/--version, from argparse)."""
    parser = build_parser()
    cli = _parse_flags(parser, argv, "")
    env_text = environ.get(ENV_ARGS, "")
    try:
        env_argv = shlex.split(env_text)
    except ValueError as exc:
        raise SettingsError(f"{ENV_ARGS}: cannot split {env_text!r} ({exc})") from None
    env = _parse_flags(parser, env_argv, f"{ENV_ARGS}: ")

    config_path = cli.pop("config", None)
    env_config = env.pop("config", None)
    config_path = config_path or env_config or environ.get(ENV_CONFIG) or None
    from_file = read_config_file(Path(config_path)) if config_path else {}

    merged = {f.name: getattr(Settings(), f.name) for f in fields(Settings)}
    merged.update(from_file)
    merged.update(_check_flags(env, f"{ENV_ARGS}: "))
    merged.update(_check_flags(cli, ""))
    if merged["http_api_key"] is None and environ.get(ENV_HTTP_API_KEY, "").strip():
        merged["http_api_key"] = environ[ENV_HTTP_API_KEY].strip()
    settings = Settings(**merged)
    _LOGGER.debug("Settings (config file: %s): %s", config_path or "none", settings)
    return settings
