"""Playback-aware release (``--prebuffer``): the decisions, free of I/O and clocks, so they can be checked
with a simulated clock (tests/test_pacing.py). service/release.py runs them on the real stream.

A listener (Home Assistant, a satellite, a browser) plays audio the moment it arrives. When the host
generates slower than real time, streaming every chunk at once gives a quarter second of speech, a stall,
another quarter second ... mid-word. Instead, per segment (a sentence, or a clause of a long one):

* the engine's recent generation speed ``r`` (audio seconds per wall second, per request stream, so
  batching and other processes on the host show) is measured by :class:`RateMeter`;
* the segment's length is estimated (:class:`Estimate`, :meth:`RateMeter.expected_seconds`) from its text:
  a fixed part plus seconds per character, fitted per engine and language to the segments it finished,
  times the worst recent miss (plus 10 %) so that a segment a little longer than its text suggests does
  not run dry at its end; never above the engine's frame bound, and the bound itself where this engine's
  segments run to it (random test weights never end by themselves);
* the listener's buffer is known from what was sent and when (:attr:`Pacer.play_end`);
* a segment's audio is held back until the listener's buffer plus the held audio covers the time the rest
  of the segment still needs: ``B + held >= R * (margin / r - 1)`` with ``R`` the audio still to generate
  (and at least the wait for the engine's next chunk). Fast hosts (``r >= margin``) hold nothing back:
  there the first audio is as early as without pacing (on a host only a few times faster than real time the
  one-frame first chunk may still leave a gap shorter than one chunk's generation, which the log counts);
* no silence may last longer than ``max_silence``: :func:`split_chars` tells the speaker to cut long
  sentences into clauses, phrases, and on a very slow host into a few words each, before synthesis (the
  rest of a sentence is cut anew when the speed changes while it is spoken); a segment that still needs a
  longer hold goes out at the bound anyway (counted as forced);
* pauses are spread: a segment that is ready is held a little longer when the next one (the engine already
  works on it) would otherwise not be safe before the bound (:meth:`Pacer._for_next`), e.g. a short word
  before a long one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .speedmeter import RateMeter

MARGIN = 1.25  # the speed may drop by 20 % during a segment without an underrun
RESERVE_S = 0.15  # plus this much audio in hand (event-loop and network jitter)
MIN_PART_CHARS = 6  # a piece shorter than this is not worth its own segment (about one word)
HEAD_START = 0.5  # of a segment's length, generated while the one before plays (split_chars)
EPS = 1e-3
WAKE_S = 0.05  # the deadline fires this much early: the event loop and the network add their delay
SMOOTH_S = 0.3  # a pause planned for the next segment stays this much below the bound
CHUNK_S = 0.32  # the engine's chunks after the first: 4 frames of 80 ms (engine/request.py ChunkPolicy)


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
    meter: RateMeter,
    language: Optional[str],
    speed: float,
    max_silence: float,
    margin: float = MARGIN,
    head_start: bool = True,
) -> Optional[int]:
    """Characters a segment may have so that holding it back stays within ``max_silence``; None: any.

    A segment waits for its first chunk (the meter's latency), then until the held audio covers the rest
    at ``margin`` times the measured speed ``r``: about ``D * (1/r - 1/margin)`` for ``D`` seconds of audio.
    With ``head_start`` (every segment of a reply but the first) the engine began on it while the one
    before was still playing (the speaker keeps the next segment submitted); half of a segment's own length
    is counted as that head start, so the plan keeps room for a shorter one before it."""
    rate = meter.rate if meter.rate is not None else meter.seeded
    if rate is None or max_silence <= 0:
        return None
    played_rate = rate / speed
    if played_rate >= margin:
        return None
    per_second = 1.0 / played_rate - 1.0 / margin - (HEAD_START if head_start else 0.0)
    if per_second <= 0:
        return None
    wait = max(max_silence - RESERVE_S - (meter.latency or 0.0), 0.1)
    return max(MIN_PART_CHARS, meter.chars_for(language, wait / per_second * speed / meter.spread))


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
            self.not_before = self._for_next(now, rate, upcoming, done)
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

    def _for_next(
        self, now: float, rate: Optional[float], upcoming: Optional[Upcoming], done: bool
    ) -> Optional[float]:
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
        # this segment, played whole
        mine = (self.generated_s if done else self.estimate.total(self.generated_s)) / self.speed
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
