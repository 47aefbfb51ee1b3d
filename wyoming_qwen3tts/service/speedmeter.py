"""How fast an engine generates and how long its segments run (playback pacing, service/pacing.py).

:class:`RateMeter` (one per loaded engine) keeps the recent generation speed, the first-chunk latency and
a per-language fit of segment length against text length; :class:`SegmentSpeed` is one segment's own
speed. Both learn from what the release (service/release.py) sees on the real stream.
"""

from __future__ import annotations

import collections
import weakref
from typing import Any, Optional

WINDOW_S = 6.0  # the meter's memory: the last this many seconds of generated audio
MIN_OBSERVED_S = 0.3  # audio to have seen before the meter gives a speed
PARTS_REMEMBERED = 24  # finished segments per language the length fit uses
SPREAD = (1.1, 1.3, 2.0)  # a segment's length over its fit: headroom over the worst seen, before any, most

# Seconds of speech per character at a normal pace (before the engine taught us its own figure).
SPEECH_S_PER_CHAR = {"chinese": 0.22, "japanese": 0.13, "korean": 0.15}
DEFAULT_S_PER_CHAR = 0.07


class RateMeter:
    """One engine's recent generation speed and its seconds of audio per character, per language."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self.samples: "collections.deque[tuple[float, float]]" = collections.deque()  # (audio s, wall s)
        self.audio_s = 0.0
        self.wall_s = 0.0
        self.parts: dict[str, "collections.deque[tuple[int, float]]"] = {}  # (chars, seconds) per language
        self.seeded: Optional[float] = None  # from the warm-up at load: for cutting until measured
        self.latency: Optional[float] = None  # wall seconds from a segment's prefill to its first chunk
        self.misses: "collections.deque[float]" = collections.deque(maxlen=16)  # actual / fitted length
        self.bounded: "collections.deque[bool]" = collections.deque(maxlen=8)  # segments that hit the bound

    def seed(self, audio_s: float, wall_s: float) -> None:
        """The warm-up synthesis made ``audio_s`` in ``wall_s`` (prefill and first calls included, so on
        the low side): where to cut an engine's first reply's sentences, before anything is measured."""
        if audio_s > 0 and wall_s > 0:
            self.seeded = audio_s / wall_s

    def observe(self, audio_s: float, wall_s: float) -> None:
        """``audio_s`` seconds of one stream's audio were made in ``wall_s`` seconds."""
        if audio_s <= 0 or wall_s < 0:
            return
        self.samples.append((audio_s, wall_s))
        self.audio_s += audio_s
        self.wall_s += wall_s
        while len(self.samples) > 1 and self.audio_s - self.samples[0][0] >= self.window_s:
            old_audio, old_wall = self.samples.popleft()
            self.audio_s -= old_audio
            self.wall_s -= old_wall

    @property
    def rate(self) -> Optional[float]:
        """Audio seconds per wall second over the window; None until enough was seen."""
        if self.audio_s < MIN_OBSERVED_S:
            return None
        return self.audio_s / max(self.wall_s, 1e-6)

    def observe_latency(self, seconds: float) -> None:
        """A segment's first chunk came ``seconds`` after its prefill (the start every segment pays)."""
        if seconds >= 0:
            self.latency = seconds if self.latency is None else 0.5 * self.latency + 0.5 * seconds

    def learn(self, language: Optional[str], chars: int, seconds: float, at_bound: bool = False) -> None:
        """A finished segment of ``chars`` characters gave ``seconds`` of audio (``at_bound``: it ran to
        the engine's frame bound instead of ending by itself)."""
        if chars <= 0 or seconds <= 0:
            return
        self.bounded.append(at_bound)
        key = (language or "auto").lower()
        if key in self.parts:
            self.misses.append(seconds / max(self.part_seconds(language, chars), 1e-3))
        self.parts.setdefault(key, collections.deque(maxlen=PARTS_REMEMBERED)).append((chars, seconds))

    @property
    def runs_to_bound(self) -> bool:
        """Most recent segments ran to their frame bound (random test weights never end by themselves):
        then the bound, not the text, is a segment's length."""
        return len(self.bounded) >= 3 and sum(self.bounded) >= 0.75 * len(self.bounded)

    @property
    def spread(self) -> float:
        """How much longer than the fit a segment may turn out (the worst of the recent ones): a segment is
        planned and held for this much, so that one a little longer than its text suggests does not run
        dry at its end."""
        if not self.misses:
            return SPREAD[1]
        return min(max(max(self.misses) * SPREAD[0], SPREAD[0]), SPREAD[2])

    def length_fit(self, language: Optional[str]) -> tuple[float, float]:
        """``(fixed, per_char)``: a segment of ``c`` characters gives about ``fixed + per_char * c`` seconds.

        Learned from the engine's recent segments by least squares, so the part of a segment's length that
        does not grow with its text (a breath, the bound's slack on random test weights) is not spread over
        the characters of long sentences and then missed on short pieces; a plain ratio until the lengths
        seen vary enough, the language's speech pace before anything was seen."""
        key = (language or "auto").lower()
        seen = self.parts.get(key)
        if not seen:
            return 0.0, SPEECH_S_PER_CHAR.get(key, DEFAULT_S_PER_CHAR)
        n = len(seen)
        sum_c = sum(c for c, _ in seen)
        sum_s = sum(s for _, s in seen)
        ratio = sum_s / sum_c
        mean_c, mean_s = sum_c / n, sum_s / n
        var = sum((c - mean_c) ** 2 for c, _ in seen)
        if n < 3 or var < (0.25 * mean_c) ** 2 * n:  # too alike to tell the fixed part from the rest
            return 0.0, ratio
        slope = sum((c - mean_c) * (s - mean_s) for c, s in seen) / var
        if slope <= 0.2 * ratio:
            return 0.0, ratio
        fixed = min(max(mean_s - slope * mean_c, 0.0), 0.5 * mean_s)
        return fixed, (sum_s - fixed * n) / sum_c

    def part_seconds(self, language: Optional[str], chars: int) -> float:
        """Expected audio seconds of a segment of ``chars`` characters."""
        fixed, per_char = self.length_fit(language)
        return fixed + per_char * max(chars, 0)

    def chars_for(self, language: Optional[str], seconds: float) -> int:
        """The most characters whose segment is expected to last at most ``seconds``."""
        fixed, per_char = self.length_fit(language)
        return int(max(seconds - fixed, 0.0) / per_char)

    def expected_seconds(self, language: Optional[str], chars: int, bound_s: Optional[float]) -> float:
        """The longest a segment of ``chars`` characters is expected to run (engine seconds): its fit with
        the spread's headroom, or its bound where this engine's segments run to it; never above the bound."""
        if bound_s is not None and self.runs_to_bound:
            return bound_s
        guess = self.part_seconds(language, chars) * self.spread
        return guess if bound_s is None else min(guess, bound_s)

    def seconds_per_char(self, language: Optional[str]) -> float:
        """Audio seconds per character of long segments (the fit's slope)."""
        return self.length_fit(language)[1]


