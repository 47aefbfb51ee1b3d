"""The `voices` CLI's commands for style voices and speeds (`voices style`, `voices set`, `--speed`) and how a
profile is printed; kept beside the library so voices_cli.py stays one small module of wiring."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Optional

from ..core.vocab import VoiceKind
from .library import VoiceLibrary, VoiceProfile
from .styles import add_style, set_speed
from .validation import check_speed

SPEED_HELP = "speaking rate of this voice, 0.5-2.0 (default: the server's --speed)"


def add_profile_options(parser: argparse.ArgumentParser) -> None:
    """The options every command that adds a voice takes (add, design, style)."""
    parser.add_argument("--language", metavar="L", help="language name or BCP-47 code (default: auto)")
    parser.add_argument("--display-name", metavar="S", help="name shown to clients (default: NAME)")
    parser.add_argument("--force", action="store_true", help="replace an existing voice of the same name")
    parser.add_argument("--speed", type=float, metavar="X", help=SPEED_HELP)


def add_style_parsers(sub: Any) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The `style` and `set` subcommands on the `voices` parser's subparsers."""
    style = sub.add_parser(
        "style",
        help="add a style voice: a built-in speaker with an instruction",
        description="Add a style voice: a built-in speaker of the 1.7B CustomVoice model with a standing "
        "instruction (and optionally a speed), pickable in Home Assistant like any voice.",
    )
    style.add_argument("name", metavar="NAME", help="voice name: 1-64 of a-z 0-9 _ -")
    style.add_argument("--speaker", required=True, help="built-in speaker, e.g. ryan, vivian, ono_anna")
    style.add_argument(
        "--instruct", required=True, metavar="TEXT", help="e.g. 'calm, quiet night-time voice'"
    )
    add_profile_options(style)

    setp = sub.add_parser("set", help="change a stored voice's speed")
    setp.add_argument("name", metavar="NAME")
    setp.add_argument("--speed", type=float, required=True, metavar="X", help=SPEED_HELP + "; 1 clears it")
    return style, setp


def describe(profile: VoiceProfile) -> str:
    lines = [f"{profile.kind} voice {profile.name!r} ({profile.display_name})"]
    lines.append(f"  language: {profile.language or 'auto'}")
    if profile.kind == VoiceKind.CLONE:
        lines.append(f"  mode: {profile.mode}")
        if profile.transcript:
            lines.append(f"  transcript: {profile.transcript}")
    if profile.speaker:
        lines.append(f"  speaker: {profile.speaker}")
    if profile.instruct:
        lines.append(f"  instruct: {profile.instruct}")
    if profile.speed:
        lines.append(f"  speed: {profile.speed:g}")
    if profile.directory is not None:
        lines.append(f"  stored in: {profile.directory}")
    return "\n".join(lines)


def with_speed(library: VoiceLibrary, profile: VoiceProfile, speed: Optional[float]) -> VoiceProfile:
    """A just added profile with its --speed stored (warnings of the add kept)."""
    if speed is None:
        return profile
    return dataclasses.replace(set_speed(library, profile.name, speed), warnings=profile.warnings)


def cmd_style(library: VoiceLibrary, args: argparse.Namespace) -> int:
    check_speed(args.speed)  # before anything is written
    profile = add_style(
        library,
        args.name,
        args.speaker,
        args.instruct,
        language=args.language,
        speed=args.speed,
        display_name=args.display_name,
        overwrite=args.force,
    )
    print(f"Added {describe(profile)}")
    return 0


def cmd_set(library: VoiceLibrary, args: argparse.Namespace) -> int:
    profile = set_speed(library, args.name, args.speed)
    print(f"Updated {describe(profile)}")
    return 0
