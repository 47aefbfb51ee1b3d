"""What a caller asks the engine for: one utterance, how its audio is cut into chunks, and the bound on
generations that never end."""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class RunawayGuard:
    """Stops generations that never say EOS (a top complaint about Qwen3-TTS).

    expected frames = frames_per_token * text tokens + slack_frames. Past that, the EOS logit gets a bias
    that grows by `eos_bias_per_frame` each frame; at hard_factor * expected frames (at most the caller's
    max_new_tokens - 1) the result is cut and flagged `truncated`. The bias only acts past the expected
    length, so normal-length outputs are exactly the reference's.
    """

    frames_per_token: float = 6.0
    slack_frames: int = 25
    eos_bias_per_frame: float = 0.1
    hard_factor: float = 2.5
    enabled: bool = True

    def expected_frames(self, text_tokens: int) -> int:
        return int(math.ceil(self.frames_per_token * max(text_tokens, 1))) + self.slack_frames

    def max_frames(self, text_tokens: int, max_new_tokens: int) -> int:
        limit = max_new_tokens - 1  # N sampled tokens give N - 1 frames
        if not self.enabled:
            return limit
        return min(limit, int(self.hard_factor * self.expected_frames(text_tokens)))

    def eos_bias(self, frames: int, text_tokens: int) -> float:
        if not self.enabled:
            return 0.0
        over = frames - self.expected_frames(text_tokens)
        return self.eos_bias_per_frame * over if over > 0 else 0.0


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
