"""A Wyoming command-line client for any Wyoming TTS server (ours, wyoming-piper, ...).

    python -m wyoming_qwen3tts client --uri tcp://HOST:10200 describe
    python -m wyoming_qwen3tts client --uri tcp://HOST:10200 say "Hello." --out hello.wav
    llm-command | python -m wyoming_qwen3tts client say --stream --play -

Imports nothing heavy (no torch): only the ``wyoming`` package and the standard library.

Modules: ``cli`` (flags, exit codes, main), ``session`` (the protocol exchange and its timings),
``textsource`` (text fragments from arguments or incrementally from stdin), ``output`` (WAV file, WAV on
stdout, player pipe), ``report`` (describe listing, timing block, JSON).
"""

from .cli import main

__all__ = ["main"]
