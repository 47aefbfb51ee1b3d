"""Does onnxruntime's fixed intra-op thread count cost time under contention (issue 24, the thread governor)?

    python -m bench.ort_threads --isa avx2 --layers 28 --pairs 9 --busy 0,3

The engine's onnxruntime sessions (engine/nbits.py) take their intra-op thread count at creation
(torch.get_num_threads(), 2 on the add-on's default) and cannot change it; the thread governor
(engine/threads.py) lowers only PyTorch's threads to 1 under sustained load. This builds the engine's own
8-bit MatMulNBits layers (nbits.NBitsLinear, blocks of BLOCK_8BIT, random weights) at the 0.6B talker's
shapes twice, once with 1 and once with 2 intra-op threads, and times a talker step (one `mm` per matrix,
batch 1) with each, interleaved A, B, A, B within this one process, quiet and beside `--busy` CPU-bound
processes (`yes > /dev/null`, started and ended by this script). Prints the median ms per step of each and
the median of the per-pair ratios, and the resident memory each set of sessions added.

    python -m bench.ort_threads --isa avx2 --model /work/ckpts/cv-0.6b --frames 12 --pairs 5 --busy 0,3

With `--model`: the same A/B through the whole engine (`quantize auto`, onnxruntime's 8-bit kernel): two
engines loaded side by side, their sessions made with 1 and with 2 intra-op threads, PyTorch at 1 thread in
both (what the governor sets under load); each run one greedy request of `--frames` frames (EOS suppressed),
alternating engines; ms per frame of the whole request (talker, predictor and decoder).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.isa import add_isa_argument, apply_isa, isa_report  # noqa: E402

SHAPES = ((4096, 1024), (1024, 2048), (6144, 1024), (1024, 3072))  # (N out, K in), as bench/kernels_4bit.py


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def build(layers: int, threads: int) -> tuple[list[Any], float]:
    """The engine's NBitsLinear layers for `layers` talker layers; the RSS they added (MB, after trim)."""
    import ctypes

    import torch
    from torch import nn

    from wyoming_qwen3tts.engine import nbits

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc_trim(0)
    before = rss_mb()
    gen = torch.Generator().manual_seed(threads)
    built = []
    for _ in range(layers):
        for n, k in SHAPES:
            linear = nn.Linear(k, n, bias=False)
            with torch.no_grad():
                linear.weight.copy_(torch.randn(n, k, generator=gen) * 0.02)
            built.append(nbits.NBitsLinear(linear, threads=threads, bits=8))
            del linear
    libc.malloc_trim(0)
    return built, rss_mb() - before


def step(layers: list[Any], xs: dict[int, Any]) -> None:
    for layer in layers:
        layer.mm(xs[layer.in_features])


def timed(layers: list[Any], xs: dict[int, Any], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step(layers, xs)
    return (time.perf_counter() - start) / steps * 1000


def busy_processes(count: int) -> list[subprocess.Popen[bytes]]:
    procs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(count)]
    time.sleep(1.0 if count else 0.0)
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.kill()
        proc.wait()


def report(label: str, a: list[float], b: list[float]) -> None:
    ratios = [y / x for x, y in zip(a, b)]
    print(
        f"{label}, median of {len(a)} pairs: 1 thread {statistics.median(a):.1f} (min {min(a):.1f}), "
        f"2 threads {statistics.median(b):.1f} (min {min(b):.1f}); 2-thread / 1-thread per pair: median "
        f"{statistics.median(ratios):.2f}x [{', '.join(f'{r:.2f}' for r in ratios)}]",
        flush=True,
    )


def ab_under_load(
    args: argparse.Namespace, one: Callable[[], float], two: Callable[[], float], label: str
) -> None:
    """For each --busy count: --pairs runs of each config, alternating which goes first, reported pair by
    pair (1 thread first, as `report` reads them)."""
    for busy in (int(b) for b in args.busy.split(",")):
        procs = busy_processes(busy)
        try:
            a: list[float] = []
            b: list[float] = []
            for i in range(args.pairs):
                order = ((one, a), (two, b)) if i % 2 == 0 else ((two, b), (one, a))
                for run, out in order:
                    out.append(run())
        finally:
            stop(procs)
        report(f"busy={busy}: {label}", a, b)


def engines_ab(args: argparse.Namespace) -> int:
    import torch

    from wyoming_qwen3tts.engine import Engine, RunawayGuard, SamplingParams, SpeechRequest, nbits

    torch.set_num_threads(1)  # PyTorch as the governor leaves it under load
    made = nbits.session_of
    engines = []
    for threads in (1, 2):
        nbits.session_of = lambda graph, _, external=None, t=threads: made(graph, t, external)  # type: ignore
        engine = Engine.load(args.model, device="cpu", slots=1, guard=RunawayGuard(enabled=False))
        engine.runner.sampler.suppress[engine.runner.eos] = True
        engines.append(engine)
    nbits.session_of = made
    print(f"Compute plan: {engines[0].plan.describe()}", flush=True)
    text = "Hello world, this is a benchmark of the speech engine on this machine."

    def run(engine: Any) -> float:
        request = SpeechRequest(
            text, speaker=engine.speakers[0], sampling=SamplingParams.greedy(max_new_tokens=args.frames)
        )
        start = time.perf_counter()
        result = engine.synthesize(request)
        return (time.perf_counter() - start) / len(result.codes) * 1000

    for engine in engines:
        run(engine)  # warm-up
    label = f"ms per frame (whole request, {args.frames} frames)"
    ab_under_load(args, lambda: run(engines[0]), lambda: run(engines[1]), label)
    for engine in engines:
        engine.close()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=28)
    p.add_argument("--pairs", type=int, default=9)
    p.add_argument("--steps", type=int, default=5, help="talker steps per timed run")
    p.add_argument("--busy", default="0,3", help="comma-separated counts of CPU-bound processes beside it")
    p.add_argument("--model", help="a checkpoint: A/B through the whole engine instead of the kernels")
    p.add_argument("--frames", type=int, default=12)
    add_isa_argument(p)
    args = p.parse_args()
    apply_isa(args.isa)
    if args.model:
        return engines_ab(args)
    import torch

    torch.set_num_threads(2)
    print(isa_report(args.isa), file=sys.stderr)
    from wyoming_qwen3tts.engine import nbits

    nbits.kernel_ok(8)  # onnxruntime loaded and one session made before the RSS is counted
    one, rss_one = build(args.layers, 1)
    two, rss_two = build(args.layers, 2)
    print(f"RSS added: 1-thread sessions {rss_one:.0f} MB, 2-thread sessions {rss_two:.0f} MB")
    xs = {k: torch.randn(1, k) for _, k in SHAPES}
    with torch.inference_mode():
        for layers in (one, two):
            step(layers, xs)  # first runs: workspaces
        ab_under_load(
            args,
            lambda: timed(one, xs, args.steps),
            lambda: timed(two, xs, args.steps),
            f"ms per talker step ({args.layers} layers)",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
