"""Names and fixed tables of the settings (environment variables, defaults, the accepted spellings)."""

from __future__ import annotations

from ..core.languages import BCP47

# The vocabulary lives in core/vocab.py; re-exported here under the names the settings code uses.
from ..core.vocab import AUTO  # noqa: F401
from ..core.vocab import MODEL_TYPES  # noqa: F401
from ..core.vocab import DTYPE_CHOICES as _DTYPES  # noqa: F401
from ..core.vocab import QUANTIZE_CHOICES as _QUANTIZE  # noqa: F401

ENV_ARGS = "WYOMING_QWEN3TTS_ARGS"
ENV_CONFIG = "WYOMING_QWEN3TTS_CONFIG"
ENV_HTTP_API_KEY = "WYOMING_QWEN3TTS_HTTP_API_KEY"  # read when http_api_key is unset (keeps it out of `ps`)
DEFAULT_ZEROCONF_NAME = "qwen3-tts"
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
