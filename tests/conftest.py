"""Shared pytest fixtures: tiny random Qwen3-TTS checkpoints (real layout) and the reference goldens.

The tiny checkpoints are built once per session with seed 0 / float32, exactly as
tests/reference/make_goldens.py built them, so ``golden_manifest`` sha256 sums must match.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from tests.fixtures.checkpoint_builder import build_checkpoint

_LOGGER = logging.getLogger(__name__)

GOLDENS_DIR = Path(__file__).parent / "goldens"


@pytest.fixture(scope="session", autouse=True)
def _limit_threads() -> None:
    # The CI/dev machines have 2 cores; the goldens were produced with 2 threads as well.
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Factory: ``tiny_checkpoint("base")`` -> Path, built once per session and model type."""
    cache: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("tiny_checkpoints")

    def get(model_type: str) -> Path:
        if model_type not in cache:
            cache[model_type] = build_checkpoint(
                root / model_type, model_type, "tiny", seed=0, dtype="float32"
            )
        return cache[model_type]

    return get


@pytest.fixture(scope="session")
def tiny_custom_voice(tiny_checkpoint: Callable[[str], Path]) -> Path:
    return tiny_checkpoint("custom_voice")


@pytest.fixture(scope="session")
def tiny_base(tiny_checkpoint: Callable[[str], Path]) -> Path:
    return tiny_checkpoint("base")


@pytest.fixture(scope="session")
def tiny_voice_design(tiny_checkpoint: Callable[[str], Path]) -> Path:
    return tiny_checkpoint("voice_design")


@pytest.fixture(scope="session")
def goldens_dir() -> Path:
    return GOLDENS_DIR


@pytest.fixture(scope="session")
def golden_manifest() -> dict[str, Any]:
    return json.loads((GOLDENS_DIR / "manifest.json").read_text())


def checkpoint_matches_manifest(path: Path, model_type: str, manifest: dict[str, Any]) -> list[str]:
    """Return the files of a built checkpoint whose sha256 differs from the goldens manifest."""
    expected = manifest["checkpoints"][model_type]
    return [
        rel
        for rel, digest in expected.items()
        if hashlib.sha256((path / rel).read_bytes()).hexdigest() != digest
    ]


@pytest.fixture(scope="session")
def golden() -> Callable[[str], dict[str, Any]]:
    """Loader: ``golden("cv_greedy_lang_spk")`` -> dict of numpy arrays (+ parsed ``meta``/``case``)."""

    def load(name: str) -> dict[str, Any]:
        with np.load(GOLDENS_DIR / f"{name}.npz", allow_pickle=False) as data:
            out: dict[str, Any] = {k: data[k] for k in data.files}
        for key in ("meta_json", "case_json"):
            if key in out:
                out[key[:-5]] = json.loads(str(out.pop(key)))
        return out

    return load
