"""Playback simulator: a client that plays the audio like a speaker (real time, from its first chunk) and
reports what a listener hears: first audio, underruns inside segments (count, seconds), pauses between
segments (count, longest), and total time, for replies of 1, 3 and 8 sentences at several generation
speeds, with --prebuffer auto against no pacing.

    python -m bench.playback_sim --tiny --speeds native,1x,0.5x,0.25x --sentences 1,3 --png bench/playback.png
    python -m bench.playback_sim --model DIR --speeds native,0.5x          # a real checkpoint

The server runs in this process (the real server coroutine on real ports, tests/fixtures/server_thread.py)
so that each run can set the engine's debug slow-down (``RATEx``: generation at most RATE x real time;
``native``: none) and read where each segment began (service/pacing.py's Pacer). ``--tiny`` builds a tiny
random checkpoint whose segments run to a bound of about 0.07 s of audio per character, like speech.
"No pacing" is ``--prebuffer 0`` (released as generated, as with ``off``, but with the same accounting).
Wyoming replies use Home Assistant's streaming sequence; ``--doors wyoming,http`` adds the HTTP stream.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
from wyoming.audio import AudioChunk  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402
from wyoming.tts import SynthesizeChunk, SynthesizeStart, SynthesizeStop  # noqa: E402

from tests.fixtures.server_process import free_port  # noqa: E402
from tests.fixtures.server_thread import ServerThread  # noqa: E402
from wyoming_qwen3tts.core.audio import SAMPLE_RATE, SAMPLE_WIDTH  # noqa: E402
from wyoming_qwen3tts.core.slowdown import Slowdown  # noqa: E402
from wyoming_qwen3tts.engine import Engine, RunawayGuard  # noqa: E402
from wyoming_qwen3tts.service import speech  # noqa: E402
from wyoming_qwen3tts.service.models import warm_up  # noqa: E402
from wyoming_qwen3tts.settings import Settings  # noqa: E402

SENTENCES = [
    "The weather today is sunny with a light breeze from the west.",
    "In the afternoon, temperatures climb to about twenty two degrees.",
    "Tonight it stays dry, and the sky clears after midnight.",
    "Tomorrow morning brings some fog in the valleys, so drive carefully.",
    "By noon the sun is back, and it gets a little warmer than today.",
    "On Thursday a front arrives with showers and a few thunderstorms.",
    "The weekend looks calm again, with clouds and sun taking turns.",
    "Next week starts cool, so keep a jacket close at hand.",
]
# Random weights never say EOS: a bound of ~3 frames per text token gives speech-like lengths.
SPEECH_GUARD = RunawayGuard(frames_per_token=1.6, slack_frames=2, hard_factor=1.0, eos_bias_per_frame=0.0)
_PACERS: list[Any] = []


class _Recorded(speech.Pacer):  # type: ignore[misc,valid-type]
    def __post_init__(self) -> None:
        super().__post_init__()
        self.trace = []
        _PACERS.append(self)


def listen(arrivals: list[tuple[float, float]], starts: list[float], sent: float) -> dict[str, Any]:
    """A speaker that plays each chunk when it arrives (or when the one before it ends)."""
    play_end = None
    offset = 0.0
    out = {"first_audio": None, "underruns": 0, "underrun_s": 0.0, "pauses": 0, "longest_pause": 0.0}
    for when, seconds in arrivals:
        if play_end is None:
            out["first_audio"] = when - sent
            play_end = when
        gap = when - play_end
        if gap > 0.005:
            boundary = any(offset - 1e-6 <= s < offset + seconds for s in starts[1:])
            if boundary:
                out["pauses"] += 1
                out["longest_pause"] = max(out["longest_pause"], gap)
            else:
                out["underruns"] += 1
                out["underrun_s"] += gap
        play_end = max(play_end, when) + seconds
        offset += seconds
    out["total"] = (play_end or sent) - sent
    out["audio"] = offset
    return out


async def wyoming_reply(port: int, text: str) -> tuple[float, list[tuple[float, float]]]:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        sent = time.monotonic()
        for event in (SynthesizeStart(), SynthesizeChunk(text=text), SynthesizeStop()):
            await client.write_event(event.event())
        arrivals = []
        while True:
            event = await asyncio.wait_for(client.read_event(), 900)
            if event is None or event.type in ("synthesize-stopped", "error"):
                return sent, arrivals
            if AudioChunk.is_type(event.type):
                pcm = AudioChunk.from_event(event).audio
                arrivals.append((time.monotonic(), len(pcm) / (SAMPLE_WIDTH * SAMPLE_RATE)))


async def http_reply(port: int, text: str) -> tuple[float, list[tuple[float, float]]]:
    body = {"input": text, "response_format": "pcm", "stream": True}
    async with aiohttp.ClientSession() as session:
        sent = time.monotonic()
        async with session.post(f"http://127.0.0.1:{port}/v1/audio/speech", json=body) as response:
            arrivals = []
            rest = b""
            async for data in response.content.iter_any():
                data, rest = rest + data, b""
                whole = len(data) - len(data) % SAMPLE_WIDTH
                data, rest = data[:whole], data[whole:]
                arrivals.append((time.monotonic(), len(data) / (SAMPLE_WIDTH * SAMPLE_RATE)))
            return sent, arrivals


def load(model: Optional[str], tiny: bool) -> tuple[Engine, str]:
    if tiny:
        from tests.fixtures.checkpoint_builder import build_checkpoint

        path = build_checkpoint(
            Path(tempfile.mkdtemp()) / "cv", "custom_voice", "tiny", seed=0, dtype="float32"
        )
        engine = Engine.load(str(path), device="cpu", dtype="float32", slots=4, guard=SPEECH_GUARD)
        gen = dataclasses.replace(engine.config.generation, do_sample=False, subtalker_dosample=False)
        engine.config = dataclasses.replace(engine.config, generation=gen)
        return engine, str(path)
    assert model is not None
    return Engine.load(model, device="cpu"), model


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    engine, model = load(args.model, args.tiny)
    settings = Settings(
        uri=f"tcp://127.0.0.1:{free_port()}",
        model=model,
        data_dir=Path(tempfile.mkdtemp()),
        clone_model=None,
        design_model=None,
        seed=1,
        http_port=free_port(),
        max_silence=args.max_silence,
    )
    engine.scheduler.slowdown = None if args.speeds[0] == "native" else Slowdown.parse(args.speeds[0])
    warm_up(engine)  # as the server does at start-up (it gives pacing a first idea of the speed)
    speech.Pacer = _Recorded  # where each segment began, and the made/sent trace for the picture
    srv = ServerThread(settings, engine, http="http" in args.doors)
    rows = []
    try:
        for speed in args.speeds:
            engine.scheduler.slowdown = None if speed == "native" else Slowdown.parse(speed)
            if args.settle:  # one reply first, so the engine's meter knows this speed (a steady host)
                asyncio.run(wyoming_reply(srv.port, SENTENCES[-1]))
            for n in args.sentences:
                text = " ".join(SENTENCES[:n])
                for door in args.doors:
                    for mode in args.modes:
                        srv.state.delivery = dataclasses.replace(
                            srv.state.delivery, prebuffer=0.0 if mode == "none" else mode
                        )
                        _PACERS.clear()
                        if door == "wyoming":
                            sent, arrivals = asyncio.run(wyoming_reply(srv.port, text))
                        else:
                            sent, arrivals = asyncio.run(http_reply(settings.http_port, text))
                        pacer = _PACERS[-1]
                        row = {"speed": speed, "sentences": n, "door": door, "prebuffer": mode}
                        row.update(listen(arrivals, pacer.starts, sent))
                        row["segments"] = pacer.segments
                        row["generation"] = pacer.slowest
                        row["starts"] = pacer.starts
                        row["trace"] = [(kind, when - sent, s) for kind, when, s in pacer.trace]
                        rows.append(row)
                        print(_row(row), flush=True)
    finally:
        srv.close()
        engine.close()
    return rows


HEADER = (
    "| speed | sentences | door | prebuffer | segments | first audio | underruns in segments | "
    "pauses between segments (longest) | total | audio |\n|---|---|---|---|---|---|---|---|---|---|"
)


def _row(r: dict[str, Any]) -> str:
    return (
        f"| {r['speed']} | {r['sentences']} | {r['door']} | {r['prebuffer']} | {r['segments']} | "
        f"{r['first_audio']:.2f} s | {r['underruns']} ({r['underrun_s']:.2f} s) | "
        f"{r['pauses']} ({r['longest_pause']:.2f} s) | {r['total']:.2f} s | {r['audio']:.2f} s |"
    )


# -- a small PNG of generated vs played audio (no plotting library needed) ---------------------------------
GREY, BLUE, GREEN, RED, AMBER = (160, 160, 160), (40, 90, 220), (30, 160, 60), (220, 40, 40), (240, 170, 0)


def _curves(r: dict[str, Any]) -> tuple[list[tuple[float, float]], list[tuple[float, float]], list[Any]]:
    """Made and sent steps (time, seconds of audio so far), and the played runs (start, seconds, offset)."""
    made, sent, runs = [(0.0, 0.0)], [(0.0, 0.0)], []
    play_end, offset = None, 0.0
    for kind, when, seconds in r["trace"]:
        steps = made if kind == "made" else sent
        steps.append((when, steps[-1][1] + seconds))
        if kind == "sent":
            play_end = when if play_end is None else max(play_end, when)
            runs.append((play_end, seconds, offset))
            play_end += seconds
            offset += seconds
    return made, sent, runs


def timeline_png(path: Path, panels: list[dict[str, Any]], width: int = 720, height: int = 170) -> None:
    """One panel per run: x = wall time from the request, y = seconds of audio. Grey: generated; blue: sent;
    green: played. Under each panel a band: red where the listener is silent inside a segment, amber where
    it is silent between segments."""
    px = [[(255, 255, 255)] * width for _ in range(height * len(panels))]
    span = max(max(t for _, t, _ in r["trace"]) + r["audio"] for r in panels) * 0.75
    for p, r in enumerate(panels):
        top, audio = p * height, max(r["audio"], 1e-3) * 1.04
        made, sent, runs = _curves(r)
        plot_h = height - 22

        def y_of(a: float, top: int = top, audio: float = audio, plot_h: int = plot_h) -> int:
            return top + 4 + plot_h - int(a / audio * plot_h)

        def dot(x: int, y: int, color: tuple[int, int, int]) -> None:
            for dy in (-1, 0, 1):
                if 0 <= y + dy < len(px):
                    px[y + dy][x] = color

        starts = r.get("starts", [])
        for x in range(width):
            t = x / (width - 1) * span
            for steps, color in ((made, GREY), (sent, BLUE)):
                dot(x, y_of(max(a for w, a in steps if w <= t)), color)
            played, silent, between = 0.0, True, False
            for begin, seconds, offset in runs:
                if t >= begin:
                    played = offset + min(t - begin, seconds)
                    silent = t >= begin + seconds
            if runs and runs[0][0] <= t <= runs[-1][0] + runs[-1][1]:
                dot(x, y_of(played), GREEN)
                if silent:
                    between = any(abs(s - played) < 0.05 for s in starts[1:])
                    for y in range(top + height - 14, top + height - 6):
                        px[y][x] = AMBER if between else RED
            px[top + height - 1][x] = (0, 0, 0)
    raw = b"".join(b"\x00" + bytes(c for pixel in row for c in pixel) for row in px)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, len(px), 8, 2, 0, 0, 0)
    png = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a checkpoint directory")
    p.add_argument("--tiny", action="store_true", help="a tiny random checkpoint with speech-like lengths")
    p.add_argument("--speeds", default="native,1x,0.5x,0.25x", help="native or RATEx, comma-separated")
    p.add_argument("--sentences", default="1,3,8")
    p.add_argument("--doors", default="wyoming", help="wyoming,http")
    p.add_argument("--modes", default="none,auto", help="none (no pacing), auto, or seconds")
    p.add_argument("--max-silence", type=float, default=3.0)
    p.add_argument(
        "--settle", action="store_true", help="one unmeasured reply at each speed first (steady state)"
    )
    p.add_argument("--json", help="write the rows (with traces) here")
    p.add_argument("--png", help="timeline picture of the last speed's replies (last sentence count)")
    args = p.parse_args()
    if not (args.model or args.tiny):
        p.error("--model DIR or --tiny")
    args.speeds = args.speeds.split(",")
    args.sentences = [int(n) for n in args.sentences.split(",")]
    args.doors = args.doors.split(",")
    args.modes = args.modes.split(",")
    print(HEADER, flush=True)
    rows = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.png:
        slow = [r for r in rows if r["speed"] == args.speeds[-1] and r["sentences"] == args.sentences[-1]]
        timeline_png(Path(args.png), [r for r in slow if r["door"] == args.doors[0]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
