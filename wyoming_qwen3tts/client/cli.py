"""``python -m wyoming_qwen3tts client``: flags, exit codes and the glue between session, output and report.

Exit codes: 0 ok; 1 the server sent an ``error`` event (or no audio at all); 2 usage or a local problem
(bad flags, no player, cannot write the output); 3 connection problem (refused, timeout, connection lost, or
an answer that is not valid Wyoming).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from typing import Callable, Optional, Sequence

from wyoming.tts import SynthesizeVoice

from . import report, session
from .output import (
    PLAYERS,
    AudioPipeline,
    OutputError,
    PlayerSink,
    Sink,
    WavFileSink,
    WavStdoutSink,
    find_player,
)
from .textsource import read_all_stdin

_LOGGER = logging.getLogger(__name__)

PROG = "python -m wyoming_qwen3tts client"
ENV_URI = "WYOMING_URI"
DEFAULT_URI = "tcp://127.0.0.1:10200"
DEFAULT_TIMEOUT = 30.0
EXIT_OK, EXIT_SERVER_ERROR, EXIT_USAGE, EXIT_CONNECTION = 0, 1, 2, 3
EXIT_INTERRUPTED = 130


def _common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Shared flags, accepted before and after the command (the copy after it only overrides if given)."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    uri = os.environ.get(ENV_URI) or DEFAULT_URI
    parser.add_argument(
        "--uri",
        default=default(uri),
        help=f"server, tcp://HOST:PORT or unix:///PATH (default: ${ENV_URI} or {uri})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=default(DEFAULT_TIMEOUT),
        help=f"limit for connecting and for each wait on the server (default: {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="machine-readable output on stdout"
    )
    parser.add_argument(
        "--debug", action="store_true", default=default(False), help="debug logging on stderr"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Talk to any Wyoming text-to-speech server (wyoming-qwen3tts, wyoming-piper, ...) from "
        "the shell: list its voices, speak text to a WAV file or the sound card, and time it.",
        epilog=f"Exit codes: {EXIT_OK} ok, {EXIT_SERVER_ERROR} server error event (or no audio), "
        f"{EXIT_USAGE} usage or local problem, {EXIT_CONNECTION} connection problem or timeout.",
    )
    _common_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    describe = commands.add_parser("describe", help="list the server's programs, voices and languages")
    _common_options(describe, suppress=True)

    say = commands.add_parser(
        "say",
        help="synthesize text and report timings",
        description="Synthesize TEXT ('-' reads stdin). Timings go to stderr; audio to --out and/or --play.",
    )
    _common_options(say, suppress=True)
    say.add_argument("text", nargs="+", metavar="TEXT", help="words to speak, or '-' for standard input")
    say.add_argument("--voice", metavar="NAME", help="voice name as listed by describe")
    say.add_argument("--speaker", metavar="NAME", help="speaker of a multi-speaker voice (needs --voice)")
    say.add_argument(
        "--language", metavar="LANG", help="voice language (the protocol drops it when --voice is given)"
    )
    say.add_argument("--out", metavar="FILE", help="write a WAV file (written atomically); '-' = stdout")
    say.add_argument("--play", action="store_true", help=f"play through {'/'.join(PLAYERS)} as audio arrives")
    say.add_argument("--player", choices=PLAYERS, help="which player --play uses (default: the first found)")
    say.add_argument(
        "--stream",
        action="store_true",
        help="send synthesize-start/-chunk/-stop in fragments, like an LLM reply (falls back to one "
        "synthesize if the server cannot stream)",
    )
    say.add_argument(
        "--chunk-words", type=int, metavar="N", help="words per streamed fragment (default: 3; --stream)"
    )
    say.add_argument(
        "--chunk-delay",
        type=float,
        metavar="SECONDS",
        help="pause between streamed fragments (default: 0; --stream)",
    )
    say.add_argument("--quiet", action="store_true", help="no timing block on stderr")
    return parser


def _validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors exit 2 through argparse, before anything connects."""
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.command != "say":
        return
    if "-" in args.text and len(args.text) > 1:
        parser.error("use '-' alone to read the text from standard input")
    if args.text != ["-"] and not " ".join(args.text).strip():
        parser.error("no text to speak")
    if args.speaker and not args.voice:
        parser.error("--speaker needs --voice (the protocol only sends a speaker with a voice name)")
    if not args.stream and (args.chunk_words is not None or args.chunk_delay is not None):
        parser.error("--chunk-words and --chunk-delay only apply with --stream")
    if args.chunk_words is not None and args.chunk_words < 1:
        parser.error("--chunk-words must be at least 1")
    if args.chunk_delay is not None and args.chunk_delay < 0:
        parser.error("--chunk-delay cannot be negative")
    if args.player and not args.play:
        parser.error("--player needs --play")
    if args.out == "-":
        if args.json:
            parser.error("--json and --out - both want standard output; write the WAV to a file")
        if sys.stdout.isatty():
            parser.error("--out - writes binary WAV data: redirect standard output to a file or a pipe")


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _make_sinks(args: argparse.Namespace, warn: Callable[[str], None]) -> list[Sink]:
    sinks: list[Sink] = []
    if args.out == "-":
        sinks.append(WavStdoutSink(sys.stdout.buffer))
    elif args.out:
        sinks.append(WavFileSink(args.out))
    if args.play:
        name, path = find_player(args.player)
        sinks.append(PlayerSink(name, path, warn))
    return sinks


