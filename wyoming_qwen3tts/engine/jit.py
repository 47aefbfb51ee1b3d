"""TorchScript-traced decode steps for CPU: the same ops, without the Python interpreter between them.

One decode step of a stack is ~25 small ops per layer around 4 GEMVs. On a CPU the GEMVs stream weights
at memory speed, but each small op also costs Python and dispatcher time; a trace replays the recorded ops
from C++. Measured on the 2-core benchmark machine (0.6B, steady state), each gains ~7 % per frame:
* the code predictor (5 small layers, 15 steps a frame): its first call per batch size costs ~0.5 s, so it is
  traced by default on CPU (`tracing_default`);
* the talker (28 layers): its first call per batch size costs 10-20 s of tracing, freezing and graph
  optimisation, stalling every request on the engine thread - and a server meets new batch sizes whenever
  concurrency rises. Off unless `Engine.load(trace=True)` (e.g. a benchmark at a fixed batch size).
`torch.compile` gained less and needs a C++ compiler at run time.

A trace is taken per batch size on the first call (the tracing run is the step itself: its KV writes and
output are the real ones), from `DecoderStack.decode_rows`, whose sizes all come from input shapes; so
one trace serves every position and attention length. The code predictor's 2-position prefill is traced
the same way. It captures the KV cache and the weights by
reference, so it belongs to one (stack, cache) pair. Anything unexpected falls back to eager, for good.
"""

from __future__ import annotations

import logging
import warnings
from typing import Callable, Optional

import torch
from torch import nn

from .layers import DecoderStack, KVCache

_LOGGER = logging.getLogger(__name__)

Step = Callable[..., torch.Tensor]


class _Rows(nn.Module):
    def __init__(self, stack: DecoderStack, cache: KVCache) -> None:
        super().__init__()
        self.stack = stack
        self.cache = cache

    def forward(self, x: torch.Tensor, positions: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
        return self.stack.decode_rows(x, self.cache, positions, span)


class _Prefill(nn.Module):
    """Prefill of rows 0..n-1 from position 0, returning the last position's hidden state."""

    def __init__(self, stack: DecoderStack, cache: KVCache) -> None:
        super().__init__()
        self.stack = stack
        self.cache = cache

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stack.prefill(x, self.cache, 0)[:, -1]


class Traced:
    """`module(*tensors)` for one (stack, cache) pair, traced per input shape key on first use."""

    def __init__(
        self, module: nn.Module, stack: DecoderStack, enabled: bool, key: Callable[..., tuple]
    ) -> None:
        self.module = module
        self.stack = stack
        self.enabled = enabled
        self.key = key
        self._traces: dict[tuple, Step] = {}
        self._version: Optional[int] = None

    @property
    def cache(self) -> KVCache:
        cache: KVCache = self.module.cache  # type: ignore[assignment]  # nn.Module attribute: _Rows/_Prefill
        return cache

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return self.module(*args)
        if self._version != self.stack.version:  # norms switched, weights rewritten: trace again
            self._traces.clear()
            self._version = self.stack.version
        key = self.key(*args)
        fn = self._traces.get(key)
        if fn is not None:
            return fn(*args)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer warnings
                traced = torch.jit.trace(self.module, args, check_trace=False)
                # Freezing inlines the weights and drops the module-attribute lookups: 3x fewer nodes.
                fn = torch.jit.freeze(traced.eval())
        except Exception:  # an op the tracer cannot record: eager is exact too, just slower
            _LOGGER.warning("Tracing a decode step failed; running it eagerly", exc_info=True)
            self.enabled = False
            return self.module(*args)
        self._traces[key] = fn
        # Re-running writes the same K/V at the same positions, so the traced run gives the real output.
        return fn(*args)


def traced_decode(stack: DecoderStack, cache: KVCache, enabled: bool = True) -> Traced:
    """`stack.decode_rows(x, cache, positions, span)`, one trace per batch size (sizes from shapes)."""
    return Traced(_Rows(stack, cache), stack, enabled, key=lambda x, positions, span: (x.shape[0],))


def traced_prefill(stack: DecoderStack, cache: KVCache, enabled: bool = True) -> Traced:
    """`stack.prefill(x, cache, 0)[:, -1]`, one trace per input shape (the code predictor's [B, 2, H])."""
    return Traced(_Prefill(stack, cache), stack, enabled, key=lambda x: tuple(x.shape))


def tracing_default(device: torch.device) -> bool:
    """Whether the code predictor's steps are traced by default: on CPU (cheap to trace, see above)."""
    return device.type == "cpu"
