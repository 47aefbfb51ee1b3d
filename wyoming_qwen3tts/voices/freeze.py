"""Freeze a design voice into a clone voice: speak a sample once with the VoiceDesign model and keep it.

A design voice is re-imagined from its description on every request (the VoiceDesign model samples a new
timbre each time, and it is the large 1.7B model). Freezing synthesizes one reference clip from the
description with a fixed seed and stores it as an ICL clone voice (transcript = the sample text), so the
voice sounds the same every time and runs on the Base model. The description stays in ``meta.json``.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from ..core.vocab import ErrorCode, ModelRole
from ..engine import SamplingParams, SpeechRequest
from .library import MAX_SECONDS, MIN_SECONDS, VoiceLibrary, VoiceLibraryError, VoiceProfile

_LOGGER = logging.getLogger(__name__)

# Two sentences per language, about 6-10 s of speech: inside the 3-30 s that clone best.
SAMPLE_TEXTS = {
    "english": "The quick brown fox jumps over the lazy dog. I hope you have a wonderful day, "
    "and that everything at home works just the way you like it.",
    "german": "Der schnelle braune Fuchs springt über den faulen Hund. Ich wünsche dir einen "
    "wunderbaren Tag, und dass zu Hause alles genau so funktioniert, wie du es magst.",
    "french": "Le vif renard brun saute par-dessus le chien paresseux. Je vous souhaite une "
    "excellente journée, et que tout fonctionne à la maison exactement comme vous l'aimez.",
    "spanish": "El rápido zorro marrón salta sobre el perro perezoso. Te deseo un día maravilloso, "
    "y que todo en casa funcione justo como a ti te gusta.",
    "italian": "La veloce volpe marrone salta sopra il cane pigro. Ti auguro una splendida "
    "giornata, e che tutto in casa funzioni proprio come piace a te.",
    "portuguese": "A rápida raposa marrom pula sobre o cão preguiçoso. Desejo a você um dia "
    "maravilhoso, e que tudo em casa funcione exatamente como você gosta.",
    "russian": "Быстрая коричневая лиса прыгает через ленивую собаку. Желаю тебе чудесного дня, "
    "и пусть дома всё работает именно так, как тебе нравится.",
    "chinese": "今天天气很好，阳光明媚。希望你度过美好的一天，家里的一切都按照你喜欢的方式运行。",
    "japanese": "今日はとても良い天気ですね。素敵な一日を過ごして、家のことがすべて思い通りに動きますように。",
    "korean": "오늘은 날씨가 정말 좋네요. 멋진 하루 보내시고, 집안의 모든 것이 원하시는 대로 잘 작동하길 바랍니다.",
}


def sample_text(language: Optional[str]) -> str:
    return SAMPLE_TEXTS.get(language or "english", SAMPLE_TEXTS["english"])


def freeze_design(
    library: VoiceLibrary,
    engine: Any,
    name: str,
    instruct: str,
    language: Optional[str] = None,
    *,
    text: Optional[str] = None,
    seed: int = 0,
    display_name: Optional[str] = None,
    overwrite: bool = False,
) -> VoiceProfile:
    """Synthesize ``text`` (default: a sample in the voice's language) with the VoiceDesign ``engine`` and
    store the clip as the ICL clone voice ``name``; the library validates the clip like any upload."""
    if engine.model_type != ModelRole.VOICE_DESIGN:
        raise VoiceLibraryError(
            ErrorCode.INVALID_ARGUMENT, f"freezing needs a VoiceDesign model; this one is {engine.model_type}"
        )
    from .library import normalize_language  # the same language rules as every other library write

    lang = normalize_language(language)
    instruct = " ".join(instruct.split())  # as stored, so re-freezing the stored text gives the same clip
    if not instruct:
        raise VoiceLibraryError(ErrorCode.INVALID_ARGUMENT, "a design voice needs an instruct text")
    spoken = " ".join((text or sample_text(lang)).split())
    _LOGGER.info("Freezing design voice %r: speaking %d characters", name, len(spoken))
    result = engine.synthesize(
        SpeechRequest(spoken, language=lang or "auto", instruct=instruct, sampling=SamplingParams(seed=seed)),
        timeout=3600,
    )
    seconds = result.seconds
    if not MIN_SECONDS <= seconds <= MAX_SECONDS or result.truncated:
        raise VoiceLibraryError(
            ErrorCode.FREEZE_FAILED,
            f"the VoiceDesign model produced {seconds:.1f} s of audio"
            + (" and was cut off" if result.truncated else "")
            + f" (a usable clip is {MIN_SECONDS:g}-{MAX_SECONDS:g} s); try another --seed or --sample-text",
        )
    return library.add_clone(
        name,
        (result.audio, result.sample_rate),
        transcript=spoken,
        language=lang,
        mode="icl",
        display_name=display_name,
        overwrite=overwrite,
        instruct=instruct,
    )
