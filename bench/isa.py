"""`--isa avx2` for every benchmark: behave like an AVX2-only CPU (Intel N100, Ryzen <= 5000) on a newer one.

Three libraries pick their kernels from the CPU, and each reads its own variable once per process:

* ATen (PyTorch's own kernels): ``ATEN_CPU_CAPABILITY=avx2``
* oneDNN (fp32/bf16 GEMM, convolutions): ``ONEDNN_MAX_CPU_ISA=AVX2``
* fbgemm (our int8 and fp16 GEMMs, `quant.DynamicInt8Linear`): ``FBGEMM_ENABLE_INSTRUCTIONS=AVX2``

Earlier "AVX2" figures set only the first two, so fbgemm kept its AVX-512 kernels (issue 24). All three must
be in the environment before torch is loaded: `apply_isa` sets them in this process (re-executing it when
torch is already imported) and `isa_env` gives a worker process's environment. Native peers (vox-tts) cannot
be limited this way; a comparison of ours limited against them unlimited is conservative.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Mapping, Optional

AVX2_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
}
ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_bf16",
    "avx_vnni",
    "asimd",
    "asimddp",
    "bf16",
    "i8mm",
)
# Set (to "1") in the environment of a process that `apply_isa` re-executed, so it never loops.
_REEXEC_MARK = "WYOMING_QWEN3TTS_BENCH_ISA"


def add_isa_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--isa",
        choices=("native", "avx2"),
        default="native",
        help="avx2: limit PyTorch, oneDNN and fbgemm to AVX2 ("
        + " ".join(f"{k}={v}" for k, v in AVX2_ENV.items())
        + "), as on an AVX2-only CPU; native peers (vox-tts) cannot be limited",
    )


def isa_env(isa: str, base: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The environment for a worker process: `base` (default: ours) plus the limits of `isa`."""
    env = dict(os.environ if base is None else base)
    if isa == "avx2":
        env.update(AVX2_ENV)
    return env


def missing(isa: str, environ: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The variables `isa` needs that `environ` (default: ours) does not have with the right value."""
    environ = os.environ if environ is None else environ
    wanted = AVX2_ENV if isa == "avx2" else {}
    return {k: v for k, v in wanted.items() if environ.get(k) != v}


def apply_isa(isa: str) -> None:
    """Puts this process under `isa` before torch loads: sets the variables if torch is not imported yet,
    else re-executes the same command line with them (the libraries read them once, when they load)."""
    need = missing(isa)
    if not need:
        return
    if "torch" not in sys.modules:
        os.environ.update(need)
        return
    if os.environ.get(_REEXEC_MARK):
        raise RuntimeError(f"--isa {isa}: torch was imported before the limits could be set: {need}")
    env = {**os.environ, **need, _REEXEC_MARK: "1"}
    argv = list(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv[1:]], env)


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """The ISA flags of ISA_FLAGS this CPU has (x86 `flags`, ARM `Features`)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    have: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            have.update(value.split())
    return [f for f in ISA_FLAGS if f in have]


def fbgemm_limit(environ: Optional[Mapping[str, str]] = None) -> str:
    """What fbgemm runs in a process with `environ`: its limit, or that it picks its own kernels."""
    environ = os.environ if environ is None else environ
    value = environ.get("FBGEMM_ENABLE_INSTRUCTIONS")
    return f"limited to {value}" if value else "not limited (picks the best kernels of this CPU)"


def isa_report(isa: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """One line for a benchmark's header: what was limited, how, and the CPU's own flags."""
    environ = os.environ if environ is None else environ
    limits = " ".join(f"{k}={environ[k]}" for k in AVX2_ENV if k in environ) or "none"
    flags = " ".join(cpu_flags()) or "unknown"
    return f"ISA {isa}: limits {limits}; fbgemm {fbgemm_limit(environ)}; CPU flags: {flags}"
