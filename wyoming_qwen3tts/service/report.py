"""One log line per request, the same for both front doors, so a user can see in the add-on log what each
reply was: which voice, which language (and how it was decided), how much text, time to first audio, how
much audio, how fast, how long audio was held back for a slow host and whether the listener still ran dry
(``--prebuffer``), and whether the runaway guard cut a sentence (then the line is a WARNING: the usual
cause of "it stopped mid-sentence")."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from ..core.audio import SAMPLE_RATE, SAMPLE_WIDTH

if TYPE_CHECKING:
    from .pacing import Pacer

_LOGGER = logging.getLogger("wyoming_qwen3tts.request")


@dataclass
class RequestReport:
    door: str  # "wyoming" | "http"
    voice: str
    language: Optional[str] = None
    decided_by: str = ""  # requested | voice | default | detected | model (auto)
    speed: float = 1.0
    seed: Optional[int] = None
    chars: int = 0
    sentences: int = 0
    truncated: int = 0  # sentences the runaway guard cut
    audio_bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    first_audio: Optional[float] = None
    outcome: str = "ok"  # ok | cancelled | error
    pacer: Optional["Pacer"] = None  # playback pacing (--prebuffer): hold-back and underruns

    def audio(self, pcm: bytes) -> None:
        if pcm and self.first_audio is None:
            self.first_audio = time.monotonic()
        self.audio_bytes += len(pcm)

    @property
    def audio_seconds(self) -> float:
        return self.audio_bytes / (SAMPLE_WIDTH * SAMPLE_RATE)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        ttfa = f"{self.first_audio - self.started:.2f} s" if self.first_audio is not None else "-"
        parts = [
            f"{self.door} request",
            f"voice={self.voice}",
            f"language={self.language or 'auto'} ({self.decided_by})",
            f"chars={self.chars}",
            f"sentences={self.sentences}",
            f"ttfa={ttfa}",
            f"audio={self.audio_seconds:.2f} s",
            f"x{self.audio_seconds / elapsed:.2f} real time",
        ]
        if self.speed != 1.0:
            parts.append(f"speed={self.speed:g}")
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        if self.pacer is not None:
            parts.append(self.pacer.summary())
        if self.truncated:
            parts.append(f"runaway guard cut {self.truncated} sentence(s)")
        if self.outcome != "ok":
            parts.append(self.outcome)
        return ", ".join(parts)

    def log(self) -> None:
        _LOGGER.log(logging.WARNING if self.truncated else logging.INFO, "%s", self.line())
