"""What this CPU can run fast, read once from the CPU's flags and PyTorch's own limits, never from timing.

Home Assistant hosts are mostly AVX2 (Intel N100/N305, older Core, Ryzen up to 5000) or ARM (Raspberry Pi 5)
without native bfloat16: there PyTorch emulates bf16, which is fine for matrix-vector products but ruins
convolutions (the codec decoder ran ~3 s per frame in emulated bf16 on an AVX2 EPYC, ~60 ms in fp32). Only
AVX-512 BF16 / AMX (Zen 4/5, Xeon 4th gen+) and ARMv8.6 bf16 run it natively.

`ATEN_CPU_CAPABILITY=avx2` and `ONEDNN_MAX_CPU_ISA=AVX2` make PyTorch behave as on an AVX2-only CPU; the
detection honours them, so an AVX-512 machine reproduces AVX2 choices (fbgemm, PyTorch's int8 GEMM for
x86, picks its kernels itself and still uses AVX-512 there: say so next to numbers measured that way).
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

AVX2 = "avx2"
AVX512 = "avx512"
AVX512_BF16 = "avx512_bf16"
ARM64 = "arm64"
ARM64_BF16 = "arm64_bf16"
OTHER = "other"


@dataclass(frozen=True)
class CpuInfo:
    """The CPU class the engine's choices follow, and the facts behind it."""

    cpu_class: str  # one of AVX2, AVX512, AVX512_BF16, ARM64, ARM64_BF16, OTHER
    model: str
    flags: frozenset[str]
    capability: str  # PyTorch's vector ISA in force (torch.backends.cpu.get_cpu_capability())

    @property
    def native_bf16(self) -> bool:
        """bf16 arithmetic in hardware (convolutions and GEMMs not emulated)."""
        return self.cpu_class in (AVX512_BF16, ARM64_BF16)

    @property
    def int8_backend(self) -> str | None:
        """PyTorch's quantized engine with fast int8 GEMV kernels for fp32 activations here: fbgemm on x86-64
        (AVX2 and up; its AVX2 kernel streams int8 weights at ~18 GB/s on a 2-core EPYC, 3.6x fp32), QNNPACK
        on ARM (NEON). None where neither is built in or the CPU is below AVX2."""
        engines = torch.backends.quantized.supported_engines
        if self.cpu_class in (AVX2, AVX512, AVX512_BF16) and "fbgemm" in engines:
            return "fbgemm"
        if self.cpu_class in (ARM64, ARM64_BF16) and "qnnpack" in engines:
            return "qnnpack"
        return None

    @property
    def int4_kernel(self) -> bool:
        """PyTorch's int4 weight kernel (`_weight_int4pack_mm_for_cpu`) is vectorised for AVX-512 only; on
        AVX2 and ARM it runs a scalar loop, several times slower than fp32."""
        return self.cpu_class in (AVX512, AVX512_BF16)

    def describe(self) -> str:
        return f"{self.model} ({self.cpu_class}, PyTorch ISA {self.capability})"


def _cpuinfo_text() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def _parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    model, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model or platform.processor() or platform.machine(), frozenset(flags)


def classify(machine: str, flags: frozenset[str], capability: str, onednn_isa: str) -> str:
    """The CPU class from the architecture, the CPU flags and the ISA limits PyTorch runs under."""
    machine = machine.lower()
    if machine in ("aarch64", "arm64"):
        return ARM64_BF16 if "bf16" in flags else ARM64
    if machine not in ("x86_64", "amd64"):
        return OTHER
    capability = capability.upper()
    limited = onednn_isa.upper().startswith(("AVX2", "SSE", "AVX_")) or onednn_isa.upper() == "AVX"
    if capability.startswith("AVX512") and "avx512f" in flags and not limited:
        if "avx512_bf16" in flags or "amx_bf16" in flags:
            return AVX512_BF16
        return AVX512
    if capability in ("AVX2", "AVX512") and "avx2" in flags:
        return AVX2
    return OTHER


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    model, flags = _parse_cpuinfo(_cpuinfo_text())
    capability = torch.backends.cpu.get_cpu_capability()
    cpu_class = classify(platform.machine(), flags, capability, os.environ.get("ONEDNN_MAX_CPU_ISA", ""))
    return CpuInfo(cpu_class=cpu_class, model=model, flags=flags, capability=capability)
