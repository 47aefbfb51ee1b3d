"""The request fields of the OpenAI-compatible Qwen3-TTS servers on ``/v1/audio/speech``: inline cloning
(``ref_audio``, ``ref_text``, ``x_vector_only_mode``), ``task_type``, and the check that refuses unknown
fields.

``ref_audio`` is the reference clip, base64-encoded (plain or as a ``data:audio/...;base64,`` URL) in any
format the voice library reads (wav, flac, ogg, mp3); URLs and server paths are refused (the server fetches
nothing). ``ref_text`` is the clip's transcript (in-context cloning, required unless ``x_vector_only_mode`` is
true: speaker embedding only). The clip gets the uploads' checks and limits and the voice prompt cache
(voices/inline.py), so sending the same clip again costs nothing. With ``ref_audio`` the clip is the voice:
``voice`` (which the OpenAI SDK always sends) is not used. The Base model speaks it.

``POST /v1/audio/voice-clone`` (that server's dedicated route) is the same request; ``GET
/v1/audio/voice-clone/capabilities`` says whether cloning works here.

Back-pressure: a body larger than ``SMALL_BODY`` can only be a clip, so it takes one of the upload slots
(voices/reference.py, shared with ``POST /v1/voices``) before it is read - at once when ``Content-Length``
says so, else once that much has arrived - and keeps it until the clip is decoded; without a free slot the
client gets 503 ``server-busy`` before it has sent its body. A smaller clip takes its slot to be decoded.
Parsing a large body and decoding base64 run in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
from typing import Any, Optional

from aiohttp import web

from ..core.vocab import MAX_TRANSCRIPT_CHARS, ErrorCode, ModelRole
from ..service.models import ROLE_LABELS
from ..service.voice import Voice
from ..voices.inline import InlineVoices
from ..voices.library import MAX_BYTES
from ..voices.reference import upload_slot
from .context import context, json_object, refuse_unknown_fields
from .errors import ApiError

OPENAI_FIELDS = frozenset("model input voice instructions response_format speed stream_format".split())
OUR_FIELDS = frozenset({"language", "stream", "text_format"})  # text_format: "text" or "ssml"
# From the OpenAI-compatible Qwen3-TTS servers. normalization_options: their text normalisation switches; our
# text cleanup (service/textclean.py) always runs, so the object is accepted and its switches have no effect.
COMPAT_FIELDS = frozenset(
    "ref_audio ref_text x_vector_only_mode task_type instruct normalization_options".split()
)
SPEECH_FIELDS = OPENAI_FIELDS | OUR_FIELDS | COMPAT_FIELDS
# A JSON body carrying a clip of up to MAX_BYTES as base64 (4/3 larger), plus the text fields.
MAX_SPEECH_BODY = MAX_BYTES * 4 // 3 + (1 << 20)
# Text, voice and options take a few tens of KB at most (max_text_chars, instructions): a body beyond this
# carries a clip and needs an upload slot before more of it is read; it is parsed in a worker thread.
SMALL_BODY = 256 << 10
_DATA_URL = re.compile(r"data:([\w.+/-]*)((?:;[\w.+-]+=[\w.+-]+)*)(;base64)?,", re.ASCII)
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


class InlineHolder:
    """The app's InlineVoices, made on first use (the library exists only once the state does)."""

    def __init__(self) -> None:
        self.voices: Optional[InlineVoices] = None


INLINE = web.AppKey("inline_voices", InlineHolder)


async def read_speech_json(request: web.Request, slots: contextlib.ExitStack) -> dict[str, Any]:
    """The JSON object body of a speech request, with room for a base64 clip (the app-wide body cap is
    sized for text); invalid-json / request-too-large / server-busy otherwise. A body over ``SMALL_BODY``
    enters an upload slot into ``slots`` (the caller holds it until the clip is decoded)."""
    declared = request.content_length
    if declared is not None and declared > MAX_SPEECH_BODY:
        raise ApiError(ErrorCode.REQUEST_TOO_LARGE, f"the body exceeds {MAX_SPEECH_BODY} bytes")
    admitted = False
    if declared is not None and declared > SMALL_BODY:
        slots.enter_context(upload_slot())  # before a byte of the body is read
        admitted = True
    data = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        data += chunk
        if len(data) > MAX_SPEECH_BODY:
            raise ApiError(ErrorCode.REQUEST_TOO_LARGE, f"the body exceeds {MAX_SPEECH_BODY} bytes")
        if not admitted and len(data) > SMALL_BODY:  # chunked, or more than it said
            slots.enter_context(upload_slot())
            admitted = True
    if len(data) <= SMALL_BODY:
        return json_object(request, data)
    return await asyncio.to_thread(json_object, request, data)  # a large body: off the event loop


def check_fields(body: dict[str, Any]) -> None:
    """Refuses a field we do not implement, naming it (a silently ignored field hides a client's mistake)."""
    refuse_unknown_fields(body, SPEECH_FIELDS, "/v1/audio/speech")
    options = body.get("normalization_options")
    if options is not None and not isinstance(options, dict):
        raise ApiError(
            ErrorCode.INVALID_FIELD, "normalization_options must be an object", "normalization_options"
        )


