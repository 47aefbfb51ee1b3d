"""The project's vocabulary, declared once: model roles, voice kinds, quantize modes, dtype names, error
codes, the speed range and the text limits. Every other module imports these names; tests/test_layers.py
fails on a second definition (the same name assigned elsewhere, or a literal tuple/set of an enum's values).

The enums are ``str`` enums whose ``str()`` and f-string form is the plain value, so they travel on the wire
(Wyoming ``error`` codes, JSON bodies, config values) exactly as the bare strings did.
"""

from __future__ import annotations

from enum import Enum


class _Name(str, Enum):
    """A ``str`` enum that formats as its value (like 3.11's ``StrEnum``, which Python 3.10 lacks)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


# -- models ----------------------------------------------------------------------------------------
class ModelRole(_Name):
    """A checkpoint's ``tts_model_type``, and the role it fills: which voices it speaks."""

    CUSTOM_VOICE = "custom_voice"  # built-in speakers (and style voices)
    BASE = "base"  # clone voices
    VOICE_DESIGN = "voice_design"  # design voices

    @property
    def label(self) -> str:
        """The name in the official hub ids and in messages (Qwen/Qwen3-TTS-12Hz-1.7B-<label>)."""
        return _ROLE_LABELS[self]

    @property
    def setting(self) -> str:
        """The flag that names this role's model."""
        return _ROLE_SETTINGS[self]


_ROLE_LABELS = {
    ModelRole.CUSTOM_VOICE: "CustomVoice",
    ModelRole.BASE: "Base",
    ModelRole.VOICE_DESIGN: "VoiceDesign",
}
_ROLE_SETTINGS = {
    ModelRole.CUSTOM_VOICE: "--model",
    ModelRole.BASE: "--clone-model",
    ModelRole.VOICE_DESIGN: "--design-model",
}
MODEL_TYPES = tuple(role.value for role in ModelRole)


# -- voices ----------------------------------------------------------------------------------------
class VoiceKind(_Name):
    BUILTIN = "builtin"  # one of the CustomVoice model's speakers
    CLONE = "clone"  # a reference clip (library)
    DESIGN = "design"  # a described voice (library)
    STYLE = "style"  # a built-in speaker + an instruct (library)

    @property
    def role(self) -> ModelRole:
        """The model that speaks this kind of voice."""
        return _KIND_ROLES[self]


_KIND_ROLES = {
    VoiceKind.BUILTIN: ModelRole.CUSTOM_VOICE,
    VoiceKind.CLONE: ModelRole.BASE,
    VoiceKind.DESIGN: ModelRole.VOICE_DESIGN,
    VoiceKind.STYLE: ModelRole.CUSTOM_VOICE,
}
LIBRARY_KINDS = tuple(kind.value for kind in VoiceKind if kind is not VoiceKind.BUILTIN)  # stored on disk


# -- compute ---------------------------------------------------------------------------------------
AUTO = "auto"  # the value that lets the server choose (dtype, quantize, clone/design model)


class QuantizeMode(_Name):
    AUTO = AUTO  # the fastest mode that passes the quality gates on this hardware (engine/policy.py)
    NONE = "none"
    INT8 = "int8"
    INT4 = "int4"


QUANTIZE_CHOICES = tuple(mode.value for mode in QuantizeMode)  # what a user may choose
QUANTIZE_MODES = tuple(
    mode.value for mode in QuantizeMode if mode is not QuantizeMode.AUTO
)  # what an engine runs


class DType(_Name):
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"


# Accepted spellings -> the canonical dtype name (settings accept ``auto`` too: DTYPE_CHOICES).
DTYPE_NAMES = {
    "float32": DType.FLOAT32.value,
    "fp32": DType.FLOAT32.value,
    "bfloat16": DType.BFLOAT16.value,
    "bf16": DType.BFLOAT16.value,
    "float16": DType.FLOAT16.value,
    "fp16": DType.FLOAT16.value,
}
DTYPE_CHOICES = {AUTO: AUTO, **DTYPE_NAMES}


# -- errors ----------------------------------------------------------------------------------------
class ErrorCode(_Name):
    """Stable error codes (documented in the README): the Wyoming ``error`` event's ``code`` and the HTTP
    JSON error's ``code``; core/errors.py maps each to its HTTP status."""

    BAD_REQUEST = "bad-request"
    EMPTY_TEXT = "empty-text"
    TEXT_TOO_LONG = "text-too-long"
    VOICE_NOT_FOUND = "voice-not-found"
    VOICE_UNUSABLE = "voice-unusable"
    SERVER_BUSY = "server-busy"
    SERVER_STOPPING = "server-stopping"
    SYNTHESIS_FAILED = "synthesis-failed"
    MODEL_NOT_LOADED = "model-not-loaded"
    MODEL_LOADING = "model-loading"
    TIMEOUT = "timeout"  # Wyoming: an open stream idle too long
    # The voice library's
    INVALID_NAME = "invalid-name"
    INVALID_LANGUAGE = "invalid-language"
    INVALID_ARGUMENT = "invalid-argument"
    VOICE_EXISTS = "voice-exists"
    VOICE_CORRUPT = "voice-corrupt"
    VOICE_READ_ONLY = "voice-read-only"
    VOICE_QUOTA = "voice-quota"
    AUDIO_UNREADABLE = "audio-unreadable"
    AUDIO_TOO_SHORT = "audio-too-short"
    AUDIO_TOO_LONG = "audio-too-long"
    AUDIO_TOO_LARGE = "audio-too-large"
    AUDIO_SILENT = "audio-silent"
    FREEZE_FAILED = "freeze-failed"
    # HTTP's
    INVALID_JSON = "invalid-json"
    INVALID_FIELD = "invalid-field"
    UNSUPPORTED_FORMAT = "unsupported-format"
    INVALID_API_KEY = "invalid-api-key"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not-found"
    METHOD_NOT_ALLOWED = "method-not-allowed"
    REQUEST_TOO_LARGE = "request-too-large"
    INTERNAL_ERROR = "internal-error"
    NOT_READY = "not-ready"


# -- speed -----------------------------------------------------------------------------------------
# The speaking rate a user may ask for (--speed, a voice's speed, a request's speed): speech stays natural.
MIN_SPEED, MAX_SPEED = 0.5, 2.0
# The time-stretcher's own technical range (core/tempo.py). Wider than the user range because SSML
# <prosody rate> multiplies the voice's speed (0.5 x 0.5 = 0.25 .. 2 x 2 = 4, clamped to this range in
# service/delivery.py); WSOLA quality stays acceptable out to these ends.
MIN_STRETCH, MAX_STRETCH = 0.25, 4.0


# -- text limits -----------------------------------------------------------------------------------
DEFAULT_MAX_TEXT_CHARS = 5000  # --max-text-chars: the longest text one request may speak
MAX_TRANSCRIPT_CHARS = 5000  # a clone voice's reference transcript (ref_text)
MAX_INSTRUCT_CHARS = 2000  # a voice description / style instruct (instructions)
MAX_DISPLAY_NAME_CHARS = 100  # advertised in every describe: bounded, so is the describe


# -- engine defaults (the library's LoadOptions equal the server's settings) ---------------------------------
# quantize: the fastest mode that passes the quality gates on this hardware (engine/policy.py)
DEFAULT_QUANTIZE = QuantizeMode.AUTO.value
DEFAULT_SLOTS = 4  # KV-cache slots of an engine: requests it decodes together
