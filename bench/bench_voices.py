"""Clone voices through the real server: what a model switch and the prompt cache cost a request.

    python bench/bench_voices.py --model bench/checkpoints/cv-0.6b --clone-model bench/checkpoints/base-0.6b

Starts the real server process twice on the same data dir with one clone voice (a 6 s clip + transcript) and
measures time to first audio (TTFA) and total time of short requests, in this order:

1. built-in voice (main model, warm)
2. first `clone:` request: loads the Base model on demand + computes the voice prompt (encoders)
3. second `clone:` request: everything warm
4. built-in voice again (both models resident)
5. after a restart, the first `clone:` request: Base model loaded on demand, prompt read from disk
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from wyoming.audio import AudioChunk, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.tts import Synthesize, SynthesizeVoice

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.isa import add_isa_argument, apply_isa, isa_report  # noqa: E402
from tests.fixtures.server_process import start_server  # noqa: E402
from wyoming_qwen3tts.voices.library import VoiceLibrary  # noqa: E402

TEXT = "Hello there, how are you today?"


async def speak(port: int, voice: str, full: bool) -> tuple[float, float, float]:
    """(ttfa_s, total_s, audio_s) of one synthesize; without ``full`` it hangs up at the first audio (random
    weights never say EOS, so whole utterances take minutes on CPU and say nothing about switching)."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        started = time.perf_counter()
        await client.write_event(Synthesize(text=TEXT, voice=SynthesizeVoice(name=voice)).event())
        first, samples = None, 0
        while True:
            event = await asyncio.wait_for(client.read_event(), 1800)
            if event is None or Error.is_type(event.type):
                raise RuntimeError(f"request failed: {event}")
            if AudioChunk.is_type(event.type):
                first = first or time.perf_counter()
                samples += len(AudioChunk.from_event(event).audio) // 2
            if AudioStop.is_type(event.type) or (first and not full):
                return first - started, time.perf_counter() - started, samples / 24000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="CustomVoice checkpoint")
    parser.add_argument("--clone-model", required=True, help="Base checkpoint")
    parser.add_argument("--voice", default="ryan", help="built-in voice")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--quantize", default="none", help="none, int8 or int4 (CPU)")
    parser.add_argument("--full", action="store_true", help="wait for each whole utterance")
    add_isa_argument(parser)
    args = parser.parse_args()
    apply_isa(args.isa)  # the server processes inherit the limits
    print(isa_report(args.isa), file=sys.stderr)

    data = Path(tempfile.mkdtemp(prefix="bench-voices-"))
    sr = 24000
    t = np.arange(sr * 6) / sr
    sf.write(data / "ref.wav", (0.3 * np.sin(2 * np.pi * 170 * t) * (0.6 + 0.4 * np.sin(6 * t))), sr)
    VoiceLibrary(data / "voices").add_clone(
        "anna", data / "ref.wav", "This is a short clip of my voice for the benchmark, six seconds long."
    )
    flags = ["--data-dir", str(data), "--clone-model", args.clone_model, "--threads", args.threads]
    flags += ["--dtype", args.dtype, "--quantize", args.quantize, "--max-loaded-models", "2"]
    rows = []
    for run in (1, 2):
        with open(data / f"server{run}.log", "w") as log:
            proc, port = start_server(args.model, flags, log, timeout=1800)
            try:
                plan = (
                    [
                        (args.voice, "built-in, warm"),
                        ("clone:anna", "clone: first (load Base + compute prompt)"),
                    ]
                    + [("clone:anna", "clone: warm"), (args.voice, "built-in, both models resident")]
                    if run == 1
                    else [("clone:anna", "clone: after restart (load Base, prompt from disk)")]
                )
                for voice, label in plan:
                    rows.append((label, *asyncio.run(speak(port, voice, args.full))))
            finally:
                proc.terminate()
                proc.wait(60)
    setup = f"{args.dtype}, quantize {args.quantize}, {args.threads} threads"
    print(f"| request | TTFA s | total s | audio s |  ({setup})")
    print("|---|---|---|---|")
    for label, ttfa, total, audio in rows:
        print(f"| {label} | {ttfa:.2f} | {total:.2f} | {audio:.2f} |")


if __name__ == "__main__":
    main()
