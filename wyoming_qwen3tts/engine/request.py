"""What a caller asks the engine for: one utterance and how its audio is cut into chunks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .prompt import VoicePrompt
from .sampling import SamplingParams


@dataclass(frozen=True)
class ChunkPolicy:
    """How many frames (80 ms each) go into each PCM chunk: a small first chunk for a low time to first
    audio, then larger ones (fewer, cheaper decoder calls). The decode is exact whatever the sizes."""

    first_frames: int = 1
    frames: int = 4

    def __post_init__(self) -> None:
        if self.first_frames < 1 or self.frames < 1:
            raise ValueError("chunk sizes must be at least one frame")


@dataclass
class SpeechRequest:
    """One utterance. Voice: `speaker` (CustomVoice), `instruct` (VoiceDesign, or CustomVoice 1.7B style
    control) or `voice` (Base, a cloned voice from `Engine.create_voice_prompt`)."""

    text: str
    language: Optional[str] = None  # None/"auto" lets the model decide
    speaker: Optional[str] = None
    instruct: Optional[str] = None
    voice: Optional[VoicePrompt] = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    non_streaming_text: Optional[bool] = None  # None = the reference's default for the model type
    chunk_policy: Optional[ChunkPolicy] = None
    max_frames: Optional[int] = None
    record: bool = False  # keep prefill embeddings and logits in the result (debugging, parity tests)
