"""Checks of the delivery settings (speed, pauses, normalization, seed, voice fallback, idle unload)."""

from __future__ import annotations

import math
from typing import Any, Optional

from ..core.vocab import MAX_SPEED, MIN_SPEED  # the server's --speed

MAX_SILENCE_S = 5.0
MAX_PREBUFFER_S = 30.0


def _number(value: Any, from_text: bool) -> float:
    if from_text and isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _check_speed(value: Any, from_text: bool) -> float:
    speed = _number(value, from_text)
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise ValueError(f"expected a speed in {MIN_SPEED}..{MAX_SPEED}, got {value!r}")
    return speed


def _check_silence(value: Any, from_text: bool) -> float:
    seconds = _number(value, from_text)
    if not 0.0 <= seconds <= MAX_SILENCE_S:
        raise ValueError(f"expected seconds in 0..{MAX_SILENCE_S:g}, got {value!r}")
    return seconds


def _check_seed(value: Any, from_text: bool) -> Optional[int]:
    if value is None:
        return None
    if from_text and isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"expected an integer seed, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError(f"expected an integer seed >= 0, got {value!r}")
    return value


def _check_unload_after(value: Any, from_text: bool) -> Optional[float]:
    """Seconds idle before the models are unloaded; None or 0 = never."""
    if value is None:
        return None
    seconds = _number(value, from_text)
    if seconds < 0:
        raise ValueError(f"expected seconds >= 0 (0 = never), got {value!r}")
    return seconds or None


def _check_prebuffer(value: Any, from_text: bool) -> Any:
    """auto, off, or seconds of audio held back per segment (0..MAX_PREBUFFER_S)."""
    if isinstance(value, str) and value.strip().lower() in ("auto", "off"):
        return value.strip().lower()
    if value is False:
        return "off"
    try:
        seconds = _number(value, True)
    except ValueError:
        raise ValueError(f"expected auto, off or seconds, got {value!r}") from None
    if not 0.0 <= seconds <= MAX_PREBUFFER_S:
        raise ValueError(f"expected auto, off or seconds in 0..{MAX_PREBUFFER_S:g}, got {value!r}")
    return seconds


def _check_max_silence(value: Any, from_text: bool) -> float:
    seconds = _number(value, from_text)
    if not 0.5 <= seconds <= MAX_PREBUFFER_S:
        raise ValueError(f"expected seconds in 0.5..{MAX_PREBUFFER_S:g}, got {value!r}")
    return seconds


def _check_slowdown(value: Any, from_text: bool) -> Optional[str]:
    if value is None:
        return None
    from ..core.slowdown import Slowdown  # no torch

    return str(Slowdown.parse(str(value)))
