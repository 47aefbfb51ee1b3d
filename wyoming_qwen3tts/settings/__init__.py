"""Server settings: piper-style flags, a YAML config file and an env var passthrough, validated up front.

Precedence (lowest to highest): built-in defaults < config file (`--config PATH`, else
`$WYOMING_QWEN3TTS_CONFIG`) < flags in `$WYOMING_QWEN3TTS_ARGS` (shell-split, for Compose) < command-line
flags. Every problem is a `SettingsError` with one line naming where the bad value came from, raised before
anything heavy (torch, the model) is imported.
"""

from __future__ import annotations

import argparse
import logging
import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml

from .. import __version__

# Re-exported: the rest of the package and the tests read these from `settings`.
from .checks import _CHECKS, _FLAGS, normalize_language
from .constants import (
    _DTYPES,
    _QUANTIZE,
    AUTO,
    DEFAULT_OPENAI_VOICES,
    DEFAULT_ZEROCONF_NAME,
    ENV_ARGS,
    ENV_CONFIG,
    ENV_HTTP_API_KEY,
    LANGUAGES,
    MODEL_TYPES,
)

_LOGGER = logging.getLogger(__name__)


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
    # Delivery (service/delivery.py): checks in settings/delivery.py.
    speed: float = 1.0  # speaking rate of voices without their own (pitch-preserving)
    sentence_silence: float = 0.0  # seconds of silence between the sentences of a reply
    prebuffer: Any = "auto"  # "auto" | "off" | seconds held back per segment (service/pacing.py)
    max_silence: float = 3.0  # longest pause a held-back segment may cause (long sentences are cut)
    debug_slowdown: Optional[str] = None  # FACTOR or RATEx: slower generation, for tests (engine/slowdown.py)
    normalize: bool = True  # numbers, units, dates ... to words when the language is known
    seed: Optional[int] = None  # sampling seed of every request (reproducible audio); None = random
    strict_voices: bool = False  # an unknown voice is an error instead of the default voice
    unload_after: Optional[float] = None  # seconds idle before the models are unloaded; None = never
    # Limits against broken or hostile clients (README "Limits and security").
    idle_timeout: int = 60  # seconds a connection may sit idle (open stream, headers, body) before it is cut
    write_timeout: int = 60  # seconds a client may stop reading its audio before it is cut
    max_connections_per_peer: int = 16  # open connections per client address, each port
    max_connections: int = 200  # open connections in all, each port (counted from accept)
    connection_idle_timeout: int = 300  # seconds a Wyoming connection without a stream or request may idle
    http_host_names: Optional[list[str]] = None  # extra Host names the HTTP API answers (DNS rebinding)
    max_voices: int = 500  # voice library: profiles at most
    max_library_mb: int = 2048  # voice library: disk use at most

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
    p.add_argument("--speed", metavar="X", help="speaking rate, 0.5-2.0, pitch kept (default: 1.0)")
    p.add_argument(
        "--sentence-silence", metavar="SECONDS", help="pause between the sentences of a reply (default: 0)"
    )
    p.add_argument(
        "--prebuffer",
        metavar="auto|off|SECONDS",
        help="on hosts slower than real time, hold each phrase back until it can play without a stall "
        "(default: auto; off: send audio as soon as it is made; SECONDS: a fixed amount)",
    )
    p.add_argument(
        "--max-silence",
        metavar="SECONDS",
        help="longest pause a held-back phrase may cause; longer sentences are cut at clauses (default: 3)",
    )
    p.add_argument(
        "--debug-slowdown",
        metavar="FACTOR|RATEx",
        help="testing only: generation FACTOR times slower, or at RATE x real time (e.g. 0.25x)",
    )
    p.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        help="numbers, units, times, dates and prices spelled out in the request's language (default: on; "
        "--no-normalize: passed to the model as written)",
    )
    p.add_argument(
        "--seed", metavar="N", help="sampling seed: the same text gives the same audio (default: random)"
    )
    p.add_argument(
        "--strict-voices",
        action="store_true",
        help="an unknown voice is a voice-not-found error (default: the default voice, with a warning)",
    )
    p.add_argument(
        "--unload-after",
        metavar="SECONDS",
        help="unload the models after this long idle; the next request reloads them (default: never)",
    )
    p.add_argument(
        "--idle-timeout",
        metavar="S",
        help="seconds a connection may sit idle with a stream open or a request half sent before it is cut "
        f"(default: {d.idle_timeout})",
    )
    p.add_argument(
        "--write-timeout",
        metavar="S",
        help=f"seconds a client may stop reading its audio before it is cut (default: {d.write_timeout})",
    )
    p.add_argument(
        "--max-connections-per-peer",
        metavar="N",
        help=f"open connections per client address on each port (default: {d.max_connections_per_peer})",
    )
    p.add_argument(
        "--max-connections",
        metavar="N",
        help=f"open connections in all on each port (default: {d.max_connections})",
    )
    p.add_argument(
        "--connection-idle-timeout",
        metavar="S",
        help="seconds a Wyoming connection with no stream or request in progress may idle before it is "
        f"closed (default: {d.connection_idle_timeout})",
    )
    p.add_argument(
        "--http-host-names",
        action="append",
        metavar="NAME",
        help="host names the HTTP API answers besides IP addresses, localhost and this machine's name, "
        "e.g. tts.lan (repeatable or comma-separated; guards against DNS rebinding)",
    )
    p.add_argument("--max-voices", metavar="N", help=f"voices the library may hold (default: {d.max_voices})")
    p.add_argument(
        "--max-library-mb",
        metavar="MB",
        help=f"disk space the voice library may use (default: {d.max_library_mb})",
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


assert set(_CHECKS) == {f.name for f in fields(Settings)}, "every Settings field needs a check"

__all__ = [
    "AUTO",
    "DEFAULT_OPENAI_VOICES",
    "DEFAULT_ZEROCONF_NAME",
    "ENV_ARGS",
    "ENV_CONFIG",
    "ENV_HTTP_API_KEY",
    "LANGUAGES",
    "MODEL_TYPES",
    "Settings",
    "SettingsError",
    "build_parser",
    "load_settings",
    "normalize_language",
    "read_config_file",
    "_QUANTIZE",
    "_DTYPES",
]
