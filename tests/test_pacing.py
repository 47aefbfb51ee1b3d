"""Playback-aware release, decided on a simulated clock (no timing in these tests): service/pacing.py's
Pacer, RateMeter and Estimate driven through the same steps as service/release.py, against a generator
of a given speed; release.py's own loop on fake pieces (same bytes, same order); the sentence cutter
(service/clauses.py) and the --prebuffer / --max-silence / --debug-slowdown settings."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Optional

import pytest

from wyoming_qwen3tts.core.audio import SAMPLE_RATE, SAMPLE_WIDTH
from wyoming_qwen3tts.core.slowdown import Slowdown
from wyoming_qwen3tts.service.clauses import split_long
from wyoming_qwen3tts.service.pacing import WAKE_S, Estimate, Pacer, needed_buffer, split_chars
from wyoming_qwen3tts.service.release import Piece, paced
from wyoming_qwen3tts.service.speedmeter import RateMeter
from wyoming_qwen3tts.settings import SettingsError, load_settings

FRAME = 0.08


@dataclass
class Outcome:
    pacer: Pacer
    total: float


def simulate(
    rate: float,
    segments: list[float],
    text_s: Optional[list[float]] = None,
    bound_s: Optional[list[float]] = None,
    max_silence: float = 3.0,
    meter: Optional[RateMeter] = None,
    fixed: Optional[float] = None,
) -> Outcome:
    """Segments of the given audio lengths generated one after the other at ``rate`` x real time in
    chunks of 1 then 4 frames, released as release.py does (at each chunk, and at the silence deadline)."""
    meter = meter or RateMeter()
    pacer = Pacer(0.0, max_silence, fixed=fixed)
    now = 0.0
    for i, audio in enumerate(segments):
        frames = max(1, round(audio / FRAME))
        sizes = [1] + [4] * ((frames - 1) // 4) + ([(frames - 1) % 4] if (frames - 1) % 4 else [])
        estimate = Estimate(text_s[i] if text_s else audio, bound_s[i] if bound_s else None)
        held = 0.0
        last = None
        for k, size in enumerate(sizes):
            made = now + size * FRAME / rate
            deadline = pacer.deadline()
            if held and deadline is not None and deadline < made:  # the timer fires first
                if pacer.release_now(deadline, held, meter.rate or rate, False):
                    pacer.sent(deadline, held)
                    held = 0.0
            now = made
            if k == 0:
                pacer.begin(estimate)
            if last is not None:
                meter.observe(size * FRAME, made - last)
            last = made
            pacer.made(now, size * FRAME)
            held += size * FRAME
            speed = meter.rate if meter.rate is not None else rate  # release.py: the first chunk's speed
            if pacer.release_now(now, held, speed, k == len(sizes) - 1):
                pacer.sent(now, held)
                held = 0.0
        meter.learn("english", 10, audio)
    return Outcome(pacer, max(now, pacer.play_end))


@pytest.mark.parametrize("rate", [0.25, 0.4, 0.6, 0.8, 1.0])
def test_a_slow_host_pauses_between_segments_never_inside_them(rate):
    seconds = 3.0 * rate / (1.25 - rate) if rate < 1.25 else 4.0  # a segment the bound allows at this speed
    seconds = max(0.8, min(seconds, 4.0))
    out = simulate(rate, [seconds] * 5)
    assert out.pacer.underruns == 0
    assert out.pacer.forced == 0
    assert out.pacer.longest_pause <= 3.0 + 1e-6
    assert out.pacer.held_segments >= 1  # the first segment waits for enough audio


def test_a_fast_host_holds_nothing_back():
    meter = RateMeter()
    out = simulate(5.0, [2.0, 3.0, 1.0], meter=meter)
    assert out.pacer.held_s == 0 and out.pacer.held_segments == 0
    assert out.pacer.first_audio == pytest.approx(FRAME / 5.0)  # the first chunk goes out when made
    assert out.pacer.underruns == 0 and out.pacer.pauses == 0


def test_without_pacing_a_slow_host_stutters_inside_segments():
    """The baseline the pacer fixes: a 0 s prebuffer at 0.3x real time stalls after every chunk."""
    out = simulate(0.3, [3.0, 3.0], fixed=0.0)
    assert out.pacer.underruns >= 10


def test_the_silence_bound_releases_a_long_segment_and_counts_it():
    out = simulate(0.25, [8.0], max_silence=2.0)
    assert out.pacer.forced == 1
    assert out.pacer.first_audio == pytest.approx(2.0 - WAKE_S)  # not later than the bound (a little early)
    assert out.pacer.underruns > 0  # what the cutting of long sentences exists for


def test_a_segment_running_to_its_bound_is_covered_by_the_bound():
    """Random test weights: the text says 0.7 s, the segment runs to its bound of 2.4 s."""
    out = simulate(0.5, [2.4, 2.4], text_s=[0.7, 0.7], bound_s=[2.4, 2.4], max_silence=5.0)
    assert out.pacer.underruns == 0


def test_estimate_is_capped_by_the_bound_and_raised_to_it():
    estimate = Estimate(text_s=3.0, bound_s=2.0)
    assert estimate.total(0.5) == 2.0
    estimate = Estimate(text_s=1.0, bound_s=4.0)
    assert estimate.total(0.5) == 1.0
    assert estimate.total(1.2) == 4.0  # longer than its text: up to the bound
    assert Estimate(text_s=1.0).total(2.0) == 3.0


def test_meter_keeps_only_recent_speed():
    meter = RateMeter(window_s=2.0)
    assert meter.rate is None
    for _ in range(20):
        meter.observe(0.32, 0.32 / 4.0)  # fast
    assert meter.rate == pytest.approx(4.0)
    for _ in range(20):
        meter.observe(0.32, 0.32 / 0.5)  # contention: the recent speed wins
    assert meter.rate == pytest.approx(0.5)
    meter.learn("english", 10, 3.4)
    assert meter.seconds_per_char("English") == pytest.approx(0.34)
    assert meter.seconds_per_char("chinese") > meter.seconds_per_char("german")


def test_needed_buffer_and_split_size():
    assert needed_buffer(2.0, 2.0) == 0.0 and needed_buffer(2.0, None) == 0.0
    assert needed_buffer(2.0, 0.5) == pytest.approx(2.0 * 1.5 + 0.15)
    meter = RateMeter()
    assert split_chars(meter, "english", 1.0, 3.0) is None  # speed unknown: no cutting
    for _ in range(10):
        meter.observe(0.32, 1.28)  # 0.25x
    chars = split_chars(meter, "english", 1.0, 3.0)
    # 0.25x: a piece of ~0.8 s of speech (0.07 s per character, planned 1.3x longer, half of it made while
    # the piece before plays) fills a 3 s silence; the reply's first piece has no head start
    assert chars is not None and 9 <= chars <= 14
    assert split_chars(meter, "english", 1.0, 3.0, head_start=False) < chars
    meter.observe_latency(1.0)  # each segment waits 1 s for its first chunk: shorter pieces
    assert split_chars(meter, "english", 1.0, 3.0) < chars
    fast = RateMeter()
    fast.observe(1.0, 0.2)
    assert split_chars(fast, "english", 1.0, 3.0) is None


def test_length_fit_separates_the_fixed_part_and_learns_its_misses():
    meter = RateMeter()
    assert meter.part_seconds("english", 100) == pytest.approx(7.0)  # speech pace before anything is seen
    for chars in (10, 20, 40, 80, 15, 60):
        meter.learn("english", chars, 0.4 + 0.05 * chars)  # 0.4 s whatever the text (e.g. a bound's slack)
    fixed, per_char = meter.length_fit("english")
    assert fixed == pytest.approx(0.4) and per_char == pytest.approx(0.05)
    assert meter.part_seconds("english", 10) == pytest.approx(0.9)  # a plain ratio would say ~0.6
    assert meter.chars_for("english", 0.9) == 10
    assert meter.spread == pytest.approx(1.1)  # every length as fitted: the least headroom
    meter.learn("english", 20, 1.4 * (0.4 + 0.05 * 20))  # one ran 40 % longer than its fit
    assert meter.spread == pytest.approx(1.4 * 1.1, rel=0.02)
    assert RateMeter().spread == pytest.approx(1.3)


def test_rest_of_a_sentence_is_cut_anew_when_the_host_slows_down():

    from wyoming_qwen3tts.service.clauses import join_pieces
    from wyoming_qwen3tts.service.speech import Reply, _Part

    text = "Tomorrow morning brings some fog in the valleys, so drive carefully and keep your lights on."
    pieces = split_long(text, 40)
    assert join_pieces(pieces) == text
    assert join_pieces(split_long("今天天气很好，我们去公园散步吧，然后吃饭。", 8, min_chars=3)) == (
        "今天天气很好，我们去公园散步吧，然后吃饭。"
    )
    meter = RateMeter()
    reply = Reply.__new__(Reply)  # only the cutting: no server, no engine
    reply.pacer, reply.meter, reply.spoken, reply.inflight = Pacer(0.0, 3.0), meter, 1, []
    reply.parts = __import__("collections").deque([_Part(text, "english", pause=0.5, rate=0.9)])
    reply._recut()  # speed unknown, sentence not cut: nothing changes
    assert [p.text for p in reply.parts] == [text]
    for _ in range(10):
        meter.observe(0.32, 1.28)  # the host now runs at 0.25x
    reply._recut()
    cut = list(reply.parts)
    assert len(cut) > 3 and join_pieces([p.text for p in cut]) == text
    assert (cut[0].pause, cut[0].rate, cut[0].continues) == (0.5, 0.9, False)  # SSML stays with the first
    assert all(p.continues and p.pause is None for p in cut[1:])
    reply._recut()  # same speed: the cut stays
    assert list(reply.parts) == cut
    for _ in range(40):
        meter.observe(0.32, 0.08)  # fast again: the rest goes back to one piece
    reply._recut()
    assert [p.text for p in reply.parts] == [text]


def test_a_short_segment_waits_for_a_long_next_one_within_the_bound():
    """A one-word piece that is ready plays out long before the long word after it is safe: holding the
    short one a little spreads the silence over both pauses instead of breaking the bound at the second."""
    from wyoming_qwen3tts.service.pacing import SMOOTH_S, Upcoming

    def ready_pacer() -> Pacer:
        pacer = Pacer(10.0, 3.0)
        pacer.begin(Estimate(0.56))
        pacer.made(10.0, 0.56)
        return pacer

    long_next = Upcoming(total_s=1.36, made_s=0.2)  # safe once ~1.12 s is made: 3.7 s from now at 0.25x
    assert ready_pacer().release_now(10.0, 0.56, 0.25, True)  # nothing known about the next: out now
    pacer = ready_pacer()
    assert not pacer.release_now(10.0, 0.56, 0.25, True, long_next)
    safe_next = 10.0 + (1.36 * 0.8 + 0.15 * 0.2 - 0.2) / 0.25
    expected = safe_next - (3.0 - WAKE_S - SMOOTH_S) - 0.56
    assert pacer.not_before == pytest.approx(expected) and pacer.wake_at() == pytest.approx(expected)
    assert not pacer.release_now(expected, 0.56, 0.25, True, long_next)  # the next one made no progress
    progressed = Upcoming(total_s=1.36, made_s=0.2 + (expected - 10.0) * 0.25)  # it did, at 0.25x
    assert pacer.release_now(expected, 0.56, 0.25, True, progressed)
    assert pacer.forced == 0 and pacer.held_s == pytest.approx(expected - 10.0)
    # a next one that is nearly made, or a fast host: no wait
    assert ready_pacer().release_now(10.0, 0.56, 0.25, True, Upcoming(1.36, 1.2))
    assert ready_pacer().release_now(10.0, 0.56, 2.0, True, long_next)
    # a very long next one: never past this segment's own bound
    pacer = ready_pacer()
    assert not pacer.release_now(10.0, 0.56, 0.25, True, Upcoming(8.0, 0.0))
    assert pacer.wake_at() == pytest.approx(13.0 - WAKE_S)
    assert pacer.release_now(13.0 - WAKE_S, 0.56, 0.25, True, Upcoming(8.0, 0.0)) and pacer.forced == 0


def test_long_sentences_are_cut_at_clauses_then_phrases():
    text = (
        "When the sun goes down, the lights in the garden turn on and the door is locked because you asked."
    )
    assert split_long(text, 200) == [text]
    parts = split_long(text, 40)
    assert parts[0] == "When the sun goes down,"
    assert " ".join(parts) == text and all(len(p) <= 40 for p in parts)
    assert any(p.startswith("and ") or p.startswith("because ") for p in parts)
    tiny = split_long(text, 5, min_chars=12)  # never below the minimum, never inside a word
    assert " ".join(tiny) == text and all(len(p) >= 12 for p in tiny)
    assert split_long("今天天气很好，我们去公园散步吧，然后吃饭。", 8, min_chars=3) == [
        "今天天气很好，",
        "我们去公园散步吧，",
        "然后吃饭。",
    ]


def test_release_loop_keeps_bytes_and_order_and_holds_on_a_slow_engine():
    """release.py's loop with a fake clock: a 0.25x engine's first segment waits, the bytes are the same."""
    clock = [0.0]
    meter = RateMeter()
    for _ in range(10):
        meter.observe(0.32, 1.28)
    meter.learn("english", 20, 1.92)  # this engine's segments run to their bound (random weights)
    chunks = [bytes([i]) * (SAMPLE_WIDTH * int(SAMPLE_RATE * 0.32)) for i in range(6)]

    async def pieces():
        yield Piece("start", chars=20, meter=meter, language="english")
        for i, chunk in enumerate(chunks):
            clock[0] += 1.28
            yield Piece("audio", [chunk], 0.32, clock[0], bound_s=1.92)
            for _ in range(10):  # the consumer handles it before the fake clock moves on (deterministic)
                await asyncio.sleep(0)
        yield Piece("end")

    async def run() -> list[bytes]:
        return [pcm async for pcm in paced(pieces(), pacer, clock=lambda: clock[0])]

    pacer = Pacer(0.0, max_silence=30.0)
    assert asyncio.run(run()) == chunks
    assert pacer.held_segments == 1 and pacer.held_s > 0 and pacer.underruns == 0
    assert "held" in pacer.summary() and "underruns 0" in pacer.summary()


def test_settings_of_pacing(tmp_path):
    assert load_settings([], {}).prebuffer == "auto" and load_settings([], {}).max_silence == 3.0
    assert load_settings(["--prebuffer", "off"], {}).prebuffer == "off"
    assert load_settings(["--prebuffer", "1.5"], {}).prebuffer == 1.5
    assert load_settings(["--max-silence", "2"], {}).max_silence == 2.0
    assert load_settings(["--debug-slowdown", "0.25X"], {}).debug_slowdown == "0.25x"
    for bad in (["--prebuffer", "soon"], ["--max-silence", "0"], ["--debug-slowdown", "0.5"]):
        with pytest.raises(SettingsError):
            load_settings(bad, {})
    config = tmp_path / "c.yaml"
    config.write_text("prebuffer: off\nmax_silence: 4\n")
    settings = load_settings(["--config", str(config)], {})
    assert (settings.prebuffer, settings.max_silence) == ("off", 4.0)


def test_slowdown_delays():
    assert Slowdown.parse("4").delay(0.01) == pytest.approx(0.03)
    assert Slowdown.parse("0.5x").delay(0.01) == pytest.approx(0.15)
    assert Slowdown.parse("2x").delay(0.1) == 0.0
