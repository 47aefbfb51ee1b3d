"""Reference-clip checks: hard limits that refuse a clip and soft warnings that explain a poor clone.

Hard: 1-60 s, 50 MB, not silent. Soft: outside the 3-30 s that clone best, clipped samples, nearly silent,
and a transcript whose length does not fit the voiced span (ICL cloning needs the exact words; a wrong
transcript makes the model babble or repeat).
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from ..core.audio import SAMPLE_RATE  # noqa: F401 (API: the rate a reference clip is stored at)
from ..core.scripts import CJK_RE
from ..core.vocab import MAX_SPEED, MIN_SPEED, ErrorCode  # a voice's speed: the user range
from .errors import VoiceLibraryError

MIN_SECONDS, MAX_SECONDS = 1.0, 60.0  # hard limits
REC_MIN_SECONDS, REC_MAX_SECONDS = 3.0, 30.0  # recommended range (warn outside)
MAX_BYTES = 50 * 1024 * 1024
MIN_WPS, MAX_WPS = 0.5, 8.0  # transcript "words" (CJK characters count one each) per second of speech

_WORD_RE = re.compile(r"\w+")


def count_words(text: str) -> int:
    """Spoken-unit count for the transcript sanity check: CJK characters one each, other words one each."""
    cjk = len(CJK_RE.findall(text))
    return cjk + len(_WORD_RE.findall(CJK_RE.sub(" ", text)))


def check_audio(wave: np.ndarray, sr: int, transcript: Optional[str], source: str) -> list[str]:
    """Hard limits (raise) and soft warnings (returned) for a mono reference clip."""
    seconds = wave.shape[0] / sr
    if seconds < MIN_SECONDS:
        raise VoiceLibraryError(
            ErrorCode.AUDIO_TOO_SHORT,
            f"{source}: {seconds:.2f} s of audio, at least {MIN_SECONDS:g} s needed",
        )
    if seconds > MAX_SECONDS:
        raise VoiceLibraryError(
            ErrorCode.AUDIO_TOO_LONG, f"{source}: {seconds:.1f} s of audio, limit {MAX_SECONDS:g} s"
        )
    peak = float(np.max(np.abs(wave)))
    if peak < 1e-4:
        raise VoiceLibraryError(ErrorCode.AUDIO_SILENT, f"{source}: the audio is silent")
    warnings = []
    if not REC_MIN_SECONDS <= seconds <= REC_MAX_SECONDS:
        warnings.append(
            f"{source}: {seconds:.1f} s of audio; {REC_MIN_SECONDS:g}-{REC_MAX_SECONDS:g} s clone best"
        )
    clipped = float(np.mean(np.abs(wave) >= 0.999))
    if clipped > 0.001:
        warnings.append(f"{source}: {clipped:.1%} of the samples are clipped; the clone may sound distorted")
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
    if rms < 0.003:  # about -50 dBFS
        warnings.append(f"{source}: the audio is nearly silent (RMS {20 * np.log10(rms):.0f} dBFS)")
    if transcript:
        # Only the voiced span counts: leading/trailing silence says nothing about the text length.
        active = np.flatnonzero(np.abs(wave) >= 0.02 * peak)
        speech = max((active[-1] - active[0] + 1) / sr if active.size else seconds, 0.25)
        wps = count_words(transcript) / speech
        if wps < MIN_WPS or wps > MAX_WPS:
            warnings.append(
                f"{source}: the transcript has {count_words(transcript)} words for {speech:.1f} s of speech "
                f"({wps:.1f}/s); it probably does not match the clip, which makes ICL cloning unstable"
            )
    return warnings


def check_speed(value: object) -> Optional[float]:
    """A voice's speed as given (CLI, API): None or 1 = the server's default, else a number in range."""
    if value is None:
        return None
    try:
        speed = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise VoiceLibraryError(
            ErrorCode.INVALID_ARGUMENT, f"speed must be a number, got {value!r}"
        ) from None
    if not MIN_SPEED <= speed <= MAX_SPEED:  # also refuses nan
        raise VoiceLibraryError(
            ErrorCode.INVALID_ARGUMENT, f"speed must be in {MIN_SPEED}..{MAX_SPEED}, got {value}"
        )
    return None if speed == 1.0 else speed


def read_speed(value: object) -> Optional[float]:
    """The speed stored in a meta.json: a bad value is ignored (the voice still works at the default)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return check_speed(value)
    except VoiceLibraryError:
        return None
