"""The time stretcher lives in core/tempo.py (the Wyoming path uses it too); re-exported for the HTTP API."""

from ..core.tempo import TimeStretch, stretch

__all__ = ["TimeStretch", "stretch"]