def decode_audio(value: Any) -> bytes:
    """The bytes of a base64 ``ref_audio`` (plain, or a ``data:`` URL with ``;base64``)."""
    if not isinstance(value, str) or not value.strip():
        raise ApiError(
            ErrorCode.INVALID_FIELD, "ref_audio must be a base64-encoded audio file", param="ref_audio"
        )
    text = value.strip()
    match = _DATA_URL.match(text)
    if match:
        if not match.group(3):
            raise ApiError(
                ErrorCode.INVALID_FIELD, "a ref_audio data: URL must be base64 (;base64,)", "ref_audio"
            )
        text = text[match.end() :]
    # Not base64 (":", "." and "~" are outside its alphabet), so no clip: a URL or a path. A plain "/..." may
    # well be base64 (an MP3 frame starts with 0xFF), so only one with a dot counts as a path.
    elif ":" in text or text.startswith(("./", "~")) or (text.startswith("/") and "." in text):
        raise ApiError(
            ErrorCode.INVALID_FIELD,
            "ref_audio must be the clip itself, base64-encoded; URLs and paths are not read",
            "ref_audio",
        )
    text = re.sub(r"\s+", "", text)
    if len(text) * 3 // 4 > MAX_BYTES:
        raise ApiError(ErrorCode.AUDIO_TOO_LARGE, f"ref_audio exceeds {MAX_BYTES} bytes", param="ref_audio")
    try:
        altchars = b"-_" if ("-" in text or "_" in text) else None  # URL-safe base64 too
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(ErrorCode.INVALID_FIELD, "ref_audio is not valid base64", param="ref_audio") from None


def _bool(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    if not isinstance(value, bool):
        raise ApiError(ErrorCode.INVALID_FIELD, f"{key} must be true or false", param=key)
    return value


def clone_request(body: dict[str, Any]) -> Optional[tuple[bytes, Optional[str], str]]:
    """(clip, transcript, mode) of a request with ``ref_audio``; None without one. ``ref_text`` or
    ``x_vector_only_mode`` without ``ref_audio`` is refused rather than ignored."""
    if body.get("ref_audio") is None:
        for key in ("ref_text", "x_vector_only_mode"):
            if body.get(key) not in (None, False, ""):
                raise ApiError(
                    ErrorCode.INVALID_FIELD, f"{key} needs ref_audio (the reference clip)", param=key
                )
        return None
    xvector = _bool(body, "x_vector_only_mode")
    transcript = body.get("ref_text")
    if transcript is not None and not isinstance(transcript, str):
        raise ApiError(ErrorCode.INVALID_FIELD, "ref_text must be a string", param="ref_text")
    transcript = " ".join(transcript.split()) if transcript else None
    if transcript and len(transcript) > MAX_TRANSCRIPT_CHARS:
        raise ApiError(
            ErrorCode.INVALID_FIELD, f"ref_text is longer than {MAX_TRANSCRIPT_CHARS} chars", "ref_text"
        )
    if not xvector and not transcript:
        raise ApiError(
            ErrorCode.INVALID_FIELD,
            "ref_text (the clip's transcript) is required unless x_vector_only_mode is true",
            param="ref_text",
        )
    return decode_audio(body["ref_audio"]), None if xvector else transcript, "xvector" if xvector else "icl"


async def inline_voice(request: web.Request, body: dict[str, Any]) -> Optional[Voice]:
    """The request's inline clone voice (stored and validated like an upload), or None without ref_audio.
    Holds an upload slot (server-busy without one) while the clip is decoded: the worker threads are
    shared with every other route."""
    if body.get("ref_audio") is None:
        clone_request(body)  # refuses ref_text / x_vector_only_mode without a clip
        return None
    state = context(request).state
    with upload_slot():  # re-entrant: a large body took it before it was read
        clone = await asyncio.to_thread(clone_request, body)  # base64: off the event loop
        assert clone is not None
        body["ref_audio"] = None  # the base64 text is not kept for the whole synthesis
        state.models.check_enabled(ModelRole.BASE)  # model-not-loaded before any decoding work
        holder = request.app[INLINE]
        if holder.voices is None:
            holder.voices = InlineVoices.beside(state.catalog.library, state.prompts)
        profile = await asyncio.to_thread(holder.voices.profile, *clone)
    return Voice(
        name=profile.name[: len("inline:") + 12],
        description="inline reference",
        kind="clone",
        profile=profile,
    )


def check_task_type(body: dict[str, Any], voice: Voice) -> None:
    """``task_type`` (CustomVoice / Base / VoiceDesign) must name the model that speaks the voice."""
    task = body.get("task_type")
    if task is None:
        return
    labels = {label.lower(): role for role, label in ROLE_LABELS.items()}
    if not isinstance(task, str) or task.strip().lower() not in labels:
        raise ApiError(
            ErrorCode.INVALID_FIELD,
            f"task_type must be one of {', '.join(ROLE_LABELS.values())}",
            "task_type",
        )
    if labels[task.strip().lower()] != voice.role:
        raise ApiError(
            ErrorCode.INVALID_FIELD,
            f"task_type {task} does not fit voice {voice.name!r} "
            f"(spoken by the {ROLE_LABELS[voice.role]} model)",
            param="task_type",
        )


async def capabilities(request: web.Request) -> web.Response:
    """GET /v1/audio/voice-clone/capabilities"""
    models = context(request).state.models
    supported = models.enabled(ModelRole.BASE)
    return web.json_response(
        {
            "supported": supported,
            "model_type": ModelRole.BASE.value if supported else None,
            "icl_mode_available": supported,
            "x_vector_mode_available": supported,
        }
    )


def add_routes(app: web.Application) -> None:
    app[INLINE] = InlineHolder()
    app.router.add_get("/v1/audio/voice-clone/capabilities", capabilities)
