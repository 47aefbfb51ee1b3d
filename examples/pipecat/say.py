"""Speak a few lines through Pipecat's OpenAI TTS service and wyoming-qwen3tts into a WAV file: a check of the
setup that needs no microphone, no LLM and no speech-to-text (see bot.py for the voice agent).

    python examples/pipecat/say.py "Hello from Pipecat." "And a second sentence." --out hello.wav
"""

from __future__ import annotations

import argparse
import asyncio
import wave

from bot import tts_service
from pipecat.frames.frames import EndFrame, ErrorFrame, Frame, TTSAudioRawFrame, TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner


class WavSink(FrameProcessor):
    """Collects the TTS audio frames (24 kHz mono 16-bit PCM) and the errors."""

    def __init__(self) -> None:
        super().__init__()
        self.pcm = bytearray()
        self.frames = 0
        self.errors: list[str] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.pcm += frame.audio
            self.frames += 1
        elif isinstance(frame, ErrorFrame):
            self.errors.append(frame.error)
        await self.push_frame(frame, direction)


async def say(texts: list[str], out: str) -> int:
    sink = WavSink()
    worker = PipelineWorker(
        Pipeline([tts_service(), sink]),
        params=PipelineParams(audio_out_sample_rate=24000),
        idle_timeout_secs=None,
    )
    await worker.queue_frames([*(TTSSpeakFrame(text) for text in texts), EndFrame()])
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24000)
        wav.writeframes(bytes(sink.pcm))
    for error in sink.errors:
        print(f"error: {error}")
    print(f"{out}: {len(sink.pcm) / 48000:.2f} s of audio in {sink.frames} frames")
    return 1 if sink.errors or not sink.pcm else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("texts", nargs="+", metavar="TEXT")
    parser.add_argument("--out", default="pipecat.wav", help="WAV file to write (default: pipecat.wav)")
    args = parser.parse_args()
    return asyncio.run(say(args.texts, args.out))


if __name__ == "__main__":
    raise SystemExit(main())
