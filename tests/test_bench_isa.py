"""`--isa avx2` of the benchmarks (bench/isa.py, issue 24): all three kernel libraries limited first."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from bench import isa

ROOT = Path(__file__).resolve().parents[1]
LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "FBGEMM_ENABLE_INSTRUCTIONS")


def test_avx2_environment_limits_aten_onednn_and_fbgemm():
    env = isa.isa_env("avx2", {"PATH": "/bin", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX512"})
    assert env["PATH"] == "/bin"
    assert {k: env[k] for k in LIMITS} == {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
    }
    assert isa.isa_env("native", {"PATH": "/bin"}) == {"PATH": "/bin"}
    assert isa.missing("avx2", {"ATEN_CPU_CAPABILITY": "avx2"}) == {
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
    }
    assert "fbgemm limited to AVX2" in isa.isa_report("avx2", env)
    assert "fbgemm not limited" in isa.isa_report("native", {})


def test_cpu_flags_of_x86_and_arm(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma avx512f\n\nprocessor\t: 1\nflags\t\t: avx2\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes asimddp\n")
    assert isa.cpu_flags(str(x86)) == ["avx2", "fma", "avx512f"]
    assert isa.cpu_flags(str(arm)) == ["asimd", "asimddp"]
    assert isa.cpu_flags(str(tmp_path / "missing")) == []


SCRIPT = """
import os, sys
sys.path.insert(0, {root!r})
{early}
from bench.isa import apply_isa
apply_isa("avx2")
import torch
print(torch.backends.cpu.get_cpu_capability(), *[os.environ.get(k, "-") for k in {limits!r}])
"""


@pytest.mark.parametrize("torch_first", [False, True], ids=["set-before-torch", "re-exec-after-torch"])
def test_apply_isa_reaches_torch_in_a_fresh_process(tmp_path, torch_first):
    """Without torch loaded the variables are set in place; with torch already loaded the process re-executes
    itself with them (a library reads its variable once, when it loads)."""
    script = tmp_path / "probe.py"
    early = "import torch" if torch_first else ""
    script.write_text(SCRIPT.format(root=str(ROOT), early=early, limits=LIMITS))
    env = {k: v for k, v in isa.isa_env("native").items() if k not in LIMITS}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    capability, *values = out.stdout.split()
    assert values == ["avx2", "AVX2", "AVX2"]
    assert capability in ("AVX2", "DEFAULT")  # DEFAULT on a CPU without AVX2 (ARM)


BENCHMARKS = (
    "bench_cpu",
    "bench_engine",
    "bench_step",
    "bench_server",
    "bench_voices",
    "describe_latency",
    "load_phases",
)


@pytest.mark.parametrize(
    "name", BENCHMARKS + ("reply_consistency", "cpu_worker", "kernels_4bit", "int8_recovery")
)
def test_every_engine_benchmark_takes_isa(name):
    """Each benchmark that runs the engine builds its parser with add_isa_argument and applies it."""
    source = (ROOT / "bench" / f"{name}.py").read_text()
    assert "add_isa_argument(" in source
    assert "apply_isa(args.isa)" in source or "isa_env(args.isa)" in source
    parser = argparse.ArgumentParser()
    isa.add_isa_argument(parser)
    assert parser.parse_args(["--isa", "avx2"]).isa == "avx2"
