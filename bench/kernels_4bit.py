"""Batch-1 GEMV kernels at talker shapes: which 4-bit (or 8-bit) kernel moves a talker step fastest.

    python -m bench.kernels_4bit --isa avx2 --threads 2 [--layers 28]

Random weights, the 0.6B talker's fused matrices per layer (qkv 4096x1024, o_proj 1024x2048, gate_up
6144x1024, down_proj 1024x3072), one token. Candidates (each where this torch/onnxruntime has it):

* ``fbgemm int8``: PyTorch's dynamic int8 Linear, one call per matrix (what `quantize=int8` runs today).
* ``ort nbits=N acc=A per-matrix``: onnxruntime's `MatMulNBits` (com.microsoft, MLAS), one session per matrix,
  one `run` per matrix (what an engine replacing each Linear would do); block 32 (8-bit: also 64 and 128),
  `accuracy_level` 4 = int8 activations (per block), 0 = fp32 activations.
* ``ort nbits=N acc=A one graph``: all matrices in one session run (the kernel alone, no per-call cost).
* ``torch int4pack``: `torch._weight_int4pack_mm_for_cpu` (group 32, bf16 activations).
* ``torch dyn_quant 4bit``: `torch._dyn_quant_matmul_4bit` (KleidiAI on aarch64; a reference path elsewhere).

Prints ms per talker step (all layers) and GB/s of weight bytes for each. Needs the optional `onnx` package
for the onnxruntime rows (`pip install .[cpu4bit]`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable

from bench.isa import add_isa_argument, apply_isa, isa_report

SHAPES = ((4096, 1024), (1024, 2048), (6144, 1024), (1024, 3072))  # (N out, K in)
BLOCK = 32


def timed(fn: Callable[[], None], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fbgemm_int8(mats, repeats: int) -> tuple[float, int]:
    import torch

    packed, total = [], 0
    for n, k in mats:
        q = torch.randint(-127, 128, (n, k), dtype=torch.int8)
        w = torch._make_per_channel_quantized_tensor(
            q, torch.full((n,), 0.01, dtype=torch.double), torch.zeros(n, dtype=torch.long), 0
        )
        packed.append((torch.ops.quantized.linear_prepack(w, None), torch.randn(1, k)))
        total += n * k + 8 * n

    def run() -> None:
        for p, x in packed:
            torch.ops.quantized.linear_dynamic(x, p, True)

    return timed(run, repeats), total


def _nbits_node(
    helper, numpy_helper, np, name: str, n: int, k: int, bits: int, acc: int, rng, block: int = BLOCK
):
    """A MatMulNBits node and its initializers: B [N, K/block, block*bits/8] uint8, scales [N*K/block]."""
    blob = block * bits // 8
    b = rng.integers(0, 256, size=(n, k // block, blob), dtype=np.uint8)
    scales = (rng.random(n * (k // block), dtype=np.float32) * 0.01).astype(np.float32)
    inits = [numpy_helper.from_array(b, f"{name}_b"), numpy_helper.from_array(scales, f"{name}_s")]
    node = helper.make_node(
        "MatMulNBits",
        [f"{name}_x", f"{name}_b", f"{name}_s"],
        [f"{name}_y"],
        domain="com.microsoft",
        K=k,
        N=n,
        bits=bits,
        block_size=block,
        accuracy_level=acc,
    )
    return node, inits, n * (k // block) * (blob + 4)


def ort_session(nodes, inits, inputs, outputs, threads: int):
    from onnx import helper

    from wyoming_qwen3tts.engine.nbits import session_of  # the engine's own session settings

    return session_of(helper.make_graph(nodes, "g", inputs, outputs, initializer=inits), threads)


def ort_nbits(
    mats, bits: int, acc: int, threads: int, repeats: int, one_graph: bool, block: int = BLOCK
) -> tuple[float, int]:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    built, total = [], 0
    for i, (n, k) in enumerate(mats):
        node, inits, size = _nbits_node(helper, numpy_helper, np, f"m{i}", n, k, bits, acc, rng, block)
        x = helper.make_tensor_value_info(f"m{i}_x", TensorProto.FLOAT, [1, k])
        y = helper.make_tensor_value_info(f"m{i}_y", TensorProto.FLOAT, [1, n])
        built.append((node, inits, x, y, k))
        total += size
    feeds = {
        f"m{i}_x": np.random.default_rng(i).standard_normal((1, k)).astype(np.float32)
        for i, (*_, k) in enumerate(built)
    }
    if one_graph:
        sess = ort_session(
            [b[0] for b in built],
            [t for b in built for t in b[1]],
            [b[2] for b in built],
            [b[3] for b in built],
            threads,
        )
        names = [b[3].name for b in built]
        return timed(lambda: sess.run(names, feeds), repeats), total
    sessions = [(ort_session([b[0]], b[1], [b[2]], [b[3]], threads), b[2].name, b[3].name) for b in built]

    def run() -> None:
        for sess, xin, yout in sessions:
            sess.run([yout], {xin: feeds[xin]})

    return timed(run, repeats), total


def torch_int4pack(mats, repeats: int) -> tuple[float, int]:
    import torch

    packed, total = [], 0
    for n, k in mats:
        w = torch.randint(0, 16, (n, k), dtype=torch.int32)
        wp = torch._convert_weight_to_int4pack_for_cpu(w, 1)
        sz = torch.rand(k // BLOCK, n, 2, dtype=torch.bfloat16)
        packed.append((wp, sz, torch.randn(1, k, dtype=torch.bfloat16)))
        total += n * k // 2 + (k // BLOCK) * n * 4

    def run() -> None:
        for wp, sz, x in packed:
            torch._weight_int4pack_mm_for_cpu(x, wp, BLOCK, sz)

    return timed(run, repeats), total


def torch_dyn_quant_4bit(mats, repeats: int) -> tuple[float, int]:
    import torch

    packed, total = [], 0
    for n, k in mats:
        w = torch.randint(0, 16, (n, k // 2), dtype=torch.uint8)
        scales = torch.rand(n, k // BLOCK, dtype=torch.float32)
        wp = torch.ops.aten._dyn_quant_pack_4bit_weight(w, scales, None, BLOCK, k, n)
        packed.append((wp, torch.randn(1, k), k, n))
        total += n * k // 2 + (k // BLOCK) * n * 4

    def run() -> None:
        for wp, x, k, n in packed:
            torch.ops.aten._dyn_quant_matmul_4bit(x, wp, BLOCK, k, n)

    return timed(run, repeats), total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--layers", type=int, default=28)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--only", default="", help="comma-separated substrings of the rows to run")
    add_isa_argument(p)
    args = p.parse_args()
    apply_isa(args.isa)
    import torch

    torch.set_num_threads(args.threads)
    print(isa_report(args.isa), file=sys.stderr)
    mats = [s for _ in range(args.layers) for s in SHAPES]
    r = args.repeats
    rows: list[tuple[str, Callable[[], tuple[float, int]]]] = [
        ("fbgemm int8 (per call)", lambda: fbgemm_int8(mats, r)),
        ("ort nbits=4 acc=4 per-matrix", lambda: ort_nbits(mats, 4, 4, args.threads, r, False)),
        ("ort nbits=4 acc=4 one graph", lambda: ort_nbits(mats, 4, 4, args.threads, r, True)),
        ("ort nbits=8 acc=4 per-matrix", lambda: ort_nbits(mats, 8, 4, args.threads, r, False)),
        ("ort nbits=8 acc=4 block 64 per-matrix", lambda: ort_nbits(mats, 8, 4, args.threads, r, False, 64)),
        (
            "ort nbits=8 acc=4 block 128 per-matrix",
            lambda: ort_nbits(mats, 8, 4, args.threads, r, False, 128),
        ),
        ("ort nbits=4 acc=0 one graph", lambda: ort_nbits(mats, 4, 0, args.threads, r, True)),
        ("torch int4pack (bf16 act)", lambda: torch_int4pack(mats, r)),
        ("torch dyn_quant 4bit", lambda: torch_dyn_quant_4bit(mats, r)),
    ]
    only = [o for o in args.only.split(",") if o]
    print(f"| kernel ({args.layers} talker layers, batch 1, {args.threads} threads) | ms per step | GB/s |")
    print("|---|---|---|")
    for name, fn in rows:
        if only and not any(o in name for o in only):
            continue
        try:
            seconds, nbytes = fn()
        except Exception as exc:  # a kernel this build does not have: say so, keep going
            print(f"| {name} | unavailable: {type(exc).__name__}: {str(exc)[:80]} | – |", flush=True)
            continue
        print(f"| {name} | {1000 * seconds:.1f} | {nbytes / seconds / 1e9:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
