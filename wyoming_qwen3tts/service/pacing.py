"""Playback-aware release (``--prebuffer``): the decisions, free of I/O and clocks, so they can be checked
with a simulated clock (tests/test_pacing.py). service/release.py runs them on the real stream.

A listener (Home Assistant, a satellite, a browser) plays audio the moment it arrives. When the host
generates slower than real time, streaming every chunk at once gives a quarter second of speech, a stall,
another quarter second ... mid-word. Instead, per segment (a sentence, or a clause of a long one):

* the engine's recent generation speed ``r`` (audio seconds per wall second, per request stream, so
  batching and other processes on the host show) is measured by :class:`RateMeter`;
* the segment's length is estimated (:class:`Estimate`) from its text (seconds per character, learned per
  engine and language from the segments it finished), never above the engine's frame bound, and raised to
  that bound once the segment outgrows the text's estimate (random test weights always run to it);
* the listener's buffer is known from what was sent and when (:attr:`Pacer.play_end`);
* a segment's audio is held back until the listener's buffer plus the held audio covers the time the rest
  of the segment still needs: ``B + held >= R * (margin / r - 1)`` with ``R`` the audio still to generate
  (and at least the wait for the engine's next chunk). Fast hosts (``r >= margin``) hold nothing back:
  there the first audio is as early as without pacing (on a host only a few times faster than real time the
  one-frame first chunk may still leave a gap shorter than one chunk's generation, which the log counts);
* no silence may last longer than ``max_silence``: then the segment goes out anyway (counted as forced),
  and :func:`split_chars` tells the speaker to cut long sentences into clauses before synthesis.
"""

from __future__ import annotations

import collections
import weakref
from dataclasses import dataclass, field
from typing import Any, Optional

MARGIN = 1.25  # the speed may drop by 20 % during a segment without an underrun
RESERVE_S = 0.15  # plus this much audio in hand (event-loop and network jitter)
WINDOW_S = 6.0  # the meter's memory: the last this many seconds of generated audio
MIN_OBSERVED_S = 0.3  # audio to have seen before the meter gives a speed
MIN_PART_CHARS = 6  # a piece shorter than this is not worth its own segment (about one word)
PARTS_REMEMBERED = 24  # finished segments per language the length fit uses
SPREAD = (1.1, 1.3, 2.0)  # a segment's length over its fit: headroom over the worst seen, before any, most
EPS = 1e-3
WAKE_S = 0.05  # the deadline fires this much early: the event loop and the network add their delay
SMOOTH_S = 0.3  # a pause planned for the next segment stays this much below the bound
CHUNK_S = 0.32  # the engine's chunks after the first: 4 frames of 80 ms (engine/request.py ChunkPolicy)

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


@dataclass(frozen=True)
class Estimate:
    """How much audio (engine seconds) a segment will take: from its text, at most the bound."""

    text_s: float
    bound_s: Optional[float] = None

    def at_bound(self, generated_s: float) -> bool:
        """A segment that ended with ``generated_s`` seconds ran to its bound (within half a frame)."""
        return self.bound_s is not None and generated_s >= self.bound_s - 0.04

    def total(self, generated_s: float) -> float:
        guess = self.text_s if self.bound_s is None else min(self.text_s, self.bound_s)
        if generated_s < guess:
            return guess
        if self.bound_s is not None:  # longer than its text suggests: it may run to the bound
            return max(self.bound_s, generated_s)
        return generated_s * 1.5


def needed_buffer(remaining_s: float, rate: Optional[float], margin: float = MARGIN) -> float:
    """Audio (played seconds) the listener must have in hand so that ``remaining_s`` more seconds, made at
    ``rate`` (played seconds per wall second), arrive before playback reaches them. 0 on a fast host."""
    if rate is None or remaining_s <= 0 or rate >= margin:
        return 0.0
    rate = max(rate, 1e-3)
    # ... and at least until the engine's next chunk (it comes in pieces of CHUNK_S, not continuously)
    return max(remaining_s * (margin / rate - 1.0) + RESERVE_S, min(remaining_s, CHUNK_S) / rate)


