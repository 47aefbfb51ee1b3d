"""Diagnostics that measure the engine from outside (not part of serving)."""
