"""What the Wyoming server advertises: the Info, rebuilt per describe from the service's voices."""

from __future__ import annotations

from wyoming.info import Attribution, Info, TtsProgram, TtsVoice

from .. import __version__
from ..core.languages import BCP47
from ..service.voice import Voice

PROGRAM_NAME = "qwen3-tts"
ATTRIBUTION = Attribution(name="Qwen", url="https://github.com/QwenLM/Qwen3-TTS")


LOADING = " - loading, ready in a moment"


def build_info(
    voices: list[Voice], languages: list[str], model_name: str, streaming: bool, loading: bool = False
) -> Info:
    """``voices``: as advertised (catalog.advertised): a voice with a language only under that language.
    ``loading``: the model still loads; the voices (from its config) are real and installed, and say so
    (Home Assistant re-reads describe every 30 s, so the marks go away by themselves)."""
    mark = LOADING if loading else ""
    return Info(
        tts=[
            TtsProgram(
                name=PROGRAM_NAME,
                # No protocol field says "SSML" (TtsProgram/TtsVoice, wyoming 1.10): the description does.
                description=f"Qwen3-TTS ({model_name}), SSML{mark}",
                attribution=ATTRIBUTION,
                installed=True,
                version=__version__,
                voices=[
                    TtsVoice(
                        name=v.name,
                        description=v.description + mark,
                        attribution=ATTRIBUTION,
                        installed=True,
                        version=__version__,
                        languages=[BCP47[v.language]] if v.language in BCP47 else languages,
                    )
                    for v in sorted(voices, key=lambda v: v.name)
                ],
                supports_synthesize_streaming=streaming,
            )
        ]
    )
