"""The server's command line, generated from the settings' declarations (settings/spec.py)."""

from __future__ import annotations

import argparse
from typing import Any, Iterable

from .. import __version__
from .constants import ENV_ARGS, ENV_CONFIG
from .spec import APPEND, BOTH, NEGATE, OPTIONAL, SWITCH, VALUE, Spec


class SettingsError(ValueError):
    """Invalid configuration; the message is one line fit for the user."""


class _Parser(argparse.ArgumentParser):
    """Raises SettingsError instead of printing usage and exiting: the caller prints one line, exits 2."""

    def error(self, message: str):  # argparse: never returns
        raise SettingsError(message)


def add_setting(parser: argparse.ArgumentParser, spec: Spec) -> None:
    """The flag of one setting; its value lands under the setting's name."""
    help_text = spec.help.replace("{default}", str(spec.default))
    kwargs: dict[str, Any] = {"help": help_text}
    if spec.metavar is not None:
        kwargs["metavar"] = spec.metavar
    if spec.flag == VALUE:
        parser.add_argument(spec.option, **kwargs)
    elif spec.flag == SWITCH:
        parser.add_argument(spec.option, action="store_true", **kwargs)
    elif spec.flag == NEGATE:
        parser.add_argument(spec.error_flag, dest=spec.name, action="store_false", **kwargs)
    elif spec.flag == BOTH:
        parser.add_argument(spec.option, action=argparse.BooleanOptionalAction, **kwargs)
    elif spec.flag == APPEND:
        parser.add_argument(spec.option, action="append", **kwargs)
    elif spec.flag == OPTIONAL:
        parser.add_argument(spec.option, nargs="?", const="", **kwargs)
    else:
        raise ValueError(f"{spec.name}: unknown flag kind {spec.flag!r}")


def make_parser(specs: Iterable[Spec]) -> argparse.ArgumentParser:
    """Server flags. Defaults are SUPPRESSed so a parsed namespace holds only what was given (precedence)."""
    parser = _Parser(
        prog="wyoming-qwen3tts",
        description="Wyoming text-to-speech server running Qwen3-TTS.",
        epilog="Also: 'python -m wyoming_qwen3tts synth --help' writes one WAV file without a server. "
        f"Flags can come from a YAML file (--config or ${ENV_CONFIG}) and from ${ENV_ARGS}; "
        "precedence: defaults < config file < env < command line.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
    )
    for spec in specs:
        add_setting(parser, spec)
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "--config", metavar="PATH", help=f"YAML settings file (default: ${ENV_CONFIG}, else none)"
    )
    return parser
