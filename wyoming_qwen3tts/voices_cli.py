"""`python -m wyoming_qwen3tts voices ...`: manage the voice library (add, design, list, remove, rebuild,
import).

The library lives in ``<data_dir>/voices``. ``data_dir`` (and the model settings ``rebuild`` falls back on)
come from the server's own settings: defaults < ``--config``/``$WYOMING_QWEN3TTS_CONFIG`` <
``$WYOMING_QWEN3TTS_ARGS`` < the flags given here, so the CLI and the server agree on where the library is.
Every user error is one line ``voices: error: <code>: <message>`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from .core.vocab import ErrorCode, ModelRole, VoiceKind
from .service.roles import role_models
from .voices.commands import add_profile_options, add_style_parsers, cmd_set, cmd_style
from .voices.commands import describe as _describe
from .voices.commands import with_speed
from .voices.library import MODES, VoiceLibrary, VoiceLibraryError, VoiceProfile, normalize_name
from .voices.validation import check_speed

_LOGGER = logging.getLogger(__name__)

PROG = "python -m wyoming_qwen3tts voices"


class CliError(Exception):
    """A user error with a stable code, printed as one line."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _add_common(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: the options may come before or after the command without one hiding the other.
    p.add_argument("--data-dir", metavar="DIR", default=argparse.SUPPRESS, help="the library is DIR/voices")
    p.add_argument(
        "--voices-dir",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="the library itself (overrides --data-dir)",
    )
    p.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="server YAML settings to take defaults from",
    )
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="debug logging")


def _add_model_options(p: argparse.ArgumentParser, model_help: str) -> None:
    p.add_argument("--model", metavar="MODEL", help=model_help)
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the device setting)")
    p.add_argument("--dtype", help="auto, float32, bfloat16, float16 (default: the dtype setting)")
    p.add_argument("--local-files-only", action="store_true", help="never download the model")
    p.add_argument("--cache-dir", metavar="D", help="Hugging Face download cache")


