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
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml

# Re-exported: the rest of the package and the tests read these from `settings`.
from .checks import normalize_language
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
from .options_delivery import DeliverySettings
from .options_http import HttpSettings
from .options_limits import LimitSettings
from .options_model import ModelSettings
from .options_server import ServerSettings
from .parser import SettingsError, make_parser
from .spec import Spec, declared

_LOGGER = logging.getLogger(__name__)


# Each setting is declared once, as a field of one of the topic dataclasses (settings/options_*.py): its type,
# default, check, flag, help, README text and add-on option. Fields come in base-class order, last base first.
@dataclass
class Settings(LimitSettings, DeliverySettings, HttpSettings, ModelSettings, ServerSettings):
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


SPECS: tuple[Spec, ...] = tuple(declared(Settings))
# Generated tables: the check of each setting, and the flag an error message names.
_CHECKS = {spec.name: spec.check for spec in SPECS}
_FLAGS = {spec.name: spec.error_flag for spec in SPECS}


def build_parser() -> argparse.ArgumentParser:
    """Server flags, one per setting (settings/parser.py), plus --config and --version."""
    return make_parser(SPECS)


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


__all__ = [
    "AUTO",
    "DEFAULT_OPENAI_VOICES",
    "DEFAULT_ZEROCONF_NAME",
    "ENV_ARGS",
    "ENV_CONFIG",
    "ENV_HTTP_API_KEY",
    "LANGUAGES",
    "MODEL_TYPES",
    "SPECS",
    "Settings",
    "SettingsError",
    "build_parser",
    "load_settings",
    "normalize_language",
    "read_config_file",
    "_QUANTIZE",
    "_DTYPES",
]
