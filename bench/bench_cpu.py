"""CPU benchmark of our engine against qwen-tts 0.1.1 on the same random full-size checkpoint (issue 6).

    python -m bench.bench_cpu --preset 0.6b --type custom_voice --modes fp32,bf16,int8,int4 --frames 30 \
        --runs 3 --reference-python /work/refvenv/bin/python --quality 100 --append bench/RESULTS.md

Builds the checkpoint under bench/checkpoints/ on first use (real layout, random weights). For every mode
one process holds our engine (bench/cpu_worker.py) and one holds the reference in its own environment
(bench/reference_bench.py --worker, fp32 for fp32, bf16 for the others: the reference has no quantized
modes); the two are asked for a run in turn, so each pair sees the same machine state, and ratios are
taken pair by pair (median). Generation length is fixed (EOS masked, greedy). Reported per mode (medians):
talker step, code predictor per frame, LM (talker + predictor) per frame, decoder per frame (ours: streaming
4-frame chunks; reference: its whole-utterance decode), end-to-end ms per frame, x real time, time to first
audio (ours: first streamed chunk; reference: whole request), the same for a short sentence, prefill, peak
RSS; with --quality N, the teacher-forced error of each quantized mode against bf16
(diagnostics/quant_check.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from bench.isa import AVX2_ENV, add_isa_argument, cpu_flags, isa_env

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TEXT = "Hello world, this is a benchmark of the speech engine on this machine."
MODES = {
    "auto": ("auto", "auto"),  # the default: what engine/policy.py picks for this CPU
    "fp32": ("float32", "none"),
    "bf16": ("bfloat16", "none"),
    "int8": ("auto", "int8"),
    "int4": ("auto", "int4"),
}
ISA_NOTE = (
    "ours and the reference limited to AVX2 ("
    + " ".join(f"{k}={v}" for k, v in AVX2_ENV.items())
    + ", fbgemm "
    "included); vox-tts picks its own kernels and cannot be limited (a conservative comparison)"
)
KINDS = {"custom_voice": "cv", "base": "base"}
COLUMNS = [  # key, header, format
    ("talker_ms", "talker step ms", "{:.1f}"),
    ("predictor_ms", "predictor ms/frame", "{:.1f}"),
    ("lm_ms", "LM ms/frame", "{:.1f}"),
    ("decoder_ms", "decoder ms/frame", "{:.1f}"),
    ("request_ms", "ms/frame (request)", "{:.1f}"),
    ("frame_ms", "ms/frame (steady)", "{:.1f}"),
    ("x_real_time", "x real time", "{:.3f}"),
    ("ttfa_ms", "TTFA ms", "{:.0f}"),
    ("ttfa_short_ms", "TTFA short ms", "{:.0f}"),
    ("prefill_ms", "prefill ms", "{:.0f}"),
    ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
    ("load_s", "load s", "{:.1f}"),
    ("talker_gbps", "talker GB/s", "{:.1f}"),
    ("predictor_gbps", "predictor GB/s", "{:.1f}"),
    ("lm_floor_pct", "LM % of int8 GEMV floor", "{:.0f}"),
]


class Worker:
    """A benchmark process answering one JSON line per command line."""

    def __init__(self, cmd: list[str], env: Optional[dict] = None) -> None:
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env, bufsize=1
        )
        self.ready = self._read()

    def _read(self) -> dict:
        while True:  # the reference package prints banners on stdout: skip anything that is not JSON
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"benchmark worker {self.proc.args!r} died (exit {self.proc.wait()})")
            if line.startswith("{"):
                return json.loads(line)

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=120)


def machine() -> str:
    """The machine in one line: CPU model, cores, memory, versions, and the ISA flags that decide our
    kernels (and the peers'), as the engine's own CPU detection reads them."""
    import torch

    from wyoming_qwen3tts.engine.cpu import cpu_info

    cpu = cpu_info()
    flags = cpu_flags()
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024**2
    return (
        f"{cpu.model}, {os.cpu_count()} cores, {mem:.0f} GB RAM, Python {platform.python_version()}, "
        f"torch {torch.__version__}; CPU flags: {' '.join(flags) or 'none known'}"
    )


def start_busy(count: int) -> list[subprocess.Popen]:
    """`count` CPU-bound processes (other add-ons busy on the host); they stop when the benchmark does."""
    loop = "import time\nend = time.monotonic() + 7200\nwhile time.monotonic() < end: pass"
    return [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(count)]


def checkpoint(kind: str, preset: str, explicit: Optional[str]) -> Path:
    if explicit:
        return Path(explicit)
    path = HERE / "checkpoints" / f"{KINDS[kind]}-{preset}"
    if not (path / "config.json").exists():
        sys.path.insert(0, str(ROOT))
        from tests.fixtures.checkpoint_builder import build_checkpoint

        print(f"building random {preset} {kind} checkpoint in {path} ...", file=sys.stderr)
        build_checkpoint(path, kind, preset=preset, seed=0, dtype="bfloat16")
    return path


def median(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if key in r and r[key] == r[key]]
    return statistics.median(values) if values else float("nan")


def fmt(value: float, pattern: str) -> str:
    return "–" if value != value else pattern.format(value)


def reference_dtype(dtype: str, isa: str) -> str:
    """The reference runs our dtype; for `auto`, fp32 unless this CPU computes bf16 natively."""
    if dtype in ("float32", "bfloat16"):
        return dtype
    env = isa_env(isa)
    code = "from wyoming_qwen3tts.engine.cpu import cpu_info; print(cpu_info().native_bf16)"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    return "bfloat16" if out.stdout.strip() == "True" else "float32"


def vox_worker(tmod: str, args) -> Worker:
    cmd = [args.vox_python, str(HERE / "vox_worker.py"), "--tmod", tmod, "--frames", str(args.frames)]
    cmd += ["--threads", str(args.threads)]
    return Worker(cmd, env={**os.environ, "PYTHONPATH": ""})


def bench_vox(tmod: str, args) -> dict:
    vox = vox_worker(tmod, args)
    runs = [vox.ask("run") for _ in range(args.runs)]
    shorts = [vox.ask("short") for _ in range(args.runs)]
    for row in runs:
        row["ttfa_short_ms"] = median(shorts, "ttfa_short_ms")
        row["load_s"] = vox.ready["load_s"]
    vox.close()
    return {
        "mode": f"vox {Path(tmod).name}",
        "dtype": "-",
        "quantize": "-",
        "ours": runs,
        "ref": [],
        "quality": None,
    }


def bench_mode(name: str, args, model: Path, refs: dict[str, Worker], pair: Optional[Worker] = None) -> dict:
    dtype, quantize = MODES[name] if name in MODES else name.split(":")
    cmd = [sys.executable, "-m", "bench.cpu_worker", "--model", str(model), "--dtype", dtype]
    cmd += ["--quantize", quantize, "--frames", str(args.frames), "--threads", str(args.threads)]
    cmd += ["--isa", args.isa]
    ours = Worker(cmd, env=isa_env(args.isa))
    print(ours.ready["isa"], file=sys.stderr, flush=True)
    gemv = ours.ask("bandwidth")["gemv_gbps"]
    ref_dtype = reference_dtype(dtype, args.isa)
    if args.reference_python and ref_dtype not in refs:
        ref_cmd = [args.reference_python, str(HERE / "reference_bench.py"), "--worker", str(model), ref_dtype]
        ref_cmd += [str(args.frames), str(args.threads), TEXT]
        refs[ref_dtype] = Worker(ref_cmd, env={**isa_env(args.isa), "PYTHONPATH": ""})
    ref = pair or refs.get(ref_dtype)  # --vox-pairs: vox answers a run after each of ours
    mine, theirs = [], []
    for _ in range(args.runs):
        mine.append(ours.ask("run"))
        if ref is not None:
            theirs.append(ref.ask("run"))
    shorts = [ours.ask("short") for _ in range(args.runs)]
    their_shorts = [pair.ask("short") for _ in range(args.runs)] if pair is not None else []
    for row in mine:
        row["ttfa_short_ms"] = median(shorts, "ttfa_short_ms")
        row["load_s"] = ours.ready["load_s"]
        add_bandwidth(row, ours.ready, gemv)
    for row in theirs if pair is not None else []:
        row["ttfa_short_ms"] = median(their_shorts, "ttfa_short_ms")
        row["load_s"] = pair.ready["load_s"]
    quality = ours.ask(f"quality {args.quality}") if args.quality and quantize != "none" else None
    ours.close()
    return {
        "mode": name,
        "dtype": dtype,
        "quantize": quantize,
        "ours": mine,
        "ref": theirs,
        "ref_dtype": "vox-tts q8, interleaved" if pair is not None else ref_dtype,
        "quality": quality,
        "gemv_gbps": gemv,
        "isa": ours.ready["isa"],
    }


def add_bandwidth(row: dict, ready: dict, gemv_gbps: float) -> None:
    """GB/s each LM component streamed, and the LM's time at the machine's int8 GEMV bandwidth (the floor
    if every byte moved at that speed) as a percentage of its measured time: 100 = at the floor."""
    talker_b, predictor_b = ready["talker_bytes"], ready["predictor_bytes"]
    row["talker_gbps"] = talker_b / row["talker_ms"] / 1e6
    row["predictor_gbps"] = predictor_b / row["predictor_ms"] / 1e6
    floor_ms = (talker_b + predictor_b) / gemv_gbps / 1e6
    row["lm_floor_ms"] = floor_ms
    row["lm_floor_pct"] = 100 * floor_ms / row["lm_ms"]


def ratio(result: dict, key: str) -> float:
    pairs = [(o[key], r[key]) for o, r in zip(result["ours"], result["ref"]) if key in r and r[key]]
    values = [a / b for a, b in pairs if a == a and b == b]
    return statistics.median(values) if values else float("nan")


def table(results: list[dict]) -> str:
    head = "| mode | engine | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for res in results:
        ours = [fmt(median(res["ours"], k), f) for k, _, f in COLUMNS]
        who = "vox-tts 0.19.5" if res["mode"].startswith("vox") else "ours"
        lines.append(f"| {res['mode']} | {who} | " + " | ".join(ours) + " |")
        if res["ref"]:
            theirs = [fmt(median(res["ref"], k), f) for k, _, f in COLUMNS]
            vox = res["ref_dtype"].startswith("vox")
            them = res["ref_dtype"] if vox else f"reference ({res['ref_dtype']})"
            lines.append(f"| {res['mode']} | {them} | " + " | ".join(theirs) + " |")
            ratios = [fmt(ratio(res, k), "{:.2f}x") for k, _, _ in COLUMNS]
            lines.append(
                f"| {res['mode']} | ours / {'vox' if vox else 'reference'} | " + " | ".join(ratios) + " |"
            )
    return "\n".join(lines)


def quality_table(results: list[dict]) -> str:
    rows = [r for r in results if r["quality"] and "error" not in r["quality"]]
    if not rows:
        return ""
    keys = [k for k in rows[0]["quality"] if k != "frames"]
    lines = ["| mode | frames | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 2)]
    for r in rows:
        q = r["quality"]
        lines.append(f"| {r['mode']} | {q['frames']} | " + " | ".join(f"{q[k]:.4g}" for k in keys) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="0.6b", choices=("0.6b", "1.7b"))
    p.add_argument("--type", default="custom_voice", choices=tuple(KINDS))
    p.add_argument(
        "--model", help="use this checkpoint directory instead of bench/checkpoints/<type>-<preset>"
    )
    p.add_argument("--modes", default="fp32,bf16,int8,int4", help="fp32, bf16, int8, int4 or DTYPE:QUANTIZE")
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--reference-python", help="python of the qwen-tts 0.1.1 environment (script/reference-env)"
    )
    p.add_argument("--quality", type=int, default=0, help="teacher-forced error figures over N frames")
    add_isa_argument(p)
    p.add_argument("--vox-python", help="python of a vox-tts 0.19.5 environment (see bench/vox_worker.py)")
    p.add_argument("--vox-tmod", action="append", default=[], help="a .tmod built by vox's converter")
    p.add_argument(
        "--vox-pairs",
        action="store_true",
        help="keep the first --vox-tmod loaded and ask it for a run after each of ours (ratios pair by pair, "
        "fair on a shared machine) instead of benchmarking vox on its own first",
    )
    p.add_argument("--busy", type=int, default=0, help="run N CPU-bound processes beside the benchmark")
    p.add_argument("--append", help="append the tables to this markdown file (e.g. bench/RESULTS.md)")
    p.add_argument("--json", help="write the raw results to this JSON file")
    args = p.parse_args()
    model = checkpoint(args.type, args.preset, args.model)
    from wyoming_qwen3tts.engine.threads import machine_busy_seconds

    started, busy0 = time.monotonic(), machine_busy_seconds()
    refs: dict[str, Worker] = {}
    results = []
    modes = [m for m in args.modes.split(",") if m]
    busy_procs = start_busy(args.busy)
    pair = (
        vox_worker(args.vox_tmod[0], args) if args.vox_pairs and args.vox_python and args.vox_tmod else None
    )
    try:
        for tmod in args.vox_tmod if args.vox_python and pair is None else []:
            res = bench_vox(tmod, args)
            results.append(res)
            print(table([res]), file=sys.stderr, flush=True)
        for i, name in enumerate(modes):
            res = bench_mode(name, args, model, refs, pair)
            results.append(res)
            print(table([res]), file=sys.stderr, flush=True)
            later = {reference_dtype(MODES.get(m, m.split(":"))[0], args.isa) for m in modes[i + 1 :]}
            for dtype in [d for d in refs if d not in later]:
                refs.pop(dtype).close()
    finally:
        for ref in refs.values():
            ref.close()
        if pair is not None:
            pair.close()
        for proc in busy_procs:
            proc.kill()
            proc.wait()
    wall = time.monotonic() - started
    busy = machine_busy_seconds() - busy0
    load = f"machine CPU busy {100 * busy / wall / (os.cpu_count() or 1):.0f} % on average over {wall:.0f} s"
    what = f"{model} (given)" if args.model else f"random full-size {args.preset} {args.type} ({model.name})"
    command = "python -m bench.bench_cpu " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    text = [
        f"## {datetime.date.today().isoformat()} — CPU benchmark, {model.name} (bench_cpu)",
        "",
        f"Machine: {machine()}; {args.threads} threads; {load} (the benchmark itself keeps up to "
        f"{args.threads} cores busy while it runs, so more than that means other jobs shared the machine).",
        f"ISA: {ISA_NOTE if args.isa == 'avx2' else 'native'}"
        + (f"; {args.busy} CPU-bound processes running beside it" if args.busy else "")
        + ".",
        *[
            f"Worker ({r['mode']}): {r['isa']}; int8 GEMV bandwidth measured there (bench/gemv.py): "
            f"{r['gemv_gbps']:.1f} GB/s."
            for r in results
            if r.get("isa")
        ],
        f"Checkpoint: {what}; {args.frames} frames per run (greedy, EOS masked), {args.runs} runs per mode, "
        f"medians; ratios ours / reference pair by pair (< 1: ours is faster or smaller; for x real time "
        f"> 1 is better).",
        "",
        "```sh",
        command,
        "```",
        "",
        table(results),
    ]
    quality = quality_table(results)
    if quality:
        text += ["", "Teacher-forced error against bf16 (diagnostics/quant_check.py):", "", quality]
    report = "\n".join(text) + "\n"
    print(report)
    if args.append:
        with open(args.append, "a", encoding="utf-8") as fh:
            fh.write("\n" + report)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
