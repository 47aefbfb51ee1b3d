"""Preallocated KV cache of one decoder stack, with the two write paths of a decode step.

`append` (every row at the same position, e.g. the code predictor's 16-position cache) reuses memoised
views; `scatter` (rows at different positions) is one index_put per tensor and takes every size from its
inputs' shapes, so that traced steps (jit.py) serve any position and batch size.
"""

from __future__ import annotations

import mmap
from typing import Optional

import numpy as np
import torch


def _zeros(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """Zeros that cost memory only where written, on CPU: a fresh anonymous mapping is mapped page by page
    on first touch, so a 2048-position cache of 4 slots holds only the positions requests actually reached
    (torch.zeros would write, and so commit, all of it: ~1 GB for 0.6B in fp32).

    Not numpy's zeros: numpy marks large arrays MADV_HUGEPAGE, so with transparent huge pages in `madvise`
    mode (the Debian/Ubuntu default) one write commits 2 MB, and writing each head's first positions made
    the whole cache resident (measured: +455 MB at the first prefill of one fp32 0.6B slot)."""
    if torch.device(device).type != "cpu":
        return torch.zeros(shape, dtype=dtype, device=device)
    count = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
    if count == 0:
        return torch.zeros(shape, dtype=dtype)
    buffer = mmap.mmap(-1, count)  # anonymous, zero-filled, 4 KB pages; the tensor keeps it alive
    return torch.frombuffer(buffer, dtype=torch.uint8).view(dtype).view(shape)


class KVCache:
    """Preallocated keys/values for every layer of one stack: [layers, slots, kv_heads, max_len, head_dim].

    A slot belongs to one request for its whole life; rows of a decode batch are slots 0..B-1, so the
    attention reads a plain view of the cache (no gather) and the shapes stay static for graph capture.
    """

    def __init__(
        self,
        layers: int,
        slots: int,
        kv_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        shape = (layers, slots, kv_heads, max_len, head_dim)
        self.k = _zeros(shape, dtype, device)
        self.v = _zeros(shape, dtype, device)
        self.max_len = max_len
        self.slots = slots
        self.span = torch.arange(max_len, device=device)  # span[:L] carries an attention length as a shape
        self.rows = torch.arange(slots, device=device)
        self._layers = list(zip(self.k.unbind(0), self.v.unbind(0)))
        # Small caches (the code predictor's 16 positions) keep their per-(layer, rows, position) views.
        self._views: Optional[dict] = {} if max_len <= 64 else None

    @property
    def bytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()

    def append(
        self, layer: int, rows: int, at: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Writes k, v [rows, kv_heads, D] at position `at` of slots 0..rows-1; returns the keys and values
        of positions 0..at."""
        key = (layer, rows, at)
        views = self._views.get(key) if self._views is not None else None
        if views is None:
            ks, vs = self._layers[layer]
            views = (ks[:rows, :, at], vs[:rows, :, at], ks[:rows, :, : at + 1], vs[:rows, :, : at + 1])
            if self._views is not None:
                self._views[key] = views
        views[0].copy_(k)
        views[1].copy_(v)
        return views[2], views[3]

    def scatter(
        self, layer: int, positions: torch.Tensor, length: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Row i writes at positions[i]; returns the keys and values of positions 0..length-1."""
        rows = positions.shape[0]
        index = self.rows.narrow(0, 0, rows)
        ks, vs = self._layers[layer]
        ks[index, :, positions] = k
        vs[index, :, positions] = v
        return ks.narrow(0, 0, rows).narrow(2, 0, length), vs.narrow(0, 0, rows).narrow(2, 0, length)
