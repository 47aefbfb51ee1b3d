"""Where a request's memory goes: RSS, heap and mappings after each phase of a load and of requests.

    python -m bench.memory_phases --model /work/ckpts/cv-0.6b --isa avx2 [--frames 30 300] [--maps]

Loads the engine as bench/cpu_worker.py does (defaults, one slot), then runs one request per ``--frames``
value (greedy, EOS masked, 4-frame chunks) and prints one line after: the load, the first talker prefill,
the first code-predictor pass, the first talker step, the first and every 25th decoder chunk, the end of
the request and the engine going idle (the scheduler trims the heap there). Each line: RSS, its high-water
mark (VmHWM), anonymous / file-backed resident memory (smaps_rollup) and glibc's heap (mallinfo2: bytes in
use, free inside the arenas, in mmap'd blocks). ``--maps`` also lists the largest anonymous mappings at the
end (per-mapping RSS from /proc/self/smaps), to tell heap, mmap'd blocks and thread arenas apart.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.isa import add_isa_argument, apply_isa  # noqa: E402

MB = 1024 * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo() -> dict[str, float]:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not hasattr(libc, "mallinfo2"):
        return {}
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    # arena: bytes from sbrk + thread arenas; hblkhd: mmap'd blocks; uordblks in use; fordblks free.
    return {"used": info.uordblks / MB, "free": info.fordblks / MB, "mmapped": info.hblkhd / MB}


def _status() -> dict[str, float]:
    out = {}
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    with open("/proc/self/smaps_rollup", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(("Anonymous:", "Rss:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def snapshot(label: str, start: float) -> None:
    s, m = _status(), _mallinfo()
    heap = f"heap used {m['used']:.0f} free {m['free']:.0f} mmapped {m['mmapped']:.0f}" if m else ""
    print(
        f"{time.perf_counter() - start:7.1f} s {label:<34} RSS {s['VmRSS']:5.0f} peak {s['VmHWM']:5.0f} "
        f"anon {s['Anonymous']:5.0f} file {s['Rss'] - s['Anonymous']:4.0f} | {heap}",
        flush=True,
    )


def largest_anonymous(count: int = 15) -> None:
    """The `count` anonymous mappings with most resident memory (address range, size, RSS in MB)."""
    rows, current = [], None
    with open("/proc/self/smaps", encoding="ascii", errors="replace") as fh:
        for line in fh:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):
                current = [head[0], head[5] if len(head) > 5 else "[anon]", 0.0, 0.0]
                rows.append(current)
            elif current is not None and head[0] == "Size:":
                current[2] = int(head[1]) / 1024
            elif current is not None and head[0] == "Anonymous:":
                current[3] = int(head[1]) / 1024
            elif current is not None and head[0] == "Rss:":
                current.append(int(head[1]) / 1024)
    rows.sort(key=lambda r: -r[3])
    for span, name, size, anon, _ in rows[:count]:
        print(f"    {span:<28} {name:<16} size {size:7.1f} anon {anon:7.1f}")
    small = sum(r[3] for r in rows[count:])
    print(f"    {len(rows) - count} other mappings: anon {small:.1f}")
    files: dict[str, float] = {}
    for _, name, _, anon, rss in rows:
        if name.startswith("/"):
            files[name] = files.get(name, 0.0) + rss - anon
    for name, rss in sorted(files.items(), key=lambda kv: -kv[1])[:8]:
        print(f"    file {name}: {rss:.1f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--quantize", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, nargs="+", default=[30, 300])
    p.add_argument("--maps", action="store_true", help="list the largest anonymous mappings at the end")
    add_isa_argument(p)
    args = p.parse_args()
    apply_isa(args.isa)
    from wyoming_qwen3tts.platform_env import apply_cpu_env

    apply_cpu_env()
    import torch

    from bench.cpu_worker import load
    from wyoming_qwen3tts.engine import ChunkPolicy, SamplingParams, SpeechRequest

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    snapshot("start (torch imported)", start)
    # The benchmark worker's load: as the server runs it, EOS suppressed, BENCH_ORT_ARENA=1 honoured.
    engine = load(argparse.Namespace(model=args.model, dtype="auto"), args.quantize)
    snapshot("loaded", start)

    calls: dict[str, int] = {}

    def watch(obj: Any, attr: str, key: str, every: int = 0) -> None:
        inner: Callable[..., Any] = getattr(obj, attr)

        def probe(*a: Any, **k: Any) -> Any:
            out = inner(*a, **k)
            n = calls[key] = calls.get(key, 0) + 1
            if n == 1 or (every and n % every == 0):
                snapshot(f"{key} #{n}", start)
            return out

        setattr(obj, attr, probe)

    watch(engine.talker.model, "prefill", "prefill")
    watch(engine.talker.code_predictor, "generate", "predictor", every=100)
    watch(engine.runner, "talker_step", "talker step", every=100)
    watch(engine.decoder, "step", "decoder chunk", every=25)
    speaker = sorted(engine.speakers)[0]
    text = "Hello world, this is a benchmark of the speech engine on this machine."
    for frames in args.frames:
        calls.clear()
        req = SpeechRequest(
            text,
            language="english",
            speaker=speaker,
            sampling=SamplingParams.greedy(max_new_tokens=frames + 1),
            chunk_policy=ChunkPolicy(1, 4),
        )
        stream = engine.submit(req, keep=True)
        for _ in stream:
            pass
        snapshot(f"end of {len(stream.result().codes)}-frame request", start)
        time.sleep(3.0)  # the scheduler goes idle (scheduler.IDLE_EXIT_S) and trims the heap
        snapshot("idle", start)
    if args.maps:
        largest_anonymous()
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
