"""Shared vocabulary: names and defaults that several layers use, declared once (issue 26).

Only the engine's share so far (its `LoadOptions` defaults must equal the server's settings); issue 26a
grows this module into the one vocabulary of enums and limits.
"""

from __future__ import annotations

QUANTIZE_MODES = ("auto", "none", "int8", "int4")  # weight format of the talker and code predictor
DEFAULT_QUANTIZE = "auto"  # the fastest mode passing the quality gates on this hardware (engine/policy.py)
DEFAULT_SLOTS = 4  # KV-cache slots of an engine: requests it decodes together
