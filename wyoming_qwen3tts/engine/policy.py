"""Which dtypes and weight format the engine runs, chosen once at load from the device and the CPU class.

`auto` (the default for both `dtype` and `quantize`) picks the fastest mode that passes the quality gates
(quant.GATES) on the detected hardware; `quantize auto` applies only with `dtype auto` (an explicit dtype
runs unquantized unless `quantize` names int8/int4); explicit values are honoured where the hardware runs
them well and otherwise fall back with one warning, never silently several times slower:

| hardware                          | auto dtype | auto quantize | int8 kernel | codec decoder    |
|-----------------------------------|------------|---------------|-------------|------------------|
| GPU (CUDA / ROCm)                 | bfloat16   | none          | -           | bfloat16         |
| x86-64 AVX2 (N100, Ryzen <= 5000) | float32    | int8          | onnxruntime | float32          |
| x86-64 AVX-512 without bf16       | float32    | int8          | fbgemm      | float32          |
| x86-64 AVX-512 BF16 / AMX         | float32    | int8          | onnxruntime | bfloat16         |
| ARM64 with dotprod (Pi 5)         | float32    | int8          | onnxruntime | float32          |
| ARM64 with bf16 (and dotprod)     | float32    | int8          | onnxruntime | bfloat16         |
| ARM64 without dotprod (Pi 4)      | float32    | int8          | QNNPACK     | float32          |

fbgemm and QNNPACK are PyTorch's quantized CPU backends: int8 weights times activations quantized per row
at run time, float32 in and out (quant.DynamicInt8Linear; under fbgemm the two output projections of each
layer keep fp16 weights, quant.FP16_UNDER_FBGEMM). On AVX2 and AVX-512 BF16, where the `cpu4bit` extra is
installed (the add-on image has it), int8 runs onnxruntime's MatMulNBits instead: 8-bit weights per block of
64 times 8-bit activations scaled per block (nbits.NBitsLinear), every matrix 8-bit, well inside the gate;
LM 0.71x (AVX2-limited) and 0.87x (AVX-512 BF16) of fbgemm's time in the same runs (bench/RESULTS.md, issue
24). On ARM64 with the dot-product instructions (`asimddp`: Cortex-A76 and later, e.g. Raspberry Pi 5) the
same 8-bit path runs MLAS's NEON kernel (onnxruntime >= 1.23): QNNPACK's all-int8 (8-bit activations per row)
passes the gate only narrowly (KL 0.0022, logits cosine 0.9982 against the same run's 8-bit blocks' 0.0010 /
0.9992, bench/RESULTS.md "issue 24: ARM paths and the gate"); ARM speed is not measured. Without dotprod MLAS
has no 8-bit kernel (MatMulNBits would dequantize to fp32 on every call): QNNPACK. Without the extra (or if
nbits.kernel_ok finds the kernel wrong on this CPU): the class's own backend (fbgemm / QNNPACK).
`WYOMING_QWEN3TTS_INT8_KERNEL=dynamic` forces fbgemm/QNNPACK, `=onnxruntime` MatMulNBits on any class.

The convolutions of the codec decoder and the speaker encoder ("codec dtype") never run in emulated bf16: on
a CPU without native bf16 they stay float32 whatever `dtype` says (emulated bf16 convolutions measured ~50x
slower); with `dtype` auto they run bf16 where the CPU has it natively. The speech encoder (reference codes
of clone voices) always runs float32. int4 runs PyTorch's int4 kernel on AVX-512 (bf16 activations) and
onnxruntime's MatMulNBits on AVX2 and ARM64 where the `cpu4bit` extra is installed (engine/nbits.py, float32
activations); elsewhere it falls back to int8.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional

import torch

from ..core.vocab import DTYPE_NAMES
from ..core.vocab import QUANTIZE_CHOICES as QUANT_CHOICES  # with auto; engine.QUANT_MODES
from . import nbits
from .cpu import ARM64, ARM64_BF16, AVX2, AVX512_BF16, CpuInfo, cpu_info
from .jit import tracing_default

_LOGGER = logging.getLogger(__name__)

DTYPES = {spelling: getattr(torch, name) for spelling, name in DTYPE_NAMES.items()}  # core.vocab's names

# int8 kernels: "dynamic" = int8 weights x 8-bit activations (quant.DynamicInt8Linear, fbgemm / QNNPACK);
# "weight-only" = int8 weights x bf16/fp32 activations (quant.Int8Linear, vectorised for AVX-512 only);
# "onnxruntime" = 8-bit block weights x 8-bit activations scaled per block (nbits.NBitsLinear, MatMulNBits).
INT8_KERNEL_ENV = "WYOMING_QWEN3TTS_INT8_KERNEL"
# Where `auto` runs int8 through onnxruntime when the cpu4bit extra is installed: every matrix 8-bit passes
# the gate there (fbgemm's 7-bit per-row activations need two fp16 matrices per layer) and the LM is faster.
ORT_INT8_CLASSES = (AVX2, AVX512_BF16, ARM64, ARM64_BF16)  # AVX-512 without bf16 was not measured
# CPU flags a class needs for onnxruntime's 8-bit kernel: MLAS's ARM64 8-bit kernel uses the dot product
# instructions (ARMv8.2 dotprod); without them MatMulNBits dequantizes the weights to fp32 on every call.
ORT_INT8_FLAGS = {ARM64: "asimddp", ARM64_BF16: "asimddp"}
# int4 kernels: "int4pack" = PyTorch's (AVX-512 only, quant.Int4Linear); "onnxruntime" = MatMulNBits
# (nbits.NBitsLinear), for the CPU classes PyTorch's kernel does not serve.
ORT_INT4_CLASSES = (AVX2, ARM64, ARM64_BF16)


@dataclass(frozen=True)
class ComputePlan:
    """What one engine runs: the talker's dtype and weight format, the codec's dtype, which decode steps
    are TorchScript-traced (engine/jit.py), and why. The engine is built from this one object."""

    device: torch.device
    dtype: torch.dtype  # talker and code predictor activations (and their unquantized weights)
    quantize: str  # none, int8 or int4: weights of the talker and code predictor
    int8_kernel: Optional[str]  # "fbgemm" / "qnnpack" (dynamic) or "weight-only"; None without int8
    codec_dtype: torch.dtype  # codec decoder and speaker encoder (convolutions); the speech encoder is fp32
    cpu: Optional[CpuInfo]
    warnings: tuple[str, ...] = ()
    rule: str = ""  # which rule chose the weight format (shown in the compute-plan log line)
    int4_kernel: Optional[str] = None  # "int4pack" or "onnxruntime" with quantize=int4
    trace_talker: bool = False  # the talker's decode step (10-20 s of tracing per new batch size)
    trace_predictor: bool = False  # the code predictor's steps (~0.5 s per batch size; default on CPU)

    def describe(self) -> str:
        weights = "no quantization" if self.quantize == "none" else f"{self.quantize} weights"
        if self.int4_kernel:
            weights += f" ({self.int4_kernel} int4 kernel)"
        if self.int8_kernel:
            weights += f" ({self.int8_kernel} int8 kernel)"
        where = self.cpu.describe() if self.cpu is not None else str(self.device)
        codec = "" if self.codec_dtype == self.dtype else f", codec {_name(self.codec_dtype)}"
        why = f" [{self.rule}]" if self.rule else ""
        return f"{where}: {_name(self.dtype)}, {weights}{codec}{why}"


def _name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def parse_dtype_name(name: str | torch.dtype) -> Optional[torch.dtype]:
    """A dtype, or None for 'auto'; unknown names fail with the list of choices."""
    if isinstance(name, torch.dtype):
        return name
    key = str(name).lower()
    if key == "auto":
        return None
    if key not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; use one of auto, {', '.join(DTYPES)}")
    return DTYPES[key]


def check_quantize(mode: Optional[str]) -> str:
    key = (mode or "none").lower()
    if key not in QUANT_CHOICES:
        raise ValueError(f"unknown quantize mode {mode!r}; use one of {', '.join(QUANT_CHOICES)}")
    return key


def plan(
    device: torch.device,
    dtype: str | torch.dtype = "auto",
    quantize: Optional[str] = "auto",
    cpu: Optional[CpuInfo] = None,
    trace: Optional[bool] = None,
) -> ComputePlan:
    """The compute plan for `device` (resolved), honouring explicit choices where the hardware runs them.
    `trace`: True = trace the talker and code predictor steps, False = none, None = the code predictor on
    CPU only (jit.tracing_default)."""
    trace_talker = bool(trace)
    trace_predictor = tracing_default(device) if trace is None else bool(trace)
    wanted_dtype = parse_dtype_name(dtype)
    mode = check_quantize(quantize)
    if device.type != "cpu":
        if mode in ("int8", "int4"):
            raise ValueError(f"quantize={mode} runs on CPU only; use dtype bfloat16 on a GPU")
        dt = wanted_dtype or torch.bfloat16
        return ComputePlan(
            device,
            dt,
            "none",
            None,
            dt,
            None,
            rule="GPU: no quantization",
            trace_talker=trace_talker,
            trace_predictor=trace_predictor,
        )

    cpu = cpu or cpu_info()
    notes: list[str] = []
    backend = cpu.int8_backend
    rule = f"quantize={mode} as asked"
    if mode == "auto" and wanted_dtype is not None:
        # A user who names a dtype expects it: --quantize auto applies with --dtype auto only.
        mode, rule = "none", f"quantize=auto with an explicit dtype {_name(wanted_dtype)}: no quantization"
    elif mode == "auto":
        mode = "int8" if backend or cpu.cpu_class.startswith("avx512") else "none"
        rule = f"quantize=auto with dtype=auto: {mode} on this CPU"
    int4: Optional[str] = None
    if mode == "int4":
        int4 = _int4_kernel(cpu)
        if int4 is None:
            fallback = "int8" if backend else "none"
            notes.append(
                f"quantize=int4 has no fast kernel on this CPU ({cpu.cpu_class}: PyTorch's int4 kernel is "
                "vectorised for AVX-512 only; onnxruntime's serves AVX2 and ARM64 with the cpu4bit extra "
                f"installed); using {fallback} instead"
            )
            mode = fallback

    kernel: Optional[str] = None
    if int4 == "onnxruntime":
        kernel = backend or "weight-only"  # the output heads stay int8
    if mode == "int8":
        kernel = _int8_kernel(cpu, backend, notes)
        if kernel is None:
            mode = "none"
    auto_dtype = wanted_dtype is None
    if wanted_dtype is None:
        # fbgemm/QNNPACK take fp32 activations; int4 runs its measured bf16 combination (AVX-512 only);
        # everything else bf16 only where the CPU computes it natively.
        dynamic = kernel in ("fbgemm", "qnnpack", "onnxruntime")
        bf16 = int4 == "int4pack" or (cpu.native_bf16 and not dynamic and int4 is None)
        wanted_dtype = torch.bfloat16 if bf16 else torch.float32
    codec = wanted_dtype
    if auto_dtype and cpu.native_bf16:
        codec = torch.bfloat16  # the decoder's convolutions: 16 ms per frame in native bf16, 30 in fp32
    if wanted_dtype == torch.bfloat16 and not cpu.native_bf16:
        codec = torch.float32
        notes.append(
            "this CPU has no native bfloat16: the codec decoder and the encoders run in float32 "
            "(emulated bf16 convolutions are ~50x slower); --dtype auto would pick float32 throughout"
        )
    return ComputePlan(
        device,
        wanted_dtype,
        mode,
        kernel,
        codec,
        cpu,
        tuple(notes),
        rule,
        int4,
        trace_talker=trace_talker,
        trace_predictor=trace_predictor,
    )


def _int4_kernel(cpu: CpuInfo) -> Optional[str]:
    if cpu.int4_kernel:
        return "int4pack"
    if cpu.cpu_class in ORT_INT4_CLASSES and nbits.available():
        return "onnxruntime"
    return None


def _ort_int8_class(cpu: CpuInfo) -> bool:
    """`auto` runs int8 through onnxruntime on this CPU (with the cpu4bit extra)."""
    needed = ORT_INT8_FLAGS.get(cpu.cpu_class)
    return cpu.cpu_class in ORT_INT8_CLASSES and (needed is None or needed in cpu.flags)


def _int8_kernel(cpu: CpuInfo, backend: Optional[str], notes: list[str]) -> Optional[str]:
    forced = os.environ.get(INT8_KERNEL_ENV, "").strip().lower()
    if forced == "onnxruntime" and not nbits.available():
        notes.append(f"{INT8_KERNEL_ENV}=onnxruntime: the cpu4bit extra is not installed; using the default")
    elif forced == "onnxruntime":
        return "onnxruntime"
    if forced in ("dynamic", "weight-only"):
        if forced == "dynamic" and backend is None:
            notes.append(f"{INT8_KERNEL_ENV}=dynamic: no fbgemm/QNNPACK backend here; using weight-only")
            return "weight-only"
        return backend if forced == "dynamic" else "weight-only"
    if _ort_int8_class(cpu) and nbits.available():
        return "onnxruntime"
    if backend is not None:
        return backend
    if cpu.cpu_class.startswith("avx512"):
        return "weight-only"
    notes.append(
        f"quantize=int8 has no fast kernel on this CPU ({cpu.describe()}): PyTorch's quantized backends "
        "are not available and its weight-only int8 kernel is slower than float32 here; not quantizing"
    )
    return None


def log_plan(plan_: ComputePlan) -> None:
    """One INFO line for the choice, one WARNING per fallback."""
    _LOGGER.info("Compute plan: %s", plan_.describe())
    for note in plan_.warnings:
        _LOGGER.warning("%s", note)
