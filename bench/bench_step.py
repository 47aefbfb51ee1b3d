"""CPU milliseconds per frame of the engine's batched decode step alone (talker + code predictor +
sampling; no codec decode), and the host synchronisations per step.

    python -m bench.bench_step MODEL [--rows 2] [--frames 40] [--dtype float32] [--threads 2]

Runs `rows` sampled requests (the model's default sampling: top-k 50, temperature 0.9, repetition penalty
1.05, code predictor sampled; seeded) in one batch, the runaway guard off, and times every
`runner.decode_step` after the first two. Works on the engine before and after issue 16 (run it with
PYTHONPATH at each checkout, one after the other, for a before/after ratio on the same machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

from bench.isa import add_isa_argument, apply_isa, isa_report

SYNCS = ("item", "cpu", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--label", default="")
    add_isa_argument(parser)
    args = parser.parse_args()
    apply_isa(args.isa)
    print(isa_report(args.isa), file=sys.stderr)

    import torch

    import wyoming_qwen3tts
    from wyoming_qwen3tts.engine import Engine, RunawayGuard, SamplingParams, SpeechRequest

    torch.set_num_threads(args.threads)
    engine = Engine.load(
        args.model,
        device="cpu",
        dtype=args.dtype,
        slots=args.rows,
        guard=RunawayGuard(enabled=False),
        quantize="none",
    )
    runner = engine.runner
    real = runner.decode_step
    times: list[float] = []
    syncs: list[int] = []
    counting = {"on": None, "n": 0}

    def counted(name):
        method = getattr(torch.Tensor, name)

        def wrapper(*a, **k):
            if counting["on"] is threading.current_thread():
                counting["n"] += 1
            return method(*a, **k)

        return wrapper

    for name in SYNCS:
        setattr(torch.Tensor, name, counted(name))

    def step(batch, on_frames=None):
        rows = len(batch.seqs)
        counting["n"] = 0
        counting["on"] = threading.current_thread()
        start = time.perf_counter()
        outside = {"s": 0.0}

        def first_chunks(frames):  # the scheduler's first-chunk decoding: not the step's time or reads
            counting["on"] = None
            began = time.perf_counter()
            try:
                on_frames(frames)
            finally:
                outside["s"] += time.perf_counter() - began
                counting["on"] = threading.current_thread()

        try:
            return real(batch, first_chunks if on_frames is not None else None)
        finally:
            elapsed = time.perf_counter() - start - outside["s"]
            counting["on"] = None
            if rows == args.rows:
                times.append(elapsed)
                syncs.append(counting["n"])

    runner.decode_step = step
    speakers = engine.speakers

    def batch(frames: int) -> None:
        streams = [
            engine.submit(
                SpeechRequest(
                    "Hello world, this is a benchmark of the speech engine on this machine.",
                    speaker=speakers[i % len(speakers)],
                    language="english",
                    sampling=SamplingParams(seed=i, max_new_tokens=frames + 1),
                )
            )
            for i in range(args.rows)
        ]
        for stream in streams:
            for _ in stream:
                pass

    try:
        batch(4)  # warm-up: traces, caches
        times.clear()
        syncs.clear()
        batch(args.frames)
    finally:
        engine.close()
    steady = times[2:]
    ms = statistics.median(steady) * 1000
    print(
        json.dumps(
            {
                "label": args.label,
                "package": wyoming_qwen3tts.__file__,
                "rows": args.rows,
                "steps": len(steady),
                "ms_per_step": round(ms, 2),
                "min_ms_per_step": round(min(steady) * 1000, 2),
                "ms_per_frame": round(ms / args.rows, 2),
                "host_syncs_per_step": statistics.median(syncs[2:]),
            }
        )
    )


if __name__ == "__main__":
    main()