def split_chars(
    meter: RateMeter, language: Optional[str], speed: float, max_silence: float, margin: float = MARGIN
) -> Optional[int]:
    """Characters a segment may have so that holding it back stays within ``max_silence``; None: any.

    The segment is planned as if its generation started when the listener ran out (no head start from the
    look-ahead, which only adds room): it waits for its first chunk (the meter's latency), then until the
    held audio covers the rest at ``margin`` times the measured speed."""
    rate = meter.rate if meter.rate is not None else meter.seeded
    if rate is None or max_silence <= 0:
        return None
    played_rate = rate / speed
    if played_rate >= margin:
        return None
    wait = max(max_silence - RESERVE_S - (meter.latency or 0.0), 0.1)
    audio_played = wait / (margin / played_rate - 1.0)
    return max(MIN_PART_CHARS, meter.chars_for(language, audio_played * speed / meter.spread))


@dataclass(frozen=True)
class Upcoming:
    """The segment after the one being paced, as far as the engine got with it (engine seconds)."""

    total_s: float  # its expected length (RateMeter.expected_seconds)
    made_s: float  # generated so far
    done: bool = False


@dataclass
class Pacer:
    """The listener's side of one reply, in played seconds and wall-clock times given by the caller.

    Per segment: ``begin`` (its estimate), ``made`` for each chunk generated (engine seconds) and
    ``hold`` (played seconds waiting here), ``release_now`` asks whether to send, ``sent`` records what went
    out. ``fixed``: a fixed prebuffer in seconds instead of the automatic one."""

    start: float
    max_silence: float = 3.0
    fixed: Optional[float] = None
    speed: float = 1.0
    margin: float = MARGIN
    play_end: float = 0.0  # when the listener runs out of what it was sent
    first_audio: Optional[float] = None
    # counters for the request's log line and the tests
    held_segments: int = 0
    held_s: float = 0.0  # seconds audio was ready but held back
    forced: int = 0  # segments released by the silence bound before they were safe
    underruns: int = 0  # listener ran dry inside a segment
    underrun_s: float = 0.0
    pauses: int = 0  # listener silent between segments
    longest_pause: float = 0.0
    segments: int = 0
    sent_s: float = 0.0  # played seconds sent so far
    starts: list[float] = field(default_factory=list)  # sent_s where each segment began (the simulator)
    trace: Optional[list[tuple[str, float, float]]] = None  # ("made"|"sent", when, seconds): bench only
    slowest: Optional[float] = None  # the lowest generation speed (played x real time) a decision used
    # the segment being paced
    estimate: Estimate = field(default_factory=lambda: Estimate(0.0))
    generated_s: float = 0.0
    ready_at: Optional[float] = None
    released: bool = True
    segment_sent: bool = True
    not_before: Optional[float] = None  # held for the next segment's sake until then (smooth pauses)

    def __post_init__(self) -> None:
        self.play_end = self.start

    def begin(self, estimate: Estimate) -> None:
        self.estimate = estimate
        self.generated_s = 0.0
        self.ready_at = None
        self.released = False
        self.segment_sent = False
        self.not_before = None
        self.segments += 1

    def made(self, now: float, engine_s: float) -> None:
        if self.trace is not None:
            self.trace.append(("made", now, engine_s / self.speed))
        self.generated_s += engine_s
        if self.ready_at is None:
            self.ready_at = now

    def buffered(self, now: float) -> float:
        """Played seconds the listener still has."""
        return max(0.0, self.play_end - now)

    def wake_at(self) -> Optional[float]:
        """When to decide again without a new chunk: the silence bound's deadline, or the moment the held
        segment may go out for the next one's sake (:meth:`not_before`)."""
        deadline = self.deadline()
        if deadline is None or self.not_before is None:
            return deadline
        return min(deadline, self.not_before)

    def deadline(self) -> Optional[float]:
        """The latest time to release the held audio (the silence bound); None: nothing held."""
        if self.released or self.ready_at is None:
            return None
        return max(self.play_end, self.start) + max(self.max_silence - WAKE_S, 0.0)

    def release_now(
        self,
        now: float,
        held_s: float,
        rate: Optional[float],
        done: bool,
        upcoming: Optional[Upcoming] = None,
    ) -> bool:
        """Whether the held audio (``held_s`` played seconds) goes out now. ``rate``: engine seconds made
        per wall second (None: unknown, nothing is held); ``done``: the segment is complete; ``upcoming``:
        the next segment, when the engine already works on it (see :meth:`_for_next`)."""
        if self.released:
            return True
        if self.ready_at is None:
            return False
        if rate is not None:
            played = rate / self.speed
            self.slowest = played if self.slowest is None else min(self.slowest, played)
        enough = done or self._enough(now, held_s, rate)
        safe = enough
        if enough and self.fixed is None:
            self.not_before = self._for_next(now, rate, upcoming)
            safe = self.not_before is None or now >= self.not_before - EPS
        deadline = self.deadline()
        at_deadline = deadline is not None and now >= deadline - EPS
        if safe or at_deadline:
            self.released = True
            self.forced += not enough  # out before it was safe: the listener may run dry inside it
            if now - self.ready_at > EPS:
                self.held_segments += 1
                self.held_s += now - self.ready_at
        return self.released

    def _for_next(self, now: float, rate: Optional[float], upcoming: Optional[Upcoming]) -> Optional[float]:
        """The earliest time this segment should go out so that the next one's pause stays within the
        bound; None: now is fine. Released as soon as it is safe, a short segment plays out long before the
        next (a long word, say) is safe, and that pause is the one that breaks the bound; holding this one a
        little longer (its own pause stays within the bound too) spreads the silence over both."""
        if upcoming is None or upcoming.done or rate is None:
            return None
        played_rate = rate / self.speed
        if played_rate >= self.margin:
            return None
        total, made = upcoming.total_s / self.speed, upcoming.made_s / self.speed
        ratio = played_rate / self.margin
        # the next segment is safe from an empty buffer once it made this much (see needed_buffer)
        safe_at = total * (1.0 - ratio) + RESERVE_S * ratio
        if made >= safe_at:
            return None
        next_safe = now + (safe_at - made) / max(played_rate, 1e-3)
        mine = self.estimate.total(self.generated_s) / self.speed  # this segment, played whole
        latest_end = next_safe - max(self.max_silence - WAKE_S - SMOOTH_S, 0.0)
        when = latest_end - mine
        return when if when > max(now, self.play_end) + EPS else None

    def _enough(self, now: float, held_s: float, rate: Optional[float]) -> bool:
        have = self.buffered(now) + held_s
        if self.fixed is not None:
            return have >= self.fixed - EPS
        remaining = max(0.0, self.estimate.total(self.generated_s) - self.generated_s) / self.speed
        played_rate = None if rate is None else rate / self.speed
        return have >= needed_buffer(remaining, played_rate, self.margin) - EPS

    def sent(self, now: float, played_s: float) -> None:
        """``played_s`` seconds of audio went out at ``now``: the listener's buffer and its gaps."""
        if played_s <= 0:
            return
        if self.trace is not None:
            self.trace.append(("sent", now, played_s))
        if not self.segment_sent:
            self.starts.append(self.sent_s)
        self.sent_s += played_s
        gap = now - self.play_end
        if self.first_audio is None:
            self.first_audio = now
        elif gap > EPS:
            if not self.segment_sent:
                self.pauses += 1
                self.longest_pause = max(self.longest_pause, gap)
            else:
                self.underruns += 1
                self.underrun_s += gap
        self.segment_sent = True
        self.play_end = max(self.play_end, now) + played_s

    def summary(self) -> str:
        """The request log line's part."""
        text = f"held {self.held_s:.2f} s in {self.held_segments} of {self.segments} segment(s)"
        text += f", underruns {self.underruns}"
        if self.underruns:
            text += f" ({self.underrun_s:.2f} s)"
        if self.pauses:
            text += f", longest pause {self.longest_pause:.2f} s"
        if self.forced:
            text += f", {self.forced} released by the silence bound"
        if self.slowest is not None:
            text += f", generation {self.slowest:.2f}x real time"
        return text
