"""Entry point: `python -m wyoming_qwen3tts synth ...` writes a WAV file; the Wyoming server (plain
`python -m wyoming_qwen3tts` with server flags) lands with the server issue."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from . import __version__


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if debug else "%(levelname)s: %(message)s",
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "synth":
        from .synth_cli import build_parser, run

        args = build_parser().parse_args(argv[1:])
        _setup_logging(args.debug)
        try:
            return run(args)
        except (ValueError, FileNotFoundError) as exc:  # user errors: one clear line, no traceback
            logging.getLogger("wyoming_qwen3tts").error("%s", exc)
            return 2
    parser = argparse.ArgumentParser(prog="python -m wyoming_qwen3tts", description="Qwen3-TTS for Wyoming")
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("command", nargs="?", help="synth: write one WAV file (see 'synth --help')")
    parser.parse_args(argv[:1])
    parser.error("the Wyoming server is not part of this version yet; use the 'synth' subcommand")
    return 2


if __name__ == "__main__":
    sys.exit(main())
