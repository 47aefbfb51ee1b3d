"""GPU vendor detection (fake filesystem roots, no torch import) and ROCm environment tuning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wyoming_qwen3tts.platform_env import ROCM_ENV, apply_platform_env, detect_gpu_vendor

ROOT = Path(__file__).resolve().parents[1]


def _no_tools(name: str):
    return None


def _root_with(tmp_path: Path, *paths: str) -> Path:
    for rel in paths:
        (tmp_path / rel).mkdir(parents=True, exist_ok=True)
    return tmp_path


def test_rocm_values_are_the_documented_ones():
    assert ROCM_ENV == {
        "GPU_MAX_HW_QUEUES": "1",
        "MIOPEN_FIND_MODE": "FAST",
        "TORCH_ROCM_AOTRITON_ENABLE_EXPERIMENTAL": "1",
        "FLASH_ATTENTION_TRITON_AMD_ENABLE": "TRUE",
    }


def test_amd_sets_all_four():
    env: dict[str, str] = {"PATH": "/bin"}
    applied = apply_platform_env(env, vendor="amd")
    assert applied == ROCM_ENV
    assert env == {"PATH": "/bin", **ROCM_ENV}


def test_user_values_are_never_overridden():
    env = {"GPU_MAX_HW_QUEUES": "4", "MIOPEN_FIND_MODE": ""}  # even an empty value counts as set
    applied = apply_platform_env(env, vendor="amd")
    assert env["GPU_MAX_HW_QUEUES"] == "4" and env["MIOPEN_FIND_MODE"] == ""
    assert applied == {
        "TORCH_ROCM_AOTRITON_ENABLE_EXPERIMENTAL": "1",
        "FLASH_ATTENTION_TRITON_AMD_ENABLE": "TRUE",
    }
    assert apply_platform_env(env, vendor="amd") == {}  # idempotent


@pytest.mark.parametrize("vendor", ["nvidia", None])
def test_other_vendors_set_nothing(vendor):
    env: dict[str, str] = {}
    assert apply_platform_env(env, vendor=vendor) == {} and env == {}


@pytest.mark.parametrize(
    "paths, expected",
    [
        ((), None),
        (("dev/kfd",), "amd"),
        (("sys/module/amdgpu",), "amd"),
        (("proc/driver/nvidia",), "nvidia"),
        (("dev/nvidiactl",), "nvidia"),
    ],
)
def test_detect_from_driver_files(tmp_path, paths, expected):
    root = _root_with(tmp_path, *paths)
    assert detect_gpu_vendor(root=root, which=_no_tools, torch_tag="cpu") == expected


def test_torch_build_decides_first(tmp_path):
    root = _root_with(tmp_path, "proc/driver/nvidia", "dev/kfd")
    assert detect_gpu_vendor(root=root, which=_no_tools, torch_tag="rocm6.2") == "amd"
    assert detect_gpu_vendor(root=root, which=_no_tools, torch_tag="cu124") == "nvidia"
    assert detect_gpu_vendor(root=root, which=_no_tools, torch_tag="") == "nvidia"


@pytest.mark.parametrize(
    "tool, expected", [("nvidia-smi", "nvidia"), ("rocminfo", "amd"), ("amd-smi", "amd")]
)
def test_detect_from_tools(tmp_path, tool, expected):
    def which(name: str):
        return f"/usr/bin/{name}" if name == tool else None

    assert detect_gpu_vendor(root=tmp_path, which=which, torch_tag="") == expected


def test_detection_does_not_import_torch():
    code = (
        "import sys; from wyoming_qwen3tts.platform_env import detect_gpu_vendor, apply_platform_env; "
        "detect_gpu_vendor(); apply_platform_env({}); print('torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


# -- CPU threading (issue 14: graceful under contention) -----------------------------------------------------


def test_cpu_env_sets_a_short_openmp_spin_and_respects_the_user():
    from wyoming_qwen3tts.platform_env import CPU_ENV, apply_cpu_env

    env: dict[str, str] = {}
    assert apply_cpu_env(env) == CPU_ENV == {"GOMP_SPINCOUNT": "10000"}
    assert apply_cpu_env(env) == {}  # idempotent
    assert apply_cpu_env({"GOMP_SPINCOUNT": "300000"}) == {}
    assert apply_cpu_env({"OMP_WAIT_POLICY": "ACTIVE"}) == {}  # an explicit wait policy wins


def test_entry_point_sets_the_cpu_env_before_torch_loads():
    code = (
        "import os, sys; os.environ.pop('GOMP_SPINCOUNT', None); os.environ.pop('OMP_WAIT_POLICY', None); "
        "from wyoming_qwen3tts.__main__ import main; rc = main(['--slots', '0']); "
        "print(rc, os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    # a bad option exits 1 (issue 28)
    assert proc.stdout.split() == ["1", "10000", "False"], proc.stderr
