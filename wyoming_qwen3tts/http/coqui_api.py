"""The Coqui-style ``/api/tts`` route of the community Qwen3-TTS servers, their ``/speakers`` and ``/info``.

``GET|POST /api/tts`` (query string, form or JSON): ``text`` (required), ``speaker`` (or ``speaker_id`` /
``voice``: any of our voice names), ``language`` (or ``language_id``), ``instruct``, ``audio_format``
(``wav`` default, ``ogg`` = Ogg Vorbis ``audio/ogg``, and our other formats: ``mp3``, ``opus``, ``flac``,
``pcm``), ``speed``, ``stream`` (default false) and ``model``: a model this server can load (its id, path or
folder name, or ``CustomVoice`` / ``Base`` / ``VoiceDesign``; ``qwen3-tts`` = whichever the voice needs). A
model picks the voice kind: without ``speaker`` the first voice of that model speaks; a speaker of another
model is refused. ``reference_audio`` (a file name of that server's reference folder, cloned x-vector only)
names the clone voice ``voices import`` made of that file: ``myvoice.wav`` is ``clone:myvoice``. Any other
field is refused with 400 ``invalid-field`` naming it: nothing is silently ignored.

``GET /speakers[?model=M]``: the built-in speakers of the CustomVoice model:
``{"speakers": [...], "model": ..., "default": ...}`` (empty for the other models). ``GET /info[?model=M]``:
defaults, languages and speakers, in that server's shape.
"""

from __future__ import annotations

from typing import Any, Optional

import soundfile as sf
from aiohttp import web

from ..core.languages import BCP47
from ..core.vocab import MAX_INSTRUCT_CHARS, ErrorCode, ModelRole
from ..service.models import ROLE_LABELS
from ..service.public import model_label
from ..service.voice import Voice
from ..voices.errors import VoiceLibraryError
from ..voices.importer import voice_name
from .context import context, optional_str, read_json, refuse_unknown_fields
from .encode import Format, get_format
from .errors import ApiError
from .openai_api import Job, flag, language_hint, resolve_voice, respond, speed_of

ANY_MODEL = ("", "qwen3-tts", "auto")
KNOWN_FIELDS = frozenset(
    "text speaker speaker_id voice language language_id instruct audio_format speed stream model "
    "reference_audio text_format".split()
)
# ``ogg`` is the Coqui-style servers' second format: Ogg Vorbis (libsndfile), audio/ogg like our opus.
OGG = Format("ogg", "audio/ogg", "OGG", "VORBIS")


def audio_format(value: Any) -> Format:
    key = str(value or "wav").strip().lower()
    if key == "ogg" and OGG.subtype in sf.available_subtypes("OGG"):
        return OGG
    try:
        return get_format(key)
    except ApiError as exc:
        raise ApiError(
            exc.code, exc.message.replace("use one of", "use ogg or one of"), "audio_format"
        ) from None


def model_names(request: web.Request) -> dict[str, str]:
    """Every name a ``model`` field may use (lower-case) -> the role it selects, for configured models."""
    names: dict[str, str] = {}
    for role, model in context(request).state.models.models.items():
        if not model:
            continue
        path = str(model).rstrip("/")
        for name in (path, path.split("/")[-1], ROLE_LABELS[role]):
            names.setdefault(name.lower(), role)
    return names


def model_role(request: web.Request, value: Optional[str]) -> Optional[str]:
    """The role a request's ``model`` selects; None = any. 400 naming the loadable models otherwise."""
    key = (value or "").strip().rstrip("/").lower()
    if key in ANY_MODEL:
        return None
    names = model_names(request)
    if key in names:
        return names[key]
    loadable = sorted({str(model_label(m)) for m in context(request).state.models.models.values() if m})
    raise ApiError(
        ErrorCode.INVALID_FIELD,
        f"unknown model {value!r}; this server can load {', '.join(loadable) or 'no model'} "
        f"(by folder name or as {', '.join(ROLE_LABELS.values())})",
        param="model",
    )


