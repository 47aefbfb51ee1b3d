"""How long the server's per-describe re-read of the voice library takes, by library size.

    python bench/library_listing.py [--voices 10 100 500]

The server lists the library on every `describe` (so new voices appear without a restart); this measures
that listing (meta.json reads and validation) on real files in a temp dir.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from wyoming_qwen3tts.voices.library import VoiceLibrary  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    sr = 24000
    t = np.arange(sr * 3) / sr
    wave = (0.3 * np.sin(2 * np.pi * 170 * t)).astype(np.float32)
    print("| voices | list() ms |")
    print("|---|---|")
    for count in args.voices:
        with tempfile.TemporaryDirectory() as tmp:
            library = VoiceLibrary(Path(tmp))
            for i in range(count):
                library.add_clone(f"v{i}", (wave, sr), "hello there this is a test", mode="icl")
            library.list()  # warm the OS cache, as a running server has it
            started = time.perf_counter()
            for _ in range(args.rounds):
                assert len(library.list()) == count
            print(f"| {count} | {(time.perf_counter() - started) / args.rounds * 1000:.1f} |")


if __name__ == "__main__":
    main()