_METERS: "weakref.WeakKeyDictionary[Any, RateMeter]" = weakref.WeakKeyDictionary()


def meter_for(engine: Any) -> RateMeter:
    """The meter of a loaded engine (forgotten with the engine)."""
    meter = _METERS.get(engine)
    if meter is None:
        meter = _METERS[engine] = RateMeter()
    return meter


class SegmentSpeed:
    """One segment's own generation speed: its first chunk timed from its prefill, then chunk to chunk.
    Trusted over the engine's meter once it has seen MIN_OBSERVED_S (the meter may still remember a
    faster moment); before that the slower of the two decides."""

    def __init__(self) -> None:
        self.audio_s = 0.0
        self.wall_s = 0.0
        self.last: Optional[float] = None

    def chunk(self, engine_s: float, made: float, since: Optional[float]) -> Optional[float]:
        """A chunk of ``engine_s`` made at ``made``; returns the wall seconds it took when timed chunk to
        chunk (what the engine's meter learns from), else None."""
        if engine_s <= 0:
            return None
        first = self.last is None
        start, self.last = (since if first else self.last), made
        if start is None:
            return None
        self.audio_s += engine_s
        self.wall_s += max(made - start, 1e-6)
        return None if first else made - start  # the first chunk also pays for the decoder's start

    def rate(self, meter_rate: Optional[float]) -> Optional[float]:
        own = self.audio_s / self.wall_s if self.wall_s > 0 else None
        if own is None or (self.audio_s < MIN_OBSERVED_S and meter_rate is not None):
            return meter_rate if own is None else min(own, meter_rate)  # type: ignore[type-var]
        return own
