"""Pipecat's own OpenAI TTS service (``OpenAITTSService`` with ``base_url`` pointing at us, a dummy key) in a
real Pipecat pipeline against the real server process on a tiny random checkpoint: the speech arrives as
``TTSAudioRawFrame``s of 24 kHz mono 16-bit PCM, as in a voice agent (examples/pipecat/). No network."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time

import aiohttp
import soundfile as sf

# Pipecat is in the dev/test extras (pipecat-ai[openai], pinned): imported, not skipped, so CI runs this.
from pipecat.frames.frames import EndFrame, ErrorFrame, Frame, TTSAudioRawFrame, TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.workers.runner import WorkerRunner

from tests.fixtures.server_process import ROOT, free_port, start_server

EXAMPLE = ROOT / "examples" / "pipecat"


class Collector(FrameProcessor):
    """The end of the pipeline: keeps the audio and error frames the TTS service pushes."""

    def __init__(self) -> None:
        super().__init__()
        self.audio: list[TTSAudioRawFrame] = []
        self.errors: list[str] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.audio.append(frame)
        elif isinstance(frame, ErrorFrame):
            self.errors.append(frame.error)
        await self.push_frame(frame, direction)


async def _ready(url: str, timeout: float = 120) -> None:
    """The Wyoming port (what start_server waits for) opens a moment before the HTTP port."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            assert time.monotonic() < deadline, "the HTTP API did not become ready"
            await asyncio.sleep(0.2)


async def _speak(base_url: str, texts: list[str]) -> Collector:
    tts = OpenAITTSService(
        api_key="dummy",
        base_url=base_url,
        settings=OpenAITTSService.Settings(model="tts-1", voice="alloy"),
    )
    collector = Collector()
    worker = PipelineWorker(
        Pipeline([tts, collector]),
        params=PipelineParams(audio_out_sample_rate=24000),
        idle_timeout_secs=None,
        enable_rtvi=False,
    )
    await worker.queue_frames([*(TTSSpeakFrame(text) for text in texts), EndFrame()])
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(runner.run(), timeout=600)
    return collector


def test_pipecat_openai_tts_service_gets_audio_frames_from_the_server(tiny_custom_voice, tmp_path):
    port = free_port()
    with open(tmp_path / "server.log", "w+") as log:
        proc, _ = start_server(
            str(tiny_custom_voice), ["--threads", "1", "--data-dir", str(tmp_path)], log, http_port=port
        )
        try:
            asyncio.run(_ready(f"http://127.0.0.1:{port}/readyz"))
            collector = asyncio.run(_speak(f"http://127.0.0.1:{port}/v1", ["Hello there.", "How are you?"]))
            # The example's own check script, as a user runs it.
            env = {**os.environ, "QWEN3TTS_URL": f"http://127.0.0.1:{port}", "OMP_NUM_THREADS": "1"}
            out = tmp_path / "say.wav"
            said = subprocess.run(
                [sys.executable, str(EXAMPLE / "say.py"), "Hello from Pipecat.", "--out", str(out)],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
        finally:
            proc.terminate()
            proc.wait(30)
        log.seek(0)
        server_log = log.read()
    assert not collector.errors, collector.errors
    assert collector.audio, server_log
    assert {(f.sample_rate, f.num_channels) for f in collector.audio} == {(24000, 1)}
    pcm = b"".join(f.audio for f in collector.audio)
    assert len(pcm) % 2 == 0 and len(pcm) > 2 * 1920  # at least one codec frame of 16-bit samples
    assert len({f.context_id for f in collector.audio}) == 2  # one context per spoken text
    assert "Traceback" not in server_log, json.dumps(server_log[-2000:])
    assert said.returncode == 0, said.stdout + said.stderr
    audio, rate = sf.read(out)
    assert rate == 24000 and audio.size > 1920


def test_the_voice_agent_example_builds_its_pipeline(monkeypatch):
    """bot.py against the pinned Pipecat: its services and pipeline are built (the microphone transport is
    replaced by plain processors; nothing is run, nothing is reached)."""
    monkeypatch.setenv("QWEN3TTS_URL", "http://127.0.0.1:1/")
    spec = importlib.util.spec_from_file_location("pipecat_bot_example", EXAMPLE / "bot.py")
    assert spec is not None and spec.loader is not None
    bot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bot)
    stt, llm, tts = bot.services()
    assert str(tts._client.base_url) == "http://127.0.0.1:1/v1/"
    worker = bot.build_worker(FrameProcessor(), FrameProcessor())
    assert isinstance(worker, PipelineWorker)
