"""A window on the runner's numbers for tests: the parity tests record the prefill embeddings and the
talker and code-predictor logits of every step with it (tests/fixtures/recorder.py).

The engine runs with the no-op `StepHook` below; a test installs a subclass as `engine.runner.hook`. The
hot path calls the hook unconditionally (no test-only branch), and asks the code predictor for its logits
only when the hook says it wants them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch

if TYPE_CHECKING:
    from .sequence import Sequence


class StepHook:
    wants_predictor_logits = False  # the code predictor keeps its logits only when asked (a copy per group)

    def on_prefill(self, seq: "Sequence", prefill: torch.Tensor) -> None:
        """The prompt's prefill rows [L, H] as fed to the talker."""

    def on_talker_logits(self, seqs: list["Sequence"], logits: torch.Tensor, first_row: int) -> None:
        """Raw codebook-0 logits [n, V] of table rows first_row..first_row+n-1, for `seqs` (which sample)."""

    def on_predictor_logits(self, seqs: list["Sequence"], logits: Optional[torch.Tensor]) -> None:
        """The code predictor's logits [rows, 15, V] of this frame (None unless wants_predictor_logits)."""


NO_HOOK = StepHook()
