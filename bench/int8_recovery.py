"""Accuracy recovery for an all-int8 LM under fbgemm (issue 24b): teacher-forced error of load-time variants.

    python -m bench.int8_recovery --model bench/checkpoints/cv-0.6b --isa avx2 --frames 50 \
        allint8 allint8+hadd128 allint8+hadd128+hado o16+hadd128 o16+hadd1024+h16

Each variant is one `+`-joined list of switches, applied to the quantizer before the engine loads
(a measurement tool: it patches engine.quant / engine.layers in this process only, nothing ships):

* ``fbgemm``: `auto`'s fbgemm path unchanged (o_proj and down_proj fp16);
* ``qnnpack``: the ARM64 class's dynamic int8 path, as `auto` runs it there without onnxruntime: the CPU is
  reported as ARM64 to the compute plan, so the converter builds QNNPACK `DynamicInt8Linear`s for every
  matrix (8-bit activations, no fp16 matrices); x86-64 wheels carry QNNPACK's SSE2 kernels, whose integer
  arithmetic is the NEON kernels';
* ``kleidi4``: every transformer matrix through `torch._dyn_quant_matmul_4bit` (KleidiAI's scheme on aarch64:
  4-bit symmetric weights per block of 32, activations 8-bit asymmetric per row; x86-64 runs PyTorch's
  reference path of the same arithmetic, ~100x slower than a real kernel: use few frames); the heads follow
  the other switches (``qnnpack+kleidi4``: QNNPACK int8 heads, as an ARM64 int4 mode would keep them);
* ``allint8``: no fp16 matrices (default `auto` keeps o_proj and down_proj fp16); ``o16``: only o_proj fp16;
* ``haddN``: down_proj's input rotated online by a block-diagonal Hadamard matrix (blocks of N), the inverse
  rotation folded into its weight before quantization (QuaRot-style), so fbgemm's per-row 7-bit activation
  scale sees a Gaussian-like row instead of SwiGLU's heavy tail;
* ``hadall128``: the same for qkv, o, gate_up and down;
* ``hado``: o_proj's input rotated per head for free: the rotation folds into v_proj's rows and o_proj's
  columns (attention is linear in v);
* ``rr0``: fbgemm's activations at 8 bits (reduce_range off; pre-VNNI kernels may saturate);
* ``h16``: the 16 output heads fp16;
* ``ort8``: onnxruntime's MatMulNBits instead of fbgemm (WYOMING_QWEN3TTS_INT8_KERNEL=onnxruntime): every
  matrix 8-bit per block, activations 8-bit per block; ``bN``: blocks of N (default nbits.BLOCK_8BIT);
  ``gu4``: with ort8, gate_up_proj 4-bit (blocks of 32): the mixed 4/8-bit candidate.

The reference (fp32, unquantized) trace is computed once per frame count and cached in --cache.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.isa import add_isa_argument, apply_isa  # noqa: E402

TEXT = "Hello world, this is a benchmark of the speech engine on this machine."


def hadamard(n: int) -> Any:
    import torch

    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat((torch.cat((h, h), 1), torch.cat((h, -h), 1)), 0)
    return h / h.shape[0] ** 0.5


def dyn_quant_4bit(linear: Any, group: int = 32) -> Any:
    """A Linear through `torch._dyn_quant_matmul_4bit` (codes -8..7 stored +8, two per byte, low nibble
    first; scale = block absmax / 7 as nbits.quantize_blocks)."""
    import torch
    from torch import nn

    class DynQuant4Linear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = linear.weight.detach().float()
            n, k = w.shape
            self.in_features, self.out_features = k, n
            blocks = w.reshape(n, k // group, group)
            scale = (blocks.abs().amax(-1) / 7).clamp(min=torch.finfo(torch.float32).tiny)
            codes = (torch.round(blocks / scale[..., None]).clamp(-8, 7) + 8).to(torch.uint8).reshape(n, k)
            packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).contiguous()
            bias = None if linear.bias is None else linear.bias.detach().float()
            self.register_buffer(
                "packed", torch.ops.aten._dyn_quant_pack_4bit_weight(packed, scale, bias, group, k, n)
            )

        def _call(self, x: Any) -> Any:
            out = torch.ops.aten._dyn_quant_matmul_4bit(
                x.float().contiguous(), self.packed, group, self.in_features, self.out_features
            )
            return out if x.dtype == torch.float32 else out.to(x.dtype)

        def mm(self, x: Any) -> Any:
            return torch.cat([self._call(row) for row in x.split(1)]) if x.shape[0] > 1 else self._call(x)

        def forward(self, x: Any) -> Any:
            return self._call(x.reshape(-1, x.shape[-1])).view(*x.shape[:-1], self.out_features)

    return DynQuant4Linear()


def apply_variant(switches: set[str]) -> None:
    import torch
    from torch import nn

    from wyoming_qwen3tts.engine import cpu, layers, nbits, policy, quant

    if "ort8" not in switches:  # the fbgemm variants, whatever `auto` picks on this CPU
        os.environ[policy.INT8_KERNEL_ENV] = "dynamic"
    if "kleidi4" in switches:
        base = quant.converter

        def kleidi(*args: Any, **kwargs: Any) -> Any:
            convert = base(*args, **kwargs)

            def one(linear: nn.Linear, is_head: bool, name: str = "") -> Any:
                return convert(linear, is_head, name) if is_head else dyn_quant_4bit(linear)

            return one

        quant.converter = kleidi
    if "qnnpack" in switches:
        arm = cpu.CpuInfo(
            cpu_class=cpu.ARM64, model="ARM64 (emulated)", flags=frozenset(), capability="DEFAULT"
        )
        assert arm.int8_backend == "qnnpack", "this PyTorch build has no QNNPACK"
        policy.cpu_info = lambda: arm  # type: ignore[assignment]
        return
    if "ort8" in switches:

        os.environ[policy.INT8_KERNEL_ENV] = "onnxruntime"
        block = next((int(s[1:]) for s in switches if s[0] == "b" and s[1:].isdigit()), 0)
        if block:
            nbits.BLOCK_8BIT = quant.BLOCK_8BIT = block  # type: ignore[misc]
        if "gu4" in switches:
            nbits_converter = quant.converter

            def mixed(*args: Any, **kwargs: Any) -> Any:
                convert = nbits_converter(*args, **kwargs)

                def one(linear: nn.Linear, is_head: bool, name: str = "") -> Any:
                    if name == "gate_up_proj":
                        return nbits.NBitsLinear(linear, bits=4)
                    return convert(linear, is_head, name)

                return one

            quant.converter = mixed
        return
    if "allint8" in switches:
        quant.FP16_UNDER_FBGEMM = ()  # type: ignore[assignment]
    if "o16" in switches:
        quant.FP16_UNDER_FBGEMM = ("o_proj",)  # type: ignore[assignment]
    dynamic = quant.DynamicInt8Linear
    if "rr0" in switches:

        class Wide(dynamic):  # type: ignore[misc, valid-type]
            def __init__(self, linear: nn.Linear, backend: str) -> None:
                super().__init__(linear, backend)
                self._reduce_range = False

        dynamic = Wide
        quant.DynamicInt8Linear = Wide  # type: ignore[misc]
    if "hado" in switches:
        fuse = layers.Attention.fuse

        def fuse_rotated(self: Any) -> None:
            done = self.qkv_proj is not None
            fuse(self)
            if done:
                return
            d, h = self.head_dim, hadamard(self.head_dim)
            w = self.qkv_proj.weight.detach().float().clone()
            nv = self.kv_heads * d
            w[-nv:] = torch.einsum("ij,hjk->hik", h, w[-nv:].view(self.kv_heads, d, -1)).reshape(nv, -1)
            self.qkv_proj.weight = nn.Parameter(w.to(self.qkv_proj.weight.dtype), requires_grad=False)
            wo = self.o_proj.weight.detach().float()
            wo = (wo.view(wo.shape[0], self.heads, d) @ h.t()).reshape(wo.shape[0], -1)
            self.o_proj.weight = nn.Parameter(
                wo.to(self.o_proj.weight.dtype).contiguous(), requires_grad=False
            )

        layers.Attention.fuse = fuse_rotated  # type: ignore[method-assign]
    block = next((int(s[len(p) :]) for s in switches for p in ("hadd", "hadall") if s.startswith(p)), 0)
    rotated = (
        ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
        if any("hadall" in s for s in switches)
        else ("down_proj",)
    )

    class RotatedInput(nn.Module):
        def __init__(self, linear: nn.Linear) -> None:
            super().__init__()
            h = hadamard(block)
            self.register_buffer("h_t", h.t().contiguous())
            w = linear.weight.detach().float()
            self.in_features, self.out_features = w.shape[1], w.shape[0]
            folded = nn.Linear(w.shape[1], w.shape[0], bias=False)
            folded.weight = nn.Parameter((w.view(w.shape[0], -1, block) @ h.t()).reshape(w.shape))
            self.inner = dynamic(folded, "fbgemm")

        def rot(self, x: Any) -> Any:
            return (x.reshape(-1, self.in_features // block, block) @ self.h_t).reshape(x.shape)

        def mm(self, x: Any) -> Any:
            return self.inner.mm(self.rot(x))

        def forward(self, x: Any) -> Any:
            return self.inner(self.rot(x))

    converter = quant.converter

    def patched(*args: Any, **kwargs: Any) -> Any:
        convert = converter(*args, **kwargs)
        fbgemm = kwargs.get("int8_kernel") == "fbgemm"

        def one(linear: nn.Linear, is_head: bool, name: str = "") -> Any:
            if fbgemm and block and name in rotated:
                return RotatedInput(linear)
            if fbgemm and is_head and "h16" in switches:
                return quant.Fp16Linear(linear)
            return convert(linear, is_head, name)

        return one

    quant.converter = patched


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", default="/tmp/int8_recovery")
    p.add_argument("variant", nargs="+")
    add_isa_argument(p)
    args = p.parse_args()
    apply_isa(args.isa)
    if len(args.variant) > 1:  # one process per variant: the patches are process-wide
        import subprocess

        base = [sys.executable, "-m", "bench.int8_recovery", "--model", args.model, "--isa", args.isa]
        base += ["--frames", str(args.frames), "--threads", str(args.threads), "--cache", args.cache]
        return max(subprocess.call(base + [v]) for v in args.variant)
    import torch

    from wyoming_qwen3tts.diagnostics import quant_check as qc
    from wyoming_qwen3tts.engine import Engine, RunawayGuard

    torch.set_num_threads(args.threads)

    def load(quantize: str) -> Any:
        engine = Engine.load(
            args.model,
            device="cpu",
            dtype="float32",
            slots=1,
            guard=RunawayGuard(enabled=False),
            quantize=quantize,
        )
        engine.runner.sampler.suppress[engine.runner.eos] = True
        return engine

    os.makedirs(args.cache, exist_ok=True)
    ref_path = Path(args.cache) / f"ref{args.frames}.pt"
    if not ref_path.exists():
        ref = load("none")
        speaker = ref.speakers[0]
        trace, codes = qc.trace(ref, TEXT, speaker, frames=args.frames)
        gen = ref.config.generation
        saved = {"trace": trace.__dict__, "codes": codes, "suppress": ref.runner.sampler.suppress.cpu()}
        saved.update(t=gen.temperature, st=gen.subtalker_temperature, speaker=speaker)
        torch.save(saved, ref_path)
        ref.close()
    data = torch.load(ref_path, weights_only=False)
    apply_variant(set(args.variant[0].split("+")))
    engine = load("int8")
    print(f"{args.variant[0]}: {engine.plan.describe()}", file=sys.stderr, flush=True)
    test, _ = qc.trace(engine, TEXT, data["speaker"], codes=data["codes"])
    err = qc.compare(qc.Trace(**data["trace"]), test, data["suppress"], data["t"], data["st"])
    print(args.variant[0], json.dumps({k: round(v, 5) for k, v in err.as_dict().items()}), flush=True)
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
