"""A local Pipecat voice agent that speaks with wyoming-qwen3tts.

Microphone -> speech-to-text -> LLM -> text-to-speech (this server) -> speakers. Every service is reached over
the OpenAI API, so all of them can run on your own machines: Pipecat's ``OpenAITTSService`` is pointed at
wyoming-qwen3tts (``base_url=http://SERVER:8880/v1``), the LLM at any OpenAI-compatible server (Ollama,
llama.cpp, vLLM, or OpenAI), speech-to-text at any OpenAI-compatible transcription server (e.g.
speaches / faster-whisper-server, or OpenAI).

    pip install -r examples/pipecat/requirements.txt
    QWEN3TTS_URL=http://localhost:8880 LLM_BASE_URL=http://localhost:11434/v1 LLM_MODEL=llama3.2 \
        STT_BASE_URL=http://localhost:8000/v1 python examples/pipecat/bot.py

Settings (environment variables, defaults in brackets):

* ``QWEN3TTS_URL`` [http://localhost:8880], ``QWEN3TTS_API_KEY`` [none: the server's --http-api-key],
  ``QWEN3TTS_VOICE`` [alloy]: Pipecat's OpenAI service only sends OpenAI voice names; the server maps them
  to its voices (``--openai-voices alloy=clone:anna`` makes ``alloy`` your cloned voice).
* ``LLM_BASE_URL`` [OpenAI], ``LLM_API_KEY`` [$OPENAI_API_KEY], ``LLM_MODEL`` [gpt-4o-mini].
* ``STT_BASE_URL`` [OpenAI], ``STT_API_KEY`` [$OPENAI_API_KEY], ``STT_MODEL`` [whisper-1].
* ``BOT_PROMPT``: the system prompt.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.workers.runner import WorkerRunner

PROMPT = (
    "You are a friendly voice assistant. Your answers are spoken aloud, so keep them short and plain: "
    "no lists, no markdown, no emoji."
)


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or default


def tts_service() -> OpenAITTSService:
    """Pipecat's OpenAI TTS service, talking to wyoming-qwen3tts (24 kHz 16-bit PCM, streamed)."""
    url = (_env("QWEN3TTS_URL", "http://localhost:8880") or "").rstrip("/")
    return OpenAITTSService(
        api_key=_env("QWEN3TTS_API_KEY", "none"),
        base_url=f"{url}/v1",
        settings=OpenAITTSService.Settings(model="tts-1", voice=_env("QWEN3TTS_VOICE", "alloy")),
    )


def services() -> tuple[OpenAISTTService, OpenAILLMService, OpenAITTSService]:
    openai_key = _env("OPENAI_API_KEY", "none")
    stt = OpenAISTTService(
        api_key=_env("STT_API_KEY", openai_key),
        base_url=_env("STT_BASE_URL"),
        settings=OpenAISTTService.Settings(model=_env("STT_MODEL", "whisper-1")),
    )
    llm = OpenAILLMService(
        api_key=_env("LLM_API_KEY", openai_key),
        base_url=_env("LLM_BASE_URL"),
        settings=OpenAILLMService.Settings(
            model=_env("LLM_MODEL", "gpt-4o-mini"), system_instruction=_env("BOT_PROMPT", PROMPT)
        ),
    )
    return stt, llm, tts_service()


def build_worker(transport_input: Any, transport_output: Any) -> PipelineWorker:
    """The agent's pipeline between a transport's input and output processors."""
    stt, llm, tts = services()
    context = LLMContext()
    aggregators = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    )
    pipeline = Pipeline(
        [transport_input, stt, aggregators.user(), llm, tts, transport_output, aggregators.assistant()]
    )
    # 24 kHz out: what the server sends, so Pipecat does not resample.
    return PipelineWorker(pipeline, params=PipelineParams(audio_out_sample_rate=24000))


async def main() -> None:
    # Imported here: the local transport needs PyAudio (pipecat-ai[local]), the rest of the file does not.
    from pipecat.transports.local.audio import LocalAudioTransport, LocalAudioTransportParams

    transport = LocalAudioTransport(LocalAudioTransportParams(audio_in_enabled=True, audio_out_enabled=True))
    runner = WorkerRunner()
    await runner.add_workers(build_worker(transport.input(), transport.output()))
    print("Listening; speak to the bot (Ctrl+C ends).")
    await runner.run()


if __name__ == "__main__":
    asyncio.run(main())
