"""Two or more engine configurations side by side, runs interleaved, ratios pair by pair (issue 24).

    python -m bench.ab_cpu --model DIR --isa avx2 --threads 2 --frames 30 --runs 5 --quality 50 \
        fbgemm:WYOMING_QWEN3TTS_INT8_KERNEL=dynamic ort8:WYOMING_QWEN3TTS_INT8_KERNEL=onnxruntime

Each configuration is ``NAME[:VAR=VALUE[,VAR=VALUE...]]``: one bench/cpu_worker.py process (dtype and
quantize `auto`, as the server runs) with those variables in its environment. All workers are loaded first,
then asked for a run in turn (A, B, A, B, ...), so every pair sees the same machine state: on a shared
machine only the ratios to the first configuration (median of the per-pair ratios) mean much. With
--quality N each worker also reports its teacher-forced error against the unquantized engine (N frames).
"""

from __future__ import annotations

import argparse
import statistics
import sys

from bench.bench_cpu import COLUMNS, Worker, add_bandwidth, median
from bench.isa import add_isa_argument, isa_env

KEYS = ("talker_ms", "predictor_ms", "lm_ms", "decoder_ms", "request_ms", "lm_floor_pct", "peak_rss_mb")
QUALITY = ("hidden_cos_min", "logits_cos_mean", "top1_all", "kl_all_mean", "kl_all_max")


def parse(spec: str) -> tuple[str, dict[str, str]]:
    name, _, assignments = spec.partition(":")
    env = dict(a.split("=", 1) for a in assignments.split(",") if a)
    return name, env


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quality", type=int, default=0, help="teacher-forced error figures over N frames")
    p.add_argument("config", nargs="+")
    add_isa_argument(p)
    args = p.parse_args()
    workers: list[tuple[str, Worker, float]] = []
    for spec in args.config:
        name, extra = parse(spec)
        cmd = [sys.executable, "-m", "bench.cpu_worker", "--model", args.model, "--dtype", "auto"]
        cmd += ["--quantize", "auto", "--frames", str(args.frames), "--threads", str(args.threads)]
        worker = Worker(cmd + ["--isa", args.isa], env={**isa_env(args.isa), **extra})
        gemv = worker.ask("bandwidth")["gemv_gbps"]
        print(
            f"{name}: {worker.ready['isa']}; load {worker.ready['load_s']:.1f} s", file=sys.stderr, flush=True
        )
        workers.append((name, worker, gemv))
    rows: dict[str, list[dict]] = {name: [] for name, _, _ in workers}
    try:
        for _ in range(args.runs):
            for name, worker, gemv in workers:
                row = worker.ask("run")
                add_bandwidth(row, worker.ready, gemv)
                rows[name].append(row)
        quality = {name: worker.ask(f"quality {args.quality}") for name, worker, _ in workers if args.quality}
    finally:
        for _, worker, _ in workers:
            worker.close()
    heads = {key: head for key, head, _ in COLUMNS}
    heads["peak_rss_mb"] = "peak RSS MB"
    print("| config | load s | " + " | ".join(heads[k] for k in KEYS) + " |")
    print("|" + "---|" * (len(KEYS) + 2))
    base = workers[0][0]
    for name, worker, _ in workers:
        cells = [f"{median(rows[name], k):.1f}" for k in KEYS]
        print(f"| {name} | {worker.ready['load_s']:.1f} | " + " | ".join(cells) + " |")
        if name != base:
            ratios = [
                f"{statistics.median(a[k] / b[k] for a, b in zip(rows[name], rows[base])):.2f}x" for k in KEYS
            ]
            print(f"| {name} / {base} | | " + " | ".join(ratios) + " |")
    if quality:
        print("\n| config | " + " | ".join(QUALITY) + " |")
        print("|" + "---|" * (len(QUALITY) + 1))
        for name, figures in quality.items():
            print(f"| {name} | " + " | ".join(f"{figures[k]:.4g}" for k in QUALITY) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
