"""The OpenAI speech API (``POST /v1/audio/speech``) and its listings (``/api/tts``: coqui_api.py).

Request fields of ``/v1/audio/speech``: ``input`` (required), ``voice`` (a voice name, an OpenAI name from
the alias table, ``{"id": ...}``; missing = the default voice), ``model`` (any name; a ``-<lang>`` suffix
such as ``tts-1-de`` is a language hint), ``response_format`` (encode.py), ``speed`` (0.25-4.0, x voice's),
``instructions`` (or ``instruct``: style for built-in speakers, appended to a design voice's description,
ignored by clone voices), ``language`` (BCP-47 or a language name; wins over the suffix), ``stream`` (default
true: audio is sent with chunked transfer as it is generated; false = one complete file with a
Content-Length), ``stream_format`` (``audio``, or ``sse`` for OpenAI's ``speech.audio.delta`` events) and the
Qwen3-TTS servers' inline cloning fields (inline_clone.py). Any other field is refused, naming it.

Errors before the first audio (bad input, unknown voice, busy, model not loaded) are proper HTTP errors,
because headers are only sent once the first chunk exists. A failure after that can only cut the stream
short (the chunked body then lacks its terminator, so clients see an incomplete read, not a short file).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from typing import Any, AsyncGenerator, Optional

from aiohttp import web

from ..core.audio import SAMPLE_RATE
from ..core.errors import CodedError
from ..core.languages import BCP47, from_bcp47
from ..core.vocab import MAX_INSTRUCT_CHARS, MAX_STRETCH, MIN_STRETCH, ErrorCode
from ..service.errors import ServiceError
from ..service.speech import segments_of, speak
from ..service.ssml import is_ssml, ssml_segments
from ..service.state import check_length
from ..service.voice import Voice
from .context import STARTED, context, optional_str
from .encode import Encoder, Format, available_formats, get_format
from .errors import ApiError
from .inline_clone import check_fields, check_task_type, inline_voice, read_speech_json

_LOGGER = logging.getLogger(__name__)

# OpenAI's voice names: the ones without an alias entry speak with the default voice.
OPENAI_VOICE_NAMES = frozenset(
    "alloy ash ballad coral echo fable onyx nova sage shimmer verse marin cedar".split()
)
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
OWNER = "wyoming-qwen3tts"
_TRUE, _FALSE = ("true", "1", "on", "yes"), ("false", "0", "off", "no", "")


# -- request fields ---------------------------------------------------------------------------------------
def resolve_voice(request: web.Request, value: Any) -> Voice:
    """Our voice for a request's ``voice``: a real voice name first (a library voice may be called
    "coral"), then the OpenAI alias table, then the default voice for other OpenAI names."""
    ctx = context(request)
    catalog = ctx.state.catalog
    if isinstance(value, dict):  # OpenAI's custom voice object {"id": "..."}
        value = value.get("id")
    if value is not None and not isinstance(value, str):
        raise ApiError(ErrorCode.INVALID_FIELD, 'voice must be a string or {"id": ...}', param="voice")
    name = (value or "").strip()
    key = name.lower()
    if not name or catalog.lookup(name) is not None:
        return catalog.find(name)
    if key in ctx.voice_aliases or key in OPENAI_VOICE_NAMES:
        target = ctx.voice_aliases.get(key)
        if target and catalog.lookup(target) is not None:
            return catalog.find(target)
        _LOGGER.debug("OpenAI voice %r: %s is not available; using the default voice", key, target)
        return catalog.find(None)
    return catalog.find(name)


def language_hint(model: Optional[str], language: Optional[str]) -> Optional[str]:
    """Engine language name from ``language`` or a ``-<lang>`` model suffix; None = not given / auto."""
    if language is not None:
        key = language.strip()
        if not key or key.lower() == "auto":
            return None
        name = from_bcp47(key)
        if name is None:
            codes = ", ".join(sorted(BCP47.values()))
            raise ApiError(
                ErrorCode.INVALID_LANGUAGE,
                f"unsupported language {language!r}; use one of {codes}",
                "language",
            )
        return name
    parts = (model or "").strip().lower().split("-")
    for tail in ("-".join(parts[-2:]), parts[-1]):
        if len(parts) > 1 and tail and from_bcp47(tail):  # tts-1-de, tts-1-pt-br, qwen3-tts-german
            return from_bcp47(tail)
    return None


def speed_of(value: Any) -> float:
    if value is None:
        return 1.0
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not MIN_STRETCH <= value <= MAX_STRETCH
    ):
        raise ApiError(
            ErrorCode.INVALID_FIELD, f"speed must be a number from {MIN_STRETCH} to {MAX_STRETCH}", "speed"
        )
    return float(value)


def flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:  # form and query values
        value = value.lower() in _TRUE
    if not isinstance(value, bool):
        raise ApiError(ErrorCode.INVALID_FIELD, f"{key} must be true or false", param=key)
    return value


# -- synthesis ----------------------------------------------------------------------------------------------
class Job:
    """One validated request: text, voice and output options."""

    def __init__(
        self,
        request: web.Request,
        text: Any,
        voice: Any,
        fmt: Format,
        speed: float = 1.0,
        language: Optional[str] = None,
        instruct: Optional[str] = None,
        resolved: Optional[Voice] = None,
        text_format: Any = None,
    ) -> None:
        state = context(request).state
        if not isinstance(text, str):
            raise ApiError(ErrorCode.INVALID_FIELD, "input must be a string", param="input")
        check_length(state, text)
        try:
            ssml = is_ssml(text_format)
        except ServiceError as exc:
            raise ApiError(ErrorCode.INVALID_FIELD, exc.message, param="text_format") from None
        self.segments = [] if ssml else segments_of(text)
        self.voice = resolved or resolve_voice(request, voice)  # resolved: an inline clone voice
        if ssml:  # say-as reads in the reply's language: known once the voice is
            self.segments = ssml_segments(state, self.voice, text, language)
        self.format = fmt
        self.speed = speed
        self.language = language
        self.instruct = instruct.strip() if instruct and instruct.strip() else None
        if self.instruct and len(self.instruct) > MAX_INSTRUCT_CHARS:
            raise ApiError(
                ErrorCode.INVALID_FIELD,
                f"instructions are longer than {MAX_INSTRUCT_CHARS} chars",
                "instructions",
            )
        self.state = state
        self.chars = len(text)

    async def audio(self, streaming: bool) -> AsyncGenerator[bytes, None]:
        """Encoded bytes as they become ready (streaming) or the whole file at the end."""
        encoder = Encoder(self.format, streaming)

        def convert(pcm: bytes, final: bool) -> bytes:
            data = encoder.feed(pcm) if pcm else b""
            return data + encoder.finish() if final else data

        async def run(pcm: bytes, final: bool = False) -> bytes:
            if not encoder.heavy:
                return convert(pcm, final)
            return await asyncio.to_thread(convert, pcm, final)  # numpy/lame work off the event loop

        # A stream is paced for a listener playing it as it arrives (service/pacing.py); a file is not.
        # The request's speed goes into the reply's one stretcher (times the voice's speed): one pass.
        chunks = speak(
            self.state,
            self.voice,
            self.segments,
            self.language,
            self.instruct,
            paced=streaming,
            speed=self.speed,
        )
        async with contextlib.aclosing(chunks):
            async for pcm in chunks:
                data = await run(pcm)
                if data:
                    yield data
        tail = await run(b"", final=True)
        if tail:
            yield tail


async def respond(request: web.Request, job: Job, stream: bool, sse: bool = False) -> web.StreamResponse:
    """Waits for the first audio (so that errors are still HTTP errors), then sends the rest."""
    stream = stream and job.format.streamable  # flac: always whole (encode.py)
    audio = job.audio(streaming=stream or sse)
    async with contextlib.aclosing(audio):
        first = await anext(audio, b"")
        if not stream and not sse:
            return web.Response(body=first, content_type=job.format.content_type, headers=_headers(job))
        if sse:
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
        else:
            response = web.StreamResponse(headers={"Content-Type": job.format.content_type, **_headers(job)})
        response.enable_chunked_encoding()
        await response.prepare(request)
        request[STARTED] = True  # from here on, errors can only cut the stream (app.py's middleware)
        try:
            data = first
            while True:
                if data:
                    await response.write(_sse_delta(data) if sse else data)
                data = await anext(audio, None)  # type: ignore[arg-type]  # None marks the end
                if data is None:
                    break
        except (ConnectionError, asyncio.CancelledError):
            _LOGGER.debug("HTTP client went away during a stream")
            raise
        except Exception as exc:  # after the headers: cut the stream short (SSE: say why first)
            code, text = (
                (exc.code, exc.message)
                if isinstance(exc, CodedError)
                else (ErrorCode.SYNTHESIS_FAILED, str(exc))
            )
            _LOGGER.warning(
                "HTTP stream failed after its start: %s: %s",
                code,
                text,
                exc_info=not isinstance(exc, ServiceError),
            )
            if sse:
                await response.write(_sse({"type": "error", "error": {"code": code, "message": text}}))
            if request.transport is not None:  # no terminating chunk: clients see an incomplete body
                request.transport.abort()
            return response
        if sse:
            usage = {"input_tokens": job.chars, "output_tokens": 0, "total_tokens": job.chars}
            await response.write(_sse({"type": "speech.audio.done", "usage": usage}))
        await response.write_eof()
        return response


def _headers(job: Job) -> dict[str, str]:
    headers = {"X-Voice": job.voice.name}
    if job.format.name == "pcm":
        headers["X-Sample-Rate"] = str(SAMPLE_RATE)  # raw s16le mono: say the rate somewhere
    return headers


def _sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()


def _sse_delta(data: bytes) -> bytes:
    return _sse({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")})


# -- routes -------------------------------------------------------------------------------------------------
async def speech(request: web.Request) -> web.StreamResponse:
    """POST /v1/audio/speech (and /v1/audio/voice-clone, the same request with ``ref_audio``)"""
    with contextlib.ExitStack() as slots:  # an upload slot while a large body is read and its clip decoded
        body = await read_speech_json(request, slots)
        check_fields(body)
        if "input" not in body:
            raise ApiError(ErrorCode.INVALID_FIELD, "input (the text to speak) is required", param="input")
        model = optional_str(body, "model", 200)
        stream_format = (optional_str(body, "stream_format", 20) or "audio").lower()
        if stream_format not in ("audio", "sse"):
            raise ApiError(
                ErrorCode.INVALID_FIELD, "stream_format must be audio or sse", param="stream_format"
            )
        job = Job(
            request,
            body["input"],
            body.get("voice"),
            get_format(body.get("response_format") or "mp3"),
            speed=speed_of(body.get("speed")),
            language=language_hint(model, optional_str(body, "language", 50)),
            instruct=optional_str(
                body, "instructions" if "instructions" in body else "instruct", MAX_INSTRUCT_CHARS
            ),
            resolved=await inline_voice(request, body),
            text_format=body.get("text_format"),
        )
    check_task_type(body, job.voice)
    return await respond(request, job, stream=flag(body, "stream", True), sse=stream_format == "sse")


async def audio_voices(request: web.Request) -> web.Response:
    """GET /v1/audio/voices: what ``voice`` accepts (the shape OpenWebUI reads: voices[].id / .name)."""
    ctx = context(request)
    voices = [
        {
            "id": v.name,
            "name": v.description,
            "kind": v.kind,
            "language": BCP47.get(v.language) if v.language else None,
        }
        for v in sorted(await asyncio.to_thread(ctx.state.voices), key=lambda v: v.name)  # lists the library
    ]
    return web.json_response({"voices": voices, "aliases": ctx.voice_aliases})


def _model_ids(request: web.Request) -> list[str]:
    ids = ["qwen3-tts", *OPENAI_MODELS]
    return ids + [name for name in context(request).model_names if name not in ids]


async def models(request: web.Request) -> web.Response:
    """GET /v1/models (OpenAI's list shape). Every model name is accepted by the speech route."""
    data = [{"id": i, "object": "model", "created": 0, "owned_by": OWNER} for i in _model_ids(request)]
    return web.json_response({"object": "list", "data": data})


async def audio_models(request: web.Request) -> web.Response:
    """GET /v1/audio/models (OpenWebUI reads models[].id), with the formats we can encode."""
    return web.json_response(
        {"models": [{"id": i} for i in _model_ids(request)], "response_formats": available_formats()}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_post("/v1/audio/voice-clone", speech)
    app.router.add_get("/v1/audio/voices", audio_voices)
    app.router.add_get("/v1/audio/models", audio_models)
    app.router.add_get("/v1/models", models)
