"""A debug slow-down of generation (``--debug-slowdown``): emulates a host slower than this one, for the
playback tests and the playback simulator (bench/playback_sim.py). Never for production use.

``FACTOR`` (e.g. ``4``): every decode step takes FACTOR times as long as it did. ``RATEx`` (e.g.
``0.25x``): every decode step (one 80 ms frame per request) takes at least 80 ms / RATE, i.e. generation
runs at RATE x real time at most, whatever this host's own speed (deterministic on a fast host).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

FRAME_S = 0.08  # seconds of audio per decode step (12.5 Hz codec)


@dataclass(frozen=True)
class Slowdown:
    factor: float = 1.0  # each step's own time multiplied by this
    realtime: Optional[float] = None  # else: steps padded to FRAME_S / realtime

    @classmethod
    def parse(cls, text: str) -> "Slowdown":
        """``"4"`` -> factor 4, ``"0.25x"`` -> 0.25x real time; ValueError otherwise."""
        value = str(text).strip().lower()
        try:
            number = float(value[:-1] if value.endswith("x") else value)
        except ValueError:
            raise ValueError(f"expected FACTOR or RATEx (e.g. 4 or 0.25x), got {text!r}") from None
        if value.endswith("x"):
            if not 0.01 <= number <= 100:
                raise ValueError(f"expected a real-time rate in 0.01x..100x, got {text!r}")
            return cls(realtime=number)
        if not 1.0 <= number <= 1000:
            raise ValueError(f"expected a slow-down factor in 1..1000, got {text!r}")
        return cls(factor=number)

    def delay(self, elapsed: float) -> float:
        """Seconds to sleep after a step that took ``elapsed`` seconds."""
        if self.realtime is not None:
            return max(0.0, FRAME_S / self.realtime - elapsed)
        return max(0.0, (self.factor - 1.0) * elapsed)

    def __str__(self) -> str:
        return f"{self.realtime:g}x" if self.realtime is not None else f"{self.factor:g}"
