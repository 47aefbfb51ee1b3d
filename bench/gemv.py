"""Bytes each component streams per frame, and this machine's own int8 GEMV bandwidth (issue 24).

Decoding one frame reads every talker matrix once and every code-predictor matrix 15 times, so at batch 1
the LM is bound by memory bandwidth. `int8_gemv_gbps` measures what PyTorch's dynamic int8 Linear (fbgemm on
x86-64, QNNPACK on ARM: the kernel `quantize=int8` runs) streams on this machine, on talker-shaped matrices
larger than any cache, one call per matrix like the engine; bench_cpu.py divides each component's bytes per
frame by its time and reports both, so the distance to the floor shows on any CPU.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

# 0.6B talker layer, fused as the engine runs it: qkv (32 + 2 * 8 heads... fused 4096 x 1024), o_proj,
# gate_up (2 x 3072 x 1024), down_proj. 16 layers = 250 MB of int8, larger than the L3 of the CPUs we serve.
LAYER_SHAPES = ((4096, 1024), (1024, 2048), (6144, 1024), (1024, 3072))
LAYERS = 16


def module_bytes(module: Any) -> int:
    """Weight bytes one pass through `module` reads (quantized layers: their packed weights)."""
    from torch import nn

    from wyoming_qwen3tts.engine.nbits import NBitsLinear
    from wyoming_qwen3tts.engine.quant import DynamicInt8Linear, Fp16Linear, _nbytes

    total = 0
    for sub in module.modules():
        if isinstance(sub, (DynamicInt8Linear, Fp16Linear, NBitsLinear)):
            total += _nbytes(sub)
        elif not isinstance(sub, nn.Embedding):  # embeddings are gathered, not streamed
            own = list(sub.parameters(recurse=False)) + list(sub.buffers(recurse=False))
            total += sum(t.numel() * t.element_size() for t in own)
    return total


def streamed_bytes(engine: Any) -> dict[str, float]:
    """Bytes per frame: talker step (its 28 layers + codec head), code predictor (15 passes through its
    stack and projection, each of its 15 heads once), decoder weights (read once per 4-frame chunk)."""
    talker = engine.talker
    predictor = talker.code_predictor
    passes = predictor.groups - 1
    talker_b = module_bytes(talker.model.layers) + module_bytes(talker.codec_head)
    stack = module_bytes(predictor.model.layers) + module_bytes(predictor.small_to_mtp_projection)
    predictor_b = passes * stack + module_bytes(predictor.lm_head)
    return {
        "talker_bytes": float(talker_b),
        "predictor_bytes": float(predictor_b),
        "decoder_bytes": module_bytes(engine.decoder) / 4.0,
    }


def int8_gemv_gbps(repeats: int = 7) -> float:
    """GB/s of PyTorch's dynamic int8 Linear at batch 1 over LAYERS talker-shaped layers (median pass)."""
    import torch

    backend = (
        "qnnpack"
        if "qnnpack" in torch.backends.quantized.supported_engines
        and not any(e in torch.backends.quantized.supported_engines for e in ("fbgemm", "x86"))
        else "fbgemm"
    )
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = backend
    try:
        gen = torch.Generator().manual_seed(0)
        packed, total = [], 0
        for _ in range(LAYERS):
            for n, k in LAYER_SHAPES:
                q = torch.randint(-127, 128, (n, k), dtype=torch.int8, generator=gen)
                scale = torch.full((n,), 0.01, dtype=torch.double)
                w = torch._make_per_channel_quantized_tensor(q, scale, torch.zeros(n, dtype=torch.long), 0)
                packed.append((torch.ops.quantized.linear_prepack(w, None), k))
                total += n * k + 8 * n
        xs = {k: torch.randn(1, k) for k in {k for _, k in LAYER_SHAPES}}
        reduce = backend == "fbgemm"
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for p, k in packed:
                torch.ops.quantized.linear_dynamic(xs[k], p, reduce)
            times.append(time.perf_counter() - start)
    finally:
        torch.backends.quantized.engine = previous
    return total / statistics.median(times[1:]) / 1e9
