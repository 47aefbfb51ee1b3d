"""Running the playback-aware release (service/pacing.py) on a reply's audio as it is generated.

The speaker (speech.py) yields :class:`Piece` s: a segment starts, audio of it was made (already shaped for
speed, pauses and block sizes; with the engine seconds it stands for and when the engine made it), the
segment ended. :func:`paced` consumes them in a task of its own, so generation is never slowed by a hold,
and yields the same bytes in the same order, each segment's first bytes held back until the pacer lets them
go (a new piece, or the silence bound's deadline, wakes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import AsyncGenerator, AsyncIterator, Callable, Optional, Union

from ..core.audio import SAMPLE_RATE, SAMPLE_WIDTH
from .pacing import Estimate, Pacer, Upcoming
from .speedmeter import DEFAULT_S_PER_CHAR, RateMeter, SegmentSpeed


@dataclass
class Piece:
    kind: str  # "start" | "audio" | "end"
    pcm: list[bytes] = field(default_factory=list)  # shaped output, ready to send
    engine_s: float = 0.0  # seconds of engine audio this piece stands for
    made: float = 0.0  # when the engine made it (time.monotonic)
    bound_s: Optional[float] = None  # the segment's frame bound, in seconds
    chars: int = 0  # start: the segment's characters
    meter: Optional[RateMeter] = None  # start: the engine's meter
    language: Optional[str] = None
    since: Optional[float] = None  # audio: when the engine started on the segment (its prefill's end)
    upcoming: Optional[Callable[[], Optional[Upcoming]]] = None  # start: the next segment's progress


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()
Item = Union[Piece, _Failed, object]


def _played(chunks: list[bytes]) -> float:
    return sum(len(c) for c in chunks) / (SAMPLE_WIDTH * SAMPLE_RATE)


async def paced(
    pieces: AsyncIterator[Piece], pacer: Pacer, clock: Callable[[], float] = time.monotonic
) -> AsyncGenerator[bytes, None]:
    """The pieces' bytes, released when the listener needs them (see the module doc)."""
    queue: "asyncio.Queue[Item]" = asyncio.Queue()

    async def pump() -> None:
        try:
            async for piece in pieces:
                queue.put_nowait(piece)
            queue.put_nowait(_DONE)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, raised there
            queue.put_nowait(_Failed(exc))

    task = asyncio.create_task(pump(), name="qwen3tts paced release")
    held: list[bytes] = []
    meter: Optional[RateMeter] = None
    chars, language, speed = 0, None, SegmentSpeed()
    getter: Optional["asyncio.Future[Item]"] = None
    started = False  # the segment's estimate is set at its first audio (its bound is known then)
    ahead: Optional[Callable[[], Optional[Upcoming]]] = None

    def upcoming() -> Optional[Upcoming]:
        return ahead() if ahead is not None else None

    try:
        while True:
            wake = pacer.wake_at()
            timeout = None if wake is None else max(0.0, wake - clock())
            if getter is None:  # one get() kept across timeouts: no piece is ever lost to a timeout
                getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter}, timeout=timeout)
            item: Optional[Item] = None  # None: the silence bound's deadline, re-checked below
            if getter.done():
                item, getter = getter.result(), None
            done = False
            if isinstance(item, _Failed):
                raise item.exc
            if item is _DONE:
                for chunk in held:
                    pacer.sent(clock(), _played([chunk]))
                    yield chunk
                return
            if isinstance(item, Piece):
                if item.kind == "start":
                    meter, chars, language, ahead = item.meter, item.chars, item.language, item.upcoming
                    speed, started = SegmentSpeed(), False
                    continue
                if item.kind == "end":
                    if meter is not None:
                        meter.learn(
                            language, chars, pacer.generated_s, pacer.estimate.at_bound(pacer.generated_s)
                        )
                    done = True
                else:
                    if not started and item.engine_s > 0:
                        # planned for the longest this text may run (the bound caps it)
                        text_s = (
                            meter.expected_seconds(language, chars, item.bound_s)
                            if meter
                            else chars * DEFAULT_S_PER_CHAR
                        )
                        pacer.begin(Estimate(text_s, item.bound_s))
                        started = True
                        if meter is not None and item.since is not None:
                            meter.observe_latency(item.made - item.since)
                    took = speed.chunk(item.engine_s, item.made, item.since)
                    if meter is not None and took is not None:
                        meter.observe(item.engine_s, took)
                    if item.engine_s > 0:
                        pacer.made(clock(), item.engine_s)
                    held.extend(item.pcm)
            now = clock()
            rate = speed.rate(meter.rate if meter is not None else None)
            released = pacer.release_now(now, _played(held), rate, done, upcoming())
            while done and not released:  # complete, held for the next one's sake: wait here, not for pieces
                await asyncio.sleep(max(0.0, (pacer.wake_at() or now) - clock()))
                released = pacer.release_now(clock(), _played(held), rate, done, upcoming())
            if released and held:
                out, held = held, []
                for chunk in out:
                    pacer.sent(clock(), _played([chunk]))
                    yield chunk
    finally:
        if getter is not None:
            getter.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
