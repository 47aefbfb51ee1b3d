"""Names and fixed tables of the settings (environment variables, defaults, the accepted spellings)."""

from __future__ import annotations

from ..core.languages import BCP47

ENV_ARGS = "WYOMING_QWEN3TTS_ARGS"
ENV_CONFIG = "WYOMING_QWEN3TTS_CONFIG"
ENV_HTTP_API_KEY = "WYOMING_QWEN3TTS_HTTP_API_KEY"  # read when http_api_key is unset (keeps it out of `ps`)
DEFAULT_ZEROCONF_NAME = "qwen3-tts"
AUTO = "auto"
MODEL_TYPES = ("custom_voice", "base", "voice_design")
# Official hub ids: Qwen/Qwen3-TTS-12Hz-<size>-<CustomVoice|Base|VoiceDesign>.

# The model's 10 languages (engine names) and their BCP-47 codes: one table, in server/language.py.
LANGUAGES = BCP47
# OpenAI voice names -> our voices (any voice name works as a target: a speaker, clone:NAME, design:NAME).
DEFAULT_OPENAI_VOICES = {
    "alloy": "vivian",
    "echo": "ryan",
    "fable": "serena",
    "nova": "aiden",
    "onyx": "eric",
    "shimmer": "dylan",
}
_DTYPES = {
    "auto": "auto",
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}
_QUANTIZE = ("auto", "none", "int8", "int4")  # engine.QUANT_MODES (not imported: settings load without torch)
