"""The time stretcher lives in core/tempo.py (the Wyoming path uses it too); re-exported for the HTTP API."""

from ..core.tempo import MAX_SPEED, MIN_SPEED, TimeStretch, stretch

__all__ = ["MAX_SPEED", "MIN_SPEED", "TimeStretch", "stretch"]
