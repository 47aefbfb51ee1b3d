"""GPU vendor detection and environment tuning (GPU and CPU) that must happen BEFORE torch is imported.

ROCm reads these variables once, when torch initialises HIP, so setting them later does nothing. Detection
therefore never imports torch: it looks at the installed torch build tag and at driver files and tools.
"""

from __future__ import annotations

import logging
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import Callable, MutableMapping, Optional

_LOGGER = logging.getLogger(__name__)

# Values for AMD GPUs under ROCm. A value the user already set always wins.
ROCM_ENV: dict[str, str] = {
    # One hardware queue: the GPU can drop to idle clocks between requests (otherwise it idles hot).
    "GPU_MAX_HW_QUEUES": "1",
    # MIOpen's exhaustive kernel search costs seconds per new shape; FAST picks a good kernel at once.
    "MIOPEN_FIND_MODE": "FAST",
    # Enables AOTriton flash/memory-efficient SDPA kernels on consumer (RDNA) GPUs.
    "TORCH_ROCM_AOTRITON_ENABLE_EXPERIMENTAL": "1",
    # flash-attn's Triton backend on AMD (used only if flash-attn is installed).
    "FLASH_ATTENTION_TRITON_AMD_ENABLE": "TRUE",
}

# CPU threading. PyTorch's CPU wheels use GNU OpenMP, whose threads spin ~300,000 times at the end of every
# parallel region waiting for the next one. One decode frame runs thousands of small parallel regions; when
# other processes share the cores (a Home Assistant host running other add-ons), a spinning thread burns the
# time slice its partner needs, and a frame took 5.7x longer beside three busy processes on 2 cores (fair
# share: 2.5x). A short spin keeps the uncontended speed (measured: within noise) and yields under contention
# (a microbenchmark of 32 int8 GEMVs beside busy processes: 75-285 ms spinning, 20-28 ms with 10,000).
CPU_ENV: dict[str, str] = {
    "GOMP_SPINCOUNT": "10000",
}


def apply_cpu_env(environ: Optional[MutableMapping[str, str]] = None) -> dict[str, str]:
    """Sets the CPU threading variables that are not set yet (read by libgomp when torch loads)."""
    if environ is None:
        environ = os.environ
    applied = {}
    for name, value in CPU_ENV.items():
        if name not in environ and "OMP_WAIT_POLICY" not in environ:
            environ[name] = value
            applied[name] = value
    return applied


def _torch_build_tag() -> str:
    """Local version tag of the installed torch ('rocm6.2', 'cu124', 'cpu', ''), read without importing it."""
    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return ""
    return version.partition("+")[2].lower()


def detect_gpu_vendor(
    root: Path = Path("/"),
    which: Callable[[str], Optional[str]] = shutil.which,
    torch_tag: Optional[str] = None,
) -> Optional[str]:
    """'nvidia', 'amd' or None. A ROCm or CUDA torch build decides first; then driver files, then tools.

    `root`, `which` and `torch_tag` exist for tests (a fake filesystem root, tool lookup and torch build).
    """
    tag = _torch_build_tag() if torch_tag is None else torch_tag.lower()
    if tag.startswith("rocm"):
        return "amd"
    if tag.startswith("cu"):
        return "nvidia"
    if any((root / rel).exists() for rel in ("proc/driver/nvidia", "dev/nvidiactl", "dev/nvidia0")):
        return "nvidia"
    # /dev/kfd is the ROCm compute device; /sys/module/amdgpu is the loaded kernel driver.
    if any((root / rel).exists() for rel in ("dev/kfd", "sys/module/amdgpu")):
        return "amd"
    if which("nvidia-smi"):
        return "nvidia"
    if which("rocminfo") or which("rocm-smi") or which("amd-smi"):
        return "amd"
    return None


def apply_platform_env(
    environ: Optional[MutableMapping[str, str]] = None, vendor: Optional[str] = "detect"
) -> dict[str, str]:
    """Sets vendor-specific variables in `environ` (default os.environ) that are not set yet.

    `vendor` forces 'amd', 'nvidia' or None instead of detecting. Returns {name: value} of what was set.
    """
    if environ is None:
        environ = os.environ
    if vendor == "detect":
        vendor = detect_gpu_vendor()
    wanted = ROCM_ENV if vendor == "amd" else {}
    applied = {}
    for name, value in wanted.items():
        if name not in environ:
            environ[name] = value
            applied[name] = value
    _LOGGER.debug("GPU vendor: %s; environment set: %s", vendor or "none", applied or "nothing")
    return applied
