"""Entry point: `python -m wyoming_qwen3tts [server flags]` runs the Wyoming server;
`python -m wyoming_qwen3tts synth ...` writes one WAV file; `python -m wyoming_qwen3tts voices ...` manages
the voice library; `python -m wyoming_qwen3tts client ...` talks to any running Wyoming TTS server (describe,
say, timings) and imports nothing heavy.

Server start-up order matters: settings are validated first (one line, nothing heavy imported), then the GPU
environment is tuned, and only then is torch imported (by the server/engine). Every start-up failure a user
can cause (a setting, the model, a port, the voice) ends with one line that names the fix and exit code 1; the
traceback shows with --debug only."""

from __future__ import annotations

import logging
import os
import sys
from typing import Optional, Sequence


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if debug else "%(levelname)s: %(message)s",
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not (argv and argv[0] == "client"):
        from . import platform_env

        platform_env.apply_cpu_env(os.environ)  # before torch is imported (libgomp reads it once)
    if argv and argv[0] == "synth":
        from .synth_cli import build_parser, run

        args = build_parser().parse_args(argv[1:])
        _setup_logging(args.debug)
        try:
            return run(args)
        except (ValueError, FileNotFoundError) as exc:  # user errors: one clear line, no traceback
            logging.getLogger("wyoming_qwen3tts").error("%s", exc)
            return 2
    if argv and argv[0] == "client":
        from .client import main as client_main

        return client_main(argv[1:])
    if argv and argv[0] == "voices":
        from .voices_cli import main as voices_main

        return voices_main(argv[1:])
    return _run_server(argv)


def _run_server(argv: list[str]) -> int:
    from . import platform_env
    from .service.roles import check_preload
    from .settings import SettingsError, load_settings

    try:
        settings = load_settings(argv, os.environ)
        check_preload(settings)
    except SettingsError as exc:  # one line, exit 1, like every start-up failure (app.StartupError)
        print(f"wyoming-qwen3tts: error: {exc}", file=sys.stderr)
        return 1
    # Before anything imports torch: ROCm reads these variables once, at HIP initialisation.
    applied = platform_env.apply_platform_env(os.environ)
    logging.basicConfig(level=logging.DEBUG if settings.debug else logging.INFO, format=settings.log_format)
    from .service import logsafe

    logsafe.install()  # client-controlled values never forge a log line
    log = logging.getLogger("wyoming_qwen3tts")
    log.debug("%s", settings)
    if applied:
        log.info("GPU environment: %s", " ".join(f"{k}={v}" for k, v in applied.items()))
    from .app import run  # heavy: imports torch and the engine

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
