"""Our side of bench/bench_cpu.py: one engine in one process, driven line by line over stdin/stdout.

    python -m bench.cpu_worker --model DIR --dtype bfloat16 --quantize int8 --frames 30 --threads 2

Prints one JSON line when loaded, then answers each command line with one JSON line:
``run`` (one request of exactly --frames frames, EOS masked, with per-component timers),
``short`` (time to first audio of a short sentence), ``bandwidth`` (this machine's int8 GEMV bandwidth,
bench/gemv.py), ``quality N`` (teacher-forced error against an
unquantized engine of the same dtype, N frames) and ``quit``. Everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.gemv import streamed_bytes  # noqa: E402  (imports torch lazily)
from bench.isa import add_isa_argument, apply_isa, isa_report  # noqa: E402
from wyoming_qwen3tts.platform_env import apply_cpu_env  # noqa: E402  (before torch, as the server does)

apply_cpu_env()

NBITS_BLOCK_ENV = "BENCH_NBITS_BLOCK"
ORT_ARENA_ENV = "BENCH_ORT_ARENA"
TEXT = "Hello world, this is a benchmark of the speech engine on this machine."
SHORT_TEXT = "Turn on the light."


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MB.

    The peak is VmHWM, the high-water mark of this process's own memory map. Not ru_maxrss: Linux carries
    it over fork and exec, so a worker started by a large parent reports the parent's peak."""
    values = {"VmRSS:": 0.0, "VmHWM:": 0.0}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key = line.split(None, 1)[0] if line.strip() else ""
            if key in values:
                values[key] = int(line.split()[1]) / 1024
    return values["VmRSS:"], values["VmHWM:"]


class Timers:
    """Wall time of every call of a wrapped method (the engine runs them on its own thread)."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[float, int]]] = defaultdict(list)

    def wrap(self, obj: Any, attr: str, key: str, frames: Callable[..., int] = lambda *a, **k: 1) -> None:
        inner = getattr(obj, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = inner(*args, **kwargs)
            self.calls[key].append((time.perf_counter() - start, frames(*args, **kwargs)))
            return out

        setattr(obj, attr, timed)

    def reset(self) -> None:
        self.calls.clear()

    def median_ms(self, key: str, skip: int = 0) -> float:
        values = [1000 * t / max(n, 1) for t, n in self.calls.get(key, [])[skip:]]
        return statistics.median(values) if values else float("nan")


def ort_arena_experiment() -> None:
    """``BENCH_ORT_ARENA=1``: onnxruntime sessions with their per-session memory arena, as before issue 24's
    memory round 3 (A/B of memory and speed; the engine turns it off)."""
    if os.environ.get(ORT_ARENA_ENV) != "1":
        return
    import onnxruntime as ort

    class WithArena(ort.SessionOptions):
        def __setattr__(self, name: str, value: Any) -> None:
            super().__setattr__(name, True if name == "enable_cpu_mem_arena" else value)

    ort.SessionOptions = WithArena  # type: ignore[misc]


def gemv_in_child() -> float:
    """bench/gemv.py's int8 GEMV bandwidth, measured in a child process with this one's environment: its
    250 MB of matrices would otherwise raise this worker's peak RSS (VmHWM) by as much."""
    code = "from bench.gemv import int8_gemv_gbps; print(int8_gemv_gbps())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    return float(out.stdout.split()[-1])


def load(args: argparse.Namespace, quantize: str):
    from wyoming_qwen3tts.engine import Engine, RunawayGuard, nbits, quant

    ort_arena_experiment()

    if os.environ.get(NBITS_BLOCK_ENV):  # bench/ab_cpu.py: another block size for 8-bit MatMulNBits
        nbits.BLOCK_8BIT = quant.BLOCK_8BIT = int(os.environ[NBITS_BLOCK_ENV])  # type: ignore[misc]
    engine = Engine.load(
        args.model,
        device="cpu",
        dtype=args.dtype,
        slots=1,
        guard=RunawayGuard(enabled=False),
        quantize=quantize,
        adaptive_threads=True,  # as the server runs it
    )
    # Fixed length: EOS can never be picked (random weights would end at arbitrary points otherwise).
    engine.runner.sampler.suppress[engine.runner.eos] = True
    return engine


