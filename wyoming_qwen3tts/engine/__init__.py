"""Our Qwen3-TTS inference engine: load a checkpoint once, submit requests, stream PCM chunks.

    engine = Engine.load("Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice")
    stream = engine.submit(SpeechRequest("Hello!", speaker="ryan", language="english"))
    for chunk in stream:          # or: async for chunk in stream
        play(chunk.pcm)           # 24 kHz mono int16
    stream.cancel()               # any time
    engine.synthesize(request)    # the whole utterance at once (audio, codes)

This module is the engine's whole public face (re-exports only); the server never reaches past it.
"""

from ..core.audio import SAMPLE_RATE
from .audio import AudioError
from .checkpoint import CheckpointError
from .config import ModelConfig, peek_config
from .engine import Engine
from .options import LoadOptions, parse_dtype, resolve_device
from .policy import QUANT_CHOICES as QUANT_MODES
from .policy import ComputePlan
from .policy import plan as compute_plan
from .prompt import VoicePrompt
from .request import ChunkPolicy, RunawayGuard, SpeechRequest
from .sampling import SamplingParams
from .stream import AudioChunk, Cancelled, EngineClosed, SpeechResult, SpeechStream

__all__ = [
    "AudioChunk",
    "AudioError",
    "Cancelled",
    "ComputePlan",
    "CheckpointError",
    "ChunkPolicy",
    "Engine",
    "EngineClosed",
    "LoadOptions",
    "ModelConfig",
    "RunawayGuard",
    "SAMPLE_RATE",
    "SamplingParams",
    "SpeechRequest",
    "SpeechResult",
    "SpeechStream",
    "VoicePrompt",
    "QUANT_MODES",
    "compute_plan",
    "peek_config",
    "parse_dtype",
    "resolve_device",
]
