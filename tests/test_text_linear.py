"""Text cleanup and segmentation do work linear in the input (issue 25): a Wyoming client must not be able
to hold the event loop with a few thousand pathological characters (``[`` x 5,000 used to take 0.45 s of
loop time: every ``[`` started a scan to the end of the line).

The work is counted, not timed: every module-level pattern of textclean.py and segmenter.py is wrapped in a
proxy that counts the characters each call hands to the regex engine (from ``pos`` to ``endpos``), so a
rescan of the buffer per fragment or per match shows as super-linear growth. Each case cleans and segments
the same pathological unit repeated to N and 4 N characters; the work must grow at most 6 x (linear: 4 x,
quadratic: 16 x). The units that used to backtrack quadratically inside the engine are fixed by
construction (link and emphasis spans stop at the next delimiter, whitespace runs are entered once) and
are among the examples, with a bound on the engine's calls.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import wyoming_qwen3tts.service.segmenter as segmenter
import wyoming_qwen3tts.service.textclean as textclean

TOKENS = [
    "[",
    "]",
    "](",
    "![",
    "(",
    ")",
    "[1]",
    "**",
    "*",
    "_",
    "__",
    "~~",
    "`",
    "```",
    "#",
    "# ",
    ">",
    "|",
    "- ",
    " ",
    "  ",
    "\n",
    ".",
    "...",
    "!",
    "?",
    ",",
    ":",
    '"',
    "'",
    "“",
    "”",
    "<b>",
    "</b>",
    "&amp;",
    "&#",
    "->",
    "http://",
    "https://www.",
    "www.",
    "a.b",
    "/x?y=1",
    "😀",
    "👍🏽",
    "\u200d",
    "中文",
    "。",
    "日本語",
    "한국어",
    "Привет",
    "word",
    "Dr.",
    "3.14",
    "1,000",
    "10:45",
    "e.g.",
    "U.S.",
    "\t",
]


class Counting:
    """Proxy of a compiled pattern: counts the characters handed to the engine."""

    def __init__(self, pattern: re.Pattern, meter: dict[str, int]) -> None:
        self._pattern, self._meter = pattern, meter

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._pattern, name)
        if not callable(attr) or name not in ("match", "fullmatch", "search", "finditer", "findall", "sub"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            string = args[1] if name == "sub" else args[0]
            if isinstance(string, str):
                pos = kwargs.get("pos", args[1] if name != "sub" and len(args) > 1 else 0)
                end = kwargs.get("endpos", args[2] if name != "sub" and len(args) > 2 else len(string))
                self._meter["chars"] += max(0, min(end, len(string)) - pos)
            self._meter["calls"] += 1
            return attr(*args, **kwargs)

        return call


@pytest.fixture(scope="module")
def meter():
    counts = {"chars": 0, "calls": 0}
    patched = pytest.MonkeyPatch()
    for module in (textclean, segmenter):
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern):
                patched.setattr(module, name, Counting(value, counts))
    yield counts
    patched.undo()


def work(meter: dict[str, int], text: str, fragment: int) -> tuple[int, int]:
    meter["chars"] = meter["calls"] = 0
    textclean.clean_text(text)
    segmenter.split_text(text)
    stream = segmenter.StreamSegmenter()
    for start in range(0, len(text), fragment):
        stream.feed(text[start : start + fragment])
    stream.finish()
    return meter["chars"], meter["calls"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    unit=st.lists(st.sampled_from(TOKENS), min_size=1, max_size=6).map("".join), fragment=st.integers(1, 7)
)
@example(unit="[", fragment=3)
@example(unit="[1,", fragment=1)
@example(unit="**a ", fragment=2)
@example(unit="_a ", fragment=5)
@example(unit="# ", fragment=1)
@example(unit="`", fragment=3)
@example(unit="http://a", fragment=4)
def test_cleanup_and_segmentation_work_is_linear(meter, unit: str, fragment: int) -> None:
    small = unit * (1000 // len(unit) + 1)
    large = unit * (4000 // len(unit) + 1)
    chars_small, calls_small = work(meter, small, fragment)
    chars_large, calls_large = work(meter, large, fragment)
    assert chars_large <= 6 * chars_small + 20_000, (unit, chars_small, chars_large)
    assert calls_large <= 6 * calls_small + 200, (unit, calls_small, calls_large)
