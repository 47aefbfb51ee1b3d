"""Loading builds the codec decoder without random init (engine/loading.py, issue 24)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wyoming_qwen3tts.engine.loading import _INITS, _no_random_init


def test_modules_built_without_random_init_keep_their_pages_untouched():
    before = {name: getattr(nn.init, name) for name in _INITS}
    probe = torch.zeros(64, 64)
    with _no_random_init():
        nn.init.kaiming_uniform_(probe, a=5**0.5)
        nn.init.normal_(probe)
        layer = nn.Linear(8, 8)  # built as usual, its random init skipped
    assert torch.count_nonzero(probe) == 0
    assert isinstance(layer.weight, nn.Parameter) and layer.weight.shape == (8, 8)
    assert {name: getattr(nn.init, name) for name in _INITS} == before
    nn.init.normal_(probe)
    assert torch.count_nonzero(probe) > 0


def test_random_init_comes_back_after_an_error():
    before = nn.init.uniform_
    with pytest.raises(RuntimeError):
        with _no_random_init():
            raise RuntimeError("load failed")
    assert nn.init.uniform_ is before
