"""Where loading spends its time and memory: seconds and RSS (current, peak) after each loading phase.

    python -m bench.load_phases --model bench/checkpoints/cv-0.6b --isa avx2 [--quantize auto] [--threads 2]

Wraps the loader's phase functions (state dict, load_into, prepare_talker, release_file_pages, tokenizer,
trim_heap) and prints one line after each, then the total (issue 24: load time and peak RSS).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.isa import add_isa_argument, apply_isa, isa_report  # noqa: E402

PHASES = (
    "load_state_dict",
    "load_into",
    "prepare_talker",
    "release_file_pages",
    "TextTokenizer",
    "trim_heap",
)


def rss_mb() -> str:
    values = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1]) // 1024
    return f"RSS {values.get('VmRSS', 0)} MB, peak {values.get('VmHWM', 0)} MB"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--quantize", default="auto")
    p.add_argument("--threads", type=int, default=2)
    add_isa_argument(p)
    args = p.parse_args()
    apply_isa(args.isa)
    from wyoming_qwen3tts.platform_env import apply_cpu_env

    apply_cpu_env()
    import torch

    from wyoming_qwen3tts.engine import Engine, RunawayGuard, loading
    from wyoming_qwen3tts.engine.options import LoadOptions

    torch.set_num_threads(args.threads)
    print(isa_report(args.isa), file=sys.stderr)
    start = time.perf_counter()
    print(f"start: {rss_mb()}")

    def wrap(name: str) -> None:
        inner = getattr(loading, name)

        @functools.wraps(inner)
        def timed(*a, **k):
            out = inner(*a, **k)
            print(f"{time.perf_counter() - start:6.1f} s after {name}: {rss_mb()}", flush=True)
            return out

        setattr(loading, name, timed)

    for name in PHASES:
        wrap(name)
    options = LoadOptions.of(
        device="cpu", dtype=args.dtype, slots=1, guard=RunawayGuard(enabled=False), quantize=args.quantize
    )
    engine = loading._load(Engine, args.model, options)  # on this thread: the phases print in order
    print(f"loaded in {time.perf_counter() - start:.1f} s: {rss_mb()}")
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