def voice_for(engine) -> dict:
    if engine.model_type != "base":
        return {"speaker": sorted(engine.speakers)[0]}  # the reference worker picks the same one
    # x-vector clone of 2 s of noise: the same prompt shape the reference gets (bench_cpu_reference).
    clip = np.random.default_rng(0).normal(0, 0.1, 48000).astype(np.float32)
    return {"voice": engine.create_voice_prompt((clip, 24000), x_vector_only=True)}


def request(engine, text: str, frames: int, voice: dict):
    from wyoming_qwen3tts.engine import ChunkPolicy, SamplingParams, SpeechRequest

    req = SpeechRequest(
        text,
        language="english",
        sampling=SamplingParams.greedy(max_new_tokens=frames + 1),
        chunk_policy=ChunkPolicy(1, 4),
        **voice,
    )
    start = time.perf_counter()
    stamps, samples = [], 0
    stream = engine.submit(req, keep=True)
    for chunk in stream:
        stamps.append(time.perf_counter())
        samples += len(chunk.samples)
    result = stream.result()
    return start, stamps, samples, len(result.codes)


def run(engine, timers: Timers, args: argparse.Namespace, voice: dict) -> dict:
    timers.reset()
    start, stamps, samples, made = request(engine, TEXT, args.frames, voice)
    total = stamps[-1] - start
    talker = timers.median_ms("talker")
    predictor = timers.median_ms("predictor")
    decoder = timers.median_ms("decoder", skip=1)  # steady 4-frame chunks (the first chunk has 1 frame)
    current, peak = rss_mb()
    return {
        "frames": made,
        "talker_ms": talker,
        "predictor_ms": predictor,
        "lm_ms": talker + predictor,
        "decoder_ms": decoder,
        "decoder_first_ms": 1000 * timers.calls["decoder"][0][0] if timers.calls["decoder"] else float("nan"),
        "frame_ms": 1000 * (stamps[-1] - stamps[0]) / max(made - 1, 1),
        "request_ms": 1000 * total / max(made, 1),
        "x_real_time": (samples / 24000) / total,
        "ttfa_ms": 1000 * (stamps[0] - start),
        "prefill_ms": timers.median_ms("prefill"),
        "total_s": total,
        "rss_mb": current,
        "peak_rss_mb": peak,
    }


def short(engine, voice: dict) -> dict:
    start, stamps, _, _ = request(engine, SHORT_TEXT, 2, voice)
    return {"ttfa_short_ms": 1000 * (stamps[0] - start)}


def quality(engine, args: argparse.Namespace, frames: int) -> dict:
    from wyoming_qwen3tts.diagnostics.quant_check import measure

    if engine.model_type == "base":
        return {"error": "quality figures use CustomVoice prompts"}
    reference = load(args, "none")
    try:
        return measure(reference, engine, TEXT, engine.speakers[0], frames).as_dict()
    finally:
        reference.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--quantize", default="none")
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    add_isa_argument(p)
    args = p.parse_args()
    apply_isa(args.isa)  # normally set by bench_cpu already (the worker's environment)
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    engine = load(args, args.quantize)
    load_s = time.perf_counter() - t0
    timers = Timers()
    timers.wrap(engine.runner, "talker_step", "talker")  # the 28-layer step (traced on CPU)
    timers.wrap(engine.talker.model, "prefill", "prefill")
    timers.wrap(engine.talker.code_predictor, "generate", "predictor")
    timers.wrap(engine.decoder, "step", "decoder", frames=lambda codes, *a, **k: int(codes.shape[-1]))
    voice = voice_for(engine)
    request(engine, TEXT, 3, voice)  # warm-up
    current, peak = rss_mb()
    ready = {"load_s": load_s, "rss_after_load_mb": current, "peak_rss_load_mb": peak}
    print(json.dumps({**ready, **streamed_bytes(engine), "isa": isa_report(args.isa)}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "run":
            out = run(engine, timers, args, voice)
        elif cmd[0] == "short":
            out = short(engine, voice)
        elif cmd[0] == "bandwidth":
            out = {"gemv_gbps": gemv_in_child()}
        elif cmd[0] == "quality":
            out = quality(engine, args, int(cmd[1]) if len(cmd) > 1 else 100)
        else:
            out = {"error": f"unknown command {cmd[0]!r}"}
        print(json.dumps(out), flush=True)
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