def _run_describe(args: argparse.Namespace) -> int:
    info = asyncio.run(session.describe(args.uri, args.timeout))
    if args.json:
        print(json.dumps(info.event().data, ensure_ascii=False))
    else:
        print(report.format_info(info, args.uri))
    return EXIT_OK


def _run_say(args: argparse.Namespace) -> int:
    sinks = _make_sinks(args, _warn)  # before connecting: a missing player is a usage problem
    voice = None
    if args.voice or args.language or args.speaker:
        voice = SynthesizeVoice(name=args.voice, language=args.language, speaker=args.speaker)
    if args.voice and args.language:
        _warn("note: Wyoming sends no language with a voice name; --language is dropped")
    text = session.TextInput(words=args.chunk_words or 3, delay=args.chunk_delay or 0.0)
    if args.text == ["-"] and args.stream:
        text.stdin = True
    elif args.text == ["-"]:
        if sys.stdin.isatty():
            _warn("reading the text from standard input; end it with Ctrl-D")
        text.text = read_all_stdin()  # before connecting: typing time is not server time
        if not text.text.strip():
            _warn("error: no text on standard input")
            return EXIT_USAGE
    else:
        text.text = " ".join(args.text)

    pipeline = AudioPipeline(sinks, _warn)
    try:
        result = asyncio.run(session.say(args.uri, text, voice, args.stream, pipeline, args.timeout, _warn))
    except BaseException:
        with contextlib.suppress(Exception):  # the original problem is the one to report
            pipeline.finish(False)  # drops the temporary WAV, stops the player
        raise
    failed = result.error_code is not None or result.error_text is not None
    ok = not failed and pipeline.bytes > 0
    pipeline.finish(ok)  # publishes the WAV only on success; waits until the player has played it all

    output = None if args.out is None else ("stdout" if args.out == "-" else args.out)
    player = next((sink.name for sink in sinks if isinstance(sink, PlayerSink)), None)
    data = report.summary(result, pipeline, output if ok else None, player)
    if args.json:
        print(json.dumps(data, ensure_ascii=False), flush=True)
    elif not args.quiet and (ok or pipeline.bytes):  # after a plain error the error line says it all
        _warn(report.timing_block(data, str(pipeline.format) if pipeline.format else ""))
    if failed:
        code = f" {result.error_code}" if result.error_code else ""
        _warn(f"error{code}: {result.error_text}")
    elif not ok:
        _warn("error: the server sent no audio")
    if not ok and args.out not in (None, "-"):
        _warn(f"nothing written to {args.out}")
    return EXIT_OK if ok else EXIT_SERVER_ERROR


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _validate(parser, args)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "describe":
            return _run_describe(args)
        return _run_say(args)
    except session.UsageProblem as err:  # e.g. a URI the client cannot use
        _warn(f"{PROG}: error: {err}")
        return EXIT_USAGE
    except OutputError as err:
        _warn(f"error: {err}")
        return EXIT_USAGE
    except session.ConnectionProblem as err:
        _warn(f"error: {err}")
        return EXIT_CONNECTION
    except KeyboardInterrupt:
        _warn("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