def _load_engine(args: argparse.Namespace, settings: Any, model: str, role: str) -> Any:
    """The model a command needs, with the server's device/dtype/cache settings unless overridden."""
    from .engine import Engine

    engine = Engine.load(
        model,
        device=args.device or settings.device,
        dtype=args.dtype or settings.dtype,
        slots=1,
        quantize="none",  # unquantized, as before (LoadOptions defaults to the server's auto now)
        cache_dir=args.cache_dir or settings.cache_dir,
        local_files_only=args.local_files_only or settings.local_files_only,
    )
    if engine.model_type != role:
        engine.close()
        raise CliError(
            "wrong-model-type", f"{model} is a {engine.model_type} model; this needs a {role} model"
        )
    return engine


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Manage the voice library (<data-dir>/voices) of wyoming-qwen3tts.",
        epilog="The data dir defaults to the server's setting (--config, $WYOMING_QWEN3TTS_CONFIG, "
        "$WYOMING_QWEN3TTS_ARGS, else 'data').",
        allow_abbrev=False,
    )
    _add_common(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    add = sub.add_parser("add", help="add a clone voice from a reference clip")
    add.add_argument("name", metavar="NAME", help="voice name: 1-64 of a-z 0-9 _ -")
    add.add_argument("--audio", required=True, metavar="FILE", help="reference clip (wav, flac, ogg, mp3)")
    add.add_argument("--text", metavar="TRANSCRIPT", help="exact transcript of the clip (enables ICL mode)")
    add.add_argument(
        "--mode",
        choices=MODES,
        default="icl",
        help="icl (needs --text; most similar) or xvector (speaker embedding only); default: icl",
    )
    add_profile_options(add)

    design = sub.add_parser(
        "design",
        help="add a designed voice from a description",
        description="Add a design voice: an instruct text for the VoiceDesign model. With --freeze, the "
        "VoiceDesign model speaks a sample once and the voice is stored as a clone voice instead (same sound "
        "every time, runs on the faster Base model).",
    )
    design.add_argument("name", metavar="NAME", help="voice name: 1-64 of a-z 0-9 _ -")
    design.add_argument("--instruct", required=True, metavar="TEXT", help="voice description")
    add_profile_options(design)
    design.add_argument(
        "--freeze", action="store_true", help="synthesize a reference clip now and store a clone voice"
    )
    design.add_argument("--sample-text", metavar="TEXT", help="what the frozen clip says (default: a sample)")
    design.add_argument("--seed", type=int, default=0, help="sampling seed of the frozen clip (default: 0)")
    _add_model_options(design, "VoiceDesign model for --freeze (default: the design_model setting)")

    lst = sub.add_parser("list", help="list the voices")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")

    imp = sub.add_parser(
        "import",
        help="import another server's voices (voice_library/profiles/<id>/meta.json, or <name>.wav + .txt)",
        description="Import the voice library of the OpenAI-compatible Qwen3-TTS server (DIR/profiles/<id>/"
        "meta.json + the reference file) or a folder of <name>.wav + <name>.txt. Reports each voice as "
        "imported, skipped or failed; re-running imports nothing new. Exit status 1 when a voice failed.",
    )
    imp.add_argument("directory", metavar="DIR", help="the other server's voice_library (or profiles) folder")
    imp.add_argument("--overwrite", action="store_true", help="replace voices of the same name that differ")
    imp.add_argument("--json", action="store_true", help="print JSON instead of lines")

    rm = sub.add_parser("remove", help="delete a voice")
    rm.add_argument("name", metavar="NAME")

    rebuild = sub.add_parser(
        "rebuild",
        help="recompute the cached voice prompts of clone voices",
        description="Load the Base (clone) model and recompute the cached voice prompts of the clone "
        "voices (all, or the NAMEs given).",
    )
    rebuild.add_argument("names", nargs="*", metavar="NAME", help="voices to rebuild (default: all)")
    _add_model_options(rebuild, "Base model, hub id or directory (default: the clone_model setting)")
    style, setp = add_style_parsers(sub)
    for parser in (add, design, style, setp, lst, imp, rm, rebuild):
        _add_common(parser)
    return p


def _settings(args: argparse.Namespace) -> Any:
    """The server settings, with this command's --config/--data-dir on top (same precedence as the server)."""
    from .settings import SettingsError, load_settings

    argv: list[str] = []
    if getattr(args, "config", None):
        argv += ["--config", args.config]
    if getattr(args, "data_dir", None):
        argv += ["--data-dir", args.data_dir]
    if getattr(args, "voices_dir", None):
        argv += ["--voices-dir", args.voices_dir]
    try:
        return load_settings(argv, os.environ)
    except SettingsError as exc:
        raise CliError("invalid-setting", str(exc)) from None


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Mute a logger whose messages this CLI prints itself (no duplicate lines)."""
    logger = logging.getLogger(name)
    level = logger.level
    if not logger.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _as_dict(profile: VoiceProfile) -> dict[str, Any]:
    """Every profile field (JSON-ready), so `list --json` never lags behind the profile."""
    out = {f.name: getattr(profile, f.name) for f in dataclasses.fields(profile) if f.name != "warnings"}
    out["audio_path"] = None if profile.audio_path is None else str(profile.audio_path)
    return out


def _table(profiles: list[VoiceProfile]) -> str:
    rows = [("NAME", "KIND", "LANGUAGE", "MODE", "DISPLAY NAME")]
    for p in profiles:
        kind = p.kind + (" (file)" if p.read_only else "")
        rows.append((p.name, kind, p.language or "auto", p.mode or "-", p.display_name))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows
    )


def _cmd_add(library: VoiceLibrary, args: argparse.Namespace) -> int:
    check_speed(args.speed)  # before anything is written
    if not Path(args.audio).is_file():  # a clearer message than the decoder's
        raise VoiceLibraryError(ErrorCode.AUDIO_UNREADABLE, f"{args.audio}: no such file")
    with _quiet("wyoming_qwen3tts.voices.library"):
        profile = library.add_clone(
            args.name,
            args.audio,
            transcript=args.text,
            language=args.language,
            mode=args.mode,
            display_name=args.display_name,
            overwrite=args.force,
        )
    profile = with_speed(library, profile, args.speed)
    print(f"Added {_describe(profile)}")
    for warning in profile.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _cmd_design(library: VoiceLibrary, args: argparse.Namespace, settings: Any) -> int:
    check_speed(args.speed)
    if args.freeze:
        return _freeze(library, args, settings)
    profile = library.add_design(
        args.name,
        args.instruct,
        language=args.language,
        display_name=args.display_name,
        overwrite=args.force,
    )
    profile = with_speed(library, profile, args.speed)
    print(f"Added {_describe(profile)}")
    return 0


def _freeze(library: VoiceLibrary, args: argparse.Namespace, settings: Any) -> int:
    from .voices.freeze import freeze_design

    model = args.model or role_models(settings)[ModelRole.VOICE_DESIGN]
    if not model:
        raise CliError("no-model", "no VoiceDesign model: pass --model or set design_model in the settings")
    key = normalize_name(args.name)  # fail before the slow model load and synthesis, not after
    if not args.force and (library.root / key).exists():
        raise VoiceLibraryError(ErrorCode.VOICE_EXISTS, f"a voice named {key!r} already exists")
    print(f"Loading {model} ...", flush=True)
    engine = _load_engine(args, settings, model, ModelRole.VOICE_DESIGN)
    try:
        print("Speaking the sample clip ...", flush=True)
        with _quiet("wyoming_qwen3tts.voices.library"):
            profile = freeze_design(
                library,
                engine,
                args.name,
                args.instruct,
                args.language,
                text=args.sample_text,
                seed=args.seed,
                display_name=args.display_name,
                overwrite=args.force,
            )
    finally:
        engine.close()
    profile = with_speed(library, profile, args.speed)
    print(f"Added {_describe(profile)} (frozen from the description)")
    for warning in profile.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _cmd_list(library: VoiceLibrary, args: argparse.Namespace) -> int:
    profiles = library.list()
    if args.json:
        print(json.dumps([_as_dict(p) for p in profiles], indent=2, ensure_ascii=False))
    elif not profiles:
        print(f"No voices in {library.root}")
    else:
        print(_table(profiles))
    return 0


def _cmd_import(library: VoiceLibrary, args: argparse.Namespace) -> int:
    from .voices.importer import import_voices

    with _quiet("wyoming_qwen3tts.voices.library"):
        outcomes = import_voices(library, Path(args.directory), overwrite=args.overwrite)
    if args.json:
        print(json.dumps([o.as_dict() for o in outcomes], indent=2, ensure_ascii=False))
    for o in outcomes if not args.json else []:
        voice = f"clone:{o.name}" if o.name else "-"
        print(f"{o.status:<8}  {voice:<24}  {o.source}" + (f": {o.reason}" if o.reason else ""))
        for warning in o.warnings:
            print(f"warning: {o.source}: {warning}", file=sys.stderr)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("imported", "skipped", "failed")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()) + f" ({library.root})", file=sys.stderr)
    return 1 if counts["failed"] else 0


def _cmd_remove(library: VoiceLibrary, args: argparse.Namespace) -> int:
    library.remove(args.name)
    print(f"Removed voice {args.name.strip().lower()!r}")
    return 0


def _progress(total: int):
    """A progress callback: a tqdm bar on a terminal, else one plain line per voice (logs stay readable)."""
    bar = None
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="voice", file=sys.stderr)
        except ImportError:
            pass

    def report(done: int, count: int, profile: VoiceProfile) -> None:
        if bar is not None:
            bar.set_postfix_str(profile.name)
            bar.update(1)
        else:
            print(f"[{done}/{count}] {profile.name}", flush=True)

    return report, bar


def _cmd_rebuild(library: VoiceLibrary, args: argparse.Namespace, settings: Any) -> int:
    model = args.model or role_models(settings)[ModelRole.BASE]
    if not model:
        raise CliError("no-model", "no Base model given: pass --model or set clone_model in the settings")
    if args.names:
        profiles = [library.get(name) for name in args.names]
    else:
        profiles = library.list()
    for p in profiles if args.names else ():  # only worth saying for voices the user named
        if p.kind != "clone":
            print(f"{p.name}: {p.kind} voice, no prompt to build")
    clones = [p for p in profiles if p.kind == VoiceKind.CLONE]
    if not clones:
        print("No clone voices to rebuild")
        return 0

    from .voices.prompts import PromptCache

    engine = _load_engine(args, settings, model, ModelRole.BASE)
    try:
        report, bar = _progress(len(clones))
        with _quiet("wyoming_qwen3tts.voices.prompts"):
            results = PromptCache(library).rebuild(clones, engine, model, progress=report)
        if bar is not None:
            bar.close()
    finally:
        engine.close()
    failed = {name: err for name, err in results.items() if err is not None}
    for name, err in failed.items():
        print(f"{name}: failed: {' '.join(str(err).split())}", file=sys.stderr)
    if failed:
        raise CliError("rebuild-failed", f"{len(failed)} of {len(results)} voice prompts could not be built")
    print(f"Rebuilt {len(results)} voice prompt(s) for {model}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    debug = getattr(args, "debug", False)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if debug else "%(levelname)s: %(message)s",
    )
    from .engine.audio import AudioError
    from .engine.checkpoint import CheckpointError

    try:
        settings = _settings(args)
        library = VoiceLibrary(settings.voices_path)
        if args.command == "rebuild":
            return _cmd_rebuild(library, args, settings)
        if args.command == "design":
            return _cmd_design(library, args, settings)
        handler = {"add": _cmd_add, "list": _cmd_list, "remove": _cmd_remove, "import": _cmd_import}
        handler.update(style=cmd_style, set=cmd_set)
        return handler[args.command](library, args)
    except (CliError, VoiceLibraryError, AudioError) as exc:
        _error(exc.code, exc.message, debug)
    except CheckpointError as exc:
        _error("model-error", str(exc), debug)
    except (ValueError, OSError) as exc:
        _error("invalid-argument" if isinstance(exc, ValueError) else "os-error", str(exc), debug)
    return 2


def _error(code: str, message: str, debug: bool) -> None:
    if debug:
        _LOGGER.debug("Failed", exc_info=True)
    print(f"voices: error: {code}: {' '.join(message.split())}", file=sys.stderr)
