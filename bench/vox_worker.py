"""vox-tts side of bench/bench_cpu.py (issue 14): runs in vox's own environment, one JSON line per command.

    /work/voxvenv/bin/python bench/vox_worker.py --tmod X.tmod --frames 30 --threads 2

Set up (vox-tts from the package index, its converter builds the .tmod from the same checkpoint directory):

    python3 -m venv /work/voxvenv && /work/voxvenv/bin/pip install torch==2.13.0 vox-tts==0.19.5
    /work/voxvenv/bin/python -m vox build --model bench/checkpoints/cv-0.6b --dtype bf16 --quant q8 \\
        --no-hash -o bench/checkpoints/vox/cv-0.6b.q8.tmod

Commands: ``run`` (one request of exactly --frames frames: vox's `max_frames` with the same text, speaker and
language as ours; random weights rarely pick EOS, and the frame count is checked), ``short`` (time to first
audio of a short sentence), ``quit``. Stage times come from vox's own `stats()`. Imports nothing of ours.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

TEXT = "Hello world, this is a benchmark of the speech engine on this machine."
SHORT_TEXT = "Turn on the light."
SAMPLES_PER_FRAME = 1920


def rss_mb() -> tuple[float, float]:
    values = {"VmRSS:": 0.0, "VmHWM:": 0.0}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            key = line.split(None, 1)[0] if line.strip() else ""
            if key in values:
                values[key] = int(line.split()[1]) / 1024
    return values["VmRSS:"], values["VmHWM:"]


def stage_seconds(stats: dict) -> dict[str, float]:
    """vox's cumulative statistics, flattened ("backend.seconds.talker": seconds so far, ...)."""
    found: dict[str, float] = {}

    def walk(node, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else key)
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            found[path] = float(node)

    walk(stats, "")
    return found


def request(engine, voice, text: str, frames: int):
    start = time.perf_counter()
    stamps, sizes = [], []
    for chunk in engine.stream(text, voice, max_frames=frames, seed=1, language="english", top_k=1):
        stamps.append(time.perf_counter())
        sizes.append(len(chunk))
    return start, stamps, sizes


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tmod", required=True)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--speaker", default="aiden")
    args = p.parse_args()
    import vox

    t0 = time.perf_counter()
    engine = vox.Engine(args.tmod, device="cpu", threads=args.threads)
    voice = engine.speaker_voice(args.speaker)
    load_s = time.perf_counter() - t0
    request(engine, voice, TEXT, 3)  # warm-up
    current, peak = rss_mb()
    print(json.dumps({"load_s": load_s, "rss_after_load_mb": current, "peak_rss_load_mb": peak}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "run":
            before = stage_seconds(engine.stats())
            start, stamps, sizes = request(engine, voice, TEXT, args.frames)
            after = stage_seconds(engine.stats())
            samples = sum(sizes)
            made = samples // SAMPLES_PER_FRAME
            total = stamps[-1] - start
            seconds = {k.rsplit(".", 1)[1]: after[k] - before.get(k, 0.0) for k in after if ".seconds." in k}
            _, peak = rss_mb()
            later = (samples - sizes[0]) / SAMPLES_PER_FRAME  # frames after the first chunk
            out = {
                "frames": made,
                "frame_ms": 1000 * (stamps[-1] - stamps[0]) / later if later else float("nan"),
                "request_ms": 1000 * total / max(made, 1),
                "x_real_time": (samples / 24000) / total,
                "ttfa_ms": 1000 * (stamps[0] - start),
                "peak_rss_mb": peak,
            }
            # vox's own stage clocks (backend.seconds.*): per frame, and its prefill per request.
            for ours, theirs in (
                ("talker_ms", "talker"),
                ("predictor_ms", "predictor"),
                ("decoder_ms", "codec"),
            ):
                if theirs in seconds:
                    out[ours] = 1000 * seconds[theirs] / max(made, 1)
            if "talker" in seconds and "predictor" in seconds:
                out["lm_ms"] = out["talker_ms"] + out["predictor_ms"]
            if "prefill" in seconds:
                out["prefill_ms"] = 1000 * seconds["prefill"]
        elif cmd[0] == "short":
            start, stamps, _ = request(engine, voice, SHORT_TEXT, 2)
            out = {"ttfa_short_ms": 1000 * (stamps[0] - start)}
        else:
            out = {"error": f"unknown command {cmd[0]!r}"}
        print(json.dumps(out), flush=True)
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
