"""Side-by-side speed of our engine and the reference qwen-tts 0.1.1 on the same checkpoint and machine.

    python -m bench.bench_engine --build bench/checkpoints/cv-0.6b --dtype float32,bfloat16 \
        --frames 30 --threads 2 --reference-python .venv-ref/bin/python

`--build DIR` makes a random full-size 0.6B CustomVoice checkpoint in the real layout (first run only).
Random weights never sample EOS, so both sides generate exactly --frames frames (greedy,
max_new_tokens = frames + 1, our runaway guard off). Prints one table row per engine and dtype:
ms per frame (talker + code predictor + streaming decode, steady state), x real time (audio seconds per
wall second, whole request), time to first audio, and the ratio reference / ours.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.isa import add_isa_argument, apply_isa, isa_env, isa_report

HERE = Path(__file__).resolve().parent
TEXT = "Hello world, this is a benchmark of the speech engine on this machine."


def bench_ours(model: str, dtype: str, frames: int, threads: int, policy: tuple[int, int]) -> dict:
    import torch

    from wyoming_qwen3tts.engine import ChunkPolicy, Engine, RunawayGuard, SamplingParams, SpeechRequest

    torch.set_num_threads(threads)
    t0 = time.monotonic()
    engine = Engine.load(
        model, device="cpu", dtype=dtype, slots=1, guard=RunawayGuard(enabled=False), quantize="none"
    )
    load = time.monotonic() - t0
    request = SpeechRequest(
        TEXT,
        speaker="ryan",
        language="english",
        sampling=SamplingParams.greedy(max_new_tokens=frames + 1),
        chunk_policy=ChunkPolicy(*policy),
    )
    try:
        engine.synthesize(
            SpeechRequest(TEXT, speaker="ryan", sampling=SamplingParams.greedy(max_new_tokens=3))
        )
        start = time.monotonic()
        stamps = []
        samples = 0
        stream = engine.submit(request, keep=True)
        for chunk in stream:
            stamps.append(time.monotonic())
            samples += len(chunk.samples)
        result = stream.result()
    finally:
        engine.close()
    total = time.monotonic() - start
    made = len(result.codes)
    steady = (stamps[-1] - stamps[0]) / max(made - policy[0], 1)
    return {
        "engine": "ours",
        "dtype": dtype,
        "frames": made,
        "load_s": load,
        "ms_per_frame": 1000 * steady,
        "x_real_time": (samples / 24000) / total,
        "ttfa_s": stamps[0] - start,
        "total_s": total,
    }


def bench_reference(python: str, model: str, dtype: str, frames: int, threads: int) -> dict:
    cmd = [python, str(HERE / "reference_bench.py"), model, dtype, str(frames), str(threads), TEXT]
    out = subprocess.run(
        cmd, check=True, capture_output=True, text=True, env={**isa_env("native"), "PYTHONPATH": ""}
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="existing checkpoint directory")
    p.add_argument("--build", help="build a random 0.6B CustomVoice checkpoint here if missing, then use it")
    p.add_argument("--dtype", default="float32,bfloat16")
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--first-chunk", type=int, default=1)
    p.add_argument("--chunk", type=int, default=4)
    p.add_argument(
        "--reference-python", help="python of the qwen-tts 0.1.1 environment (script/reference-env)"
    )
    p.add_argument("--json", help="append the rows as JSON lines to this file")
    add_isa_argument(p)
    args = p.parse_args()
    apply_isa(args.isa)  # before torch loads (bench_ours imports it); the reference inherits the limits
    print(isa_report(args.isa), file=sys.stderr)
    model = args.model
    if args.build:
        model = args.build
        if not (Path(model) / "config.json").exists():
            sys.path.insert(0, str(HERE.parent))
            from tests.fixtures.checkpoint_builder import build_checkpoint

            print(f"building random 0.6B CustomVoice checkpoint in {model} ...", file=sys.stderr)
            build_checkpoint(model, "custom_voice", preset="0.6b", seed=0, dtype="bfloat16")
    if not model:
        p.error("--model or --build is required")
    rows = []
    for dtype in args.dtype.split(","):
        rows.append(bench_ours(model, dtype, args.frames, args.threads, (args.first_chunk, args.chunk)))
        if args.reference_python:
            rows.append(bench_reference(args.reference_python, model, dtype, args.frames, args.threads))
    print(f"{'engine':10} {'dtype':9} {'frames':>6} {'ms/frame':>9} {'x RT':>6} {'TTFA s':>7} {'total s':>8}")
    for r in rows:
        print(
            f"{r['engine']:10} {r['dtype']:9} {r['frames']:6d} {r['ms_per_frame']:9.1f} "
            f"{r['x_real_time']:6.3f} "
            f"{r['ttfa_s']:7.2f} {r['total_s']:8.2f}"
        )
    for dtype in args.dtype.split(","):
        pair = {r["engine"]: r for r in rows if r["dtype"] == dtype}
        if "reference" in pair:
            ratio = pair["reference"]["ms_per_frame"] / pair["ours"]["ms_per_frame"]
            ttfa = pair["reference"]["ttfa_s"] / pair["ours"]["ttfa_s"]
            print(
                f"{dtype}: ours is {ratio:.2f}x the reference per frame, "
                f"time to first audio {ttfa:.1f}x lower"
            )
    if args.json:
        with open(args.json, "a", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