def pick_voice(request: web.Request, speaker: Any, role: Optional[str]) -> Optional[str]:
    """The voice name for the Job: the speaker as given, checked against the model; or the model's first
    voice when no speaker is named."""
    if role is None:
        return speaker
    label = ROLE_LABELS[role]
    if speaker:
        voice = resolve_voice(request, speaker)
        if voice.role != role:
            raise ApiError(
                ErrorCode.INVALID_FIELD,
                f"speaker {voice.name!r} is spoken by the {ROLE_LABELS[voice.role]} model, "
                f"not the {label} model",
                param="model",
            )
        return voice.name
    catalog = context(request).state.catalog
    catalog.models.check_enabled(role)
    voices: list[Voice] = [v for v in catalog.voices() if v.role == role]
    if not voices:
        raise ApiError(
            ErrorCode.INVALID_FIELD, f"the {label} model has no voice yet; name one (speaker)", "speaker"
        )
    return voices[0].name


def reference_voice(request: web.Request, filename: Any, speaker: Any) -> str:
    """The clone voice ``voices import`` made of a reference file (``anna.wav`` -> ``clone:anna``)."""
    if speaker:
        raise ApiError(
            ErrorCode.INVALID_FIELD, "name a speaker or a reference_audio, not both", "reference_audio"
        )
    stem = str(filename).replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    try:
        name = f"clone:{voice_name(stem)}"
    except VoiceLibraryError:
        name = ""
    if not name or context(request).state.catalog.lookup(name) is None:
        raise ApiError(
            ErrorCode.VOICE_NOT_FOUND,
            f"reference_audio {filename!r}: no clone voice {name or stem!r}; import the reference folder "
            "once with `python -m wyoming_qwen3tts voices import DIR`",
            param="reference_audio",
        )
    return name


async def coqui_tts(request: web.Request) -> web.StreamResponse:
    """GET/POST /api/tts"""
    params: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            params.update(await read_json(request))
        else:
            params.update(await request.post())  # a file part is refused below, never dropped silently
    refuse_unknown_fields(params, KNOWN_FIELDS, "/api/tts")
    for key, value in params.items():
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise ApiError(
                ErrorCode.INVALID_FIELD, f"{key} must be a plain value, not a file or an object", param=key
            )
    if not isinstance(params.get("text"), str):
        raise ApiError(ErrorCode.INVALID_FIELD, "text (the text to speak) is required", param="text")
    speed = params.get("speed")
    try:
        speed = float(speed) if isinstance(speed, str) else speed
    except ValueError:
        raise ApiError(ErrorCode.INVALID_FIELD, "speed must be a number", param="speed") from None
    role = model_role(request, optional_str(params, "model", 500))
    speaker = params.get("speaker") or params.get("speaker_id") or params.get("voice")
    if params.get("reference_audio"):
        speaker = reference_voice(request, params["reference_audio"], speaker)
    job = Job(
        request,
        params["text"],
        pick_voice(request, speaker, role),
        audio_format(params.get("audio_format")),
        speed=speed_of(speed),
        language=language_hint(None, optional_str(params, "language") or optional_str(params, "language_id")),
        instruct=optional_str(params, "instruct", MAX_INSTRUCT_CHARS),
        text_format=params.get("text_format"),
    )
    return await respond(request, job, stream=flag(params, "stream", False))


def _speakers(request: web.Request) -> tuple[Optional[str], list[str], Optional[str]]:
    """(model, speakers, default speaker) for the ``model`` query (default: the CustomVoice model)."""
    state = context(request).state
    role = model_role(request, request.query.get("model")) or ModelRole.CUSTOM_VOICE
    model = state.models.models.get(role)
    names = [v.name for v in state.catalog.builtin] if model and role == ModelRole.CUSTOM_VOICE else []
    default: Optional[str] = state.catalog.default_voice
    if default not in names:
        default = names[0] if names else None
    return model_label(model), names, default


async def speakers(request: web.Request) -> web.Response:
    """GET /speakers: the built-in speakers of the CustomVoice model (empty when it is off)."""
    model, names, default = _speakers(request)
    return web.json_response({"speakers": names, "model": model, "default": default})


async def info(request: web.Request) -> web.Response:
    """GET /info"""
    model, names, default = _speakers(request)
    language = context(request).state.default_language
    return web.json_response(
        {
            "default_model": model,
            "default_speaker": default,
            "default_language": language.title(),
            "supported_languages": ["Auto", *(name.title() for name in BCP47)],
            "speakers": names,
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_route("GET", "/api/tts", coqui_tts)
    app.router.add_route("POST", "/api/tts", coqui_tts)
    app.router.add_get("/speakers", speakers)
    app.router.add_get("/info", info)
