"""Voice management over HTTP: ``/v1/voices`` list, upload (clone), design, delete; the reference clip.

Everything goes through the voice library (voices/library.py) in a worker thread, so uploads get the same
validation (names, languages, 1-60 s of audio, 50 MB, not silent) and the same atomic writes as the
``voices`` command, and the running server picks changes up at once (the catalog re-reads the library).

``POST /v1/voices`` takes ``multipart/form-data`` with ``name``, optional ``display_name``, ``language``
(BCP-47 or a language name; empty = auto), ``transcript`` (the clip's exact words; without it the voice is
x-vector only), ``mode`` (``icl``/``xvector``), ``overwrite`` (true/false), ``speed`` (0.5-2.0) and the clip
as the ``audio`` (or ``file``) part; or, for a design voice, ``instruct`` instead of a clip; or, for a style
voice, ``kind=style`` with ``speaker`` (a built-in speaker) and ``instruct`` (form or JSON body).
``PATCH /v1/voices/{name}`` with ``{"speed": X}`` changes a stored voice's speed (1 or null clears it).

Every voice in the listing says which languages it speaks (``languages``, BCP-47) and the names Home
Assistant shows for it (``ha_names``: describe's language-bound voices such as ``ryan@de``, with their
descriptions; empty while its model is off).
Names are never taken from the uploaded file name, and a name that is not a plain voice name
(``../x``, ``a/b``) is refused with 400 ``invalid-name`` before anything touches the disk.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

from aiohttp import BodyPartReader, web

from ..core.languages import to_bcp47
from ..core.vocab import LIBRARY_KINDS, MAX_INSTRUCT_CHARS, MAX_TRANSCRIPT_CHARS, ErrorCode, VoiceKind
from ..service.voice import ROLES, Voice, language_codes
from ..voices.commands import with_speed
from ..voices.library import (
    MAX_BYTES,
    VoiceLibrary,
    VoiceProfile,
    normalize_name,
)
from ..voices.reference import upload_slot
from ..voices.styles import add_style, set_speed
from ..voices.validation import check_speed
from .context import context, read_json
from .errors import ApiError
from .openai_api import flag

_LOGGER = logging.getLogger(__name__)

MAX_UPLOAD_BODY = MAX_BYTES + (1 << 20)  # a multipart upload: the clip and the text fields
FIELD_LIMIT = max(MAX_TRANSCRIPT_CHARS, MAX_INSTRUCT_CHARS) * 4 + 1024  # bytes of one text field (UTF-8)
AUDIO_FIELDS = ("audio", "file")
TEXT_FIELDS = (
    "name",
    "display_name",
    "language",
    "transcript",
    "instruct",
    "mode",
    "overwrite",
    "kind",
    "speaker",
    "speed",
)
Names = dict[str, list[dict[str, Any]]]


def _library(request: web.Request) -> VoiceLibrary:
    library = context(request).state.catalog.library
    if library is None:
        raise ApiError(ErrorCode.NOT_FOUND, "this server has no voice library")
    return library


def _usable(request: web.Request, kind: str) -> bool:
    return context(request).state.models.enabled(ROLES[kind])


def ha_names(state: Any) -> Names:
    """Home Assistant's names of each voice (what describe advertises), by the voice's plain name."""
    names: Names = {}
    for voice in state.catalog.advertised():
        plain = voice.name.rpartition("@")[0] if voice.bound and "@" in voice.name else voice.name
        entry = {"name": voice.name, "description": voice.description, "language": to_bcp47(voice.language)}
        names.setdefault(plain, []).append(entry)
    for entries in names.values():  # as the languages are listed: English first (Home Assistant's default)
        entries.sort(key=lambda e: (e["language"] != "en", e["language"] or ""))
    return names


def _languages(request: web.Request, own: Optional[str]) -> list[str]:
    """The languages a voice speaks: its own, else every model language."""
    if own:
        return [to_bcp47(own) or own]
    return language_codes(context(request).state.catalog.languages)


def profile_json(
    request: web.Request, profile: VoiceProfile, names: Optional[Names] = None
) -> dict[str, Any]:
    voice_id = f"{profile.kind}:{profile.name}"
    return {
        "id": voice_id,
        "name": profile.name,
        "kind": profile.kind,
        "display_name": profile.display_name,
        "language": to_bcp47(profile.language),
        "transcript": profile.transcript,
        "mode": profile.mode,
        "instruct": profile.instruct,
        "speaker": getattr(profile, "speaker", None),
        "speed": getattr(profile, "speed", None),
        "languages": _languages(request, profile.language),
        "ha_names": (names or {}).get(voice_id, []),
        "has_audio": profile.audio_path is not None,
        "read_only": profile.read_only,
        "deletable": not profile.read_only,
        "usable": _usable(request, profile.kind),
        "created": profile.created,
        "updated": profile.updated,
    }


def builtin_json(request: web.Request, voice: Voice, names: Optional[Names] = None) -> dict[str, Any]:
    return {
        "id": voice.name,
        "name": voice.name,
        "kind": VoiceKind.BUILTIN.value,
        "display_name": voice.description,
        "language": None,
        "speaker": voice.speaker,
        "speed": None,
        "languages": _languages(request, None),
        "ha_names": (names or {}).get(voice.name, []),
        "has_audio": False,
        "read_only": True,
        "deletable": False,
        "usable": _usable(request, VoiceKind.BUILTIN),
    }


def _key(raw: str) -> str:
    """A library key from a path segment; ``clone:anna`` and ``design:anna`` name ``anna``."""
    prefix, sep, bare = raw.partition(":")
    return normalize_name(bare if sep and prefix.lower() in LIBRARY_KINDS else raw)


# -- routes -------------------------------------------------------------------------------------------------
async def list_voices(request: web.Request) -> web.Response:
    """GET /v1/voices: built-in speakers and every library voice (also those whose model is off)."""
    state = context(request).state
    profiles = await asyncio.to_thread(_library(request).list)
    names = await asyncio.to_thread(ha_names, state)  # reads the library too: off the event loop
    voices = [builtin_json(request, v, names) for v in state.catalog.builtin]
    voices += [profile_json(request, p, names) for p in profiles]
    return web.json_response({"voices": voices})


async def get_voice(request: web.Request) -> web.Response:
    """GET /v1/voices/{name}"""
    profile = await asyncio.to_thread(_library(request).get, _key(request.match_info["name"]))
    names = await asyncio.to_thread(ha_names, context(request).state)
    return web.json_response(profile_json(request, profile, names))


async def set_voice(request: web.Request) -> web.Response:
    """PATCH /v1/voices/{name}: ``{"speed": X}`` (1 or null: the server's --speed)."""
    fields = await read_json(request)
    if set(fields) != {"speed"}:
        raise ApiError(
            ErrorCode.INVALID_FIELD, 'send {"speed": X}: only the speed can be changed here', param="speed"
        )
    profile = await asyncio.to_thread(
        set_speed, _library(request), _key(request.match_info["name"]), fields["speed"]
    )
    names = await asyncio.to_thread(ha_names, context(request).state)
    _LOGGER.info("HTTP: voice %r speed %s", profile.name, profile.speed or "default")
    return web.json_response(profile_json(request, profile, names))


async def voice_audio(request: web.Request) -> web.StreamResponse:
    """GET /v1/voices/{name}/audio: the stored reference clip of a clone voice."""
    profile = await asyncio.to_thread(_library(request).get, _key(request.match_info["name"]))
    if profile.audio_path is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"voice {profile.name!r} has no reference audio")
    return web.FileResponse(profile.audio_path, headers={"Cache-Control": "no-cache"})


async def add_voice(request: web.Request) -> web.Response:
    """POST /v1/voices: a clone voice (with a clip) or a design voice (with an instruct text)."""
    if request.content_type.startswith("multipart/"):  # a clip: admitted before its body is read
        if request.content_length is not None and request.content_length > MAX_UPLOAD_BODY:
            raise ApiError(ErrorCode.REQUEST_TOO_LARGE, f"the body exceeds {MAX_UPLOAD_BODY} bytes")
        with upload_slot():  # server-busy at once without a free slot; held until the clip is stored
            fields, audio = await _read_multipart(request)
            return await _add_voice(request, fields, audio)
    if request.content_type == "application/json":
        fields = await read_json(request)
        audio = None
    elif request.content_type == "application/x-www-form-urlencoded":
        fields, audio = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}, None
    else:
        raise ApiError(
            ErrorCode.BAD_REQUEST, "send multipart/form-data (a clip), or a form or JSON (a design voice)"
        )
    return await _add_voice(request, fields, audio)


async def _add_voice(request: web.Request, fields: dict[str, Any], audio: Optional[bytes]) -> web.Response:
    for key, value in fields.items():
        numeric = key == "speed" and isinstance(value, (int, float))
        if key in TEXT_FIELDS and value is not None and not isinstance(value, (str, bool)) and not numeric:
            raise ApiError(ErrorCode.INVALID_FIELD, f"{key} must be a string", param=key)
    name = fields.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ApiError(ErrorCode.INVALID_NAME, "a voice name is required", param="name")
    normalize_name(name)  # invalid-name (path traversal and friends) before any work
    library = _library(request)
    common: dict[str, Any] = {
        "display_name": (fields.get("display_name") or "").strip() or None,
        "overwrite": flag(fields, "overwrite", False),
    }
    language = (fields.get("language") or "").strip() or None
    raw_speed = fields.get("speed")  # a form's string or a JSON number
    speed = check_speed((raw_speed.strip() or None) if isinstance(raw_speed, str) else raw_speed)
    if fields.get("kind") == "style" or (fields.get("speaker") or "").strip():
        kind = "style"
        profile = await asyncio.to_thread(
            add_style,
            library,
            name,
            fields.get("speaker") or "",
            fields.get("instruct") or "",
            language,
            speed,
            **common,
        )
        speed = None  # stored with the voice
    elif audio is not None:
        kind = "clone"
        profile = await asyncio.to_thread(
            library.add_clone,
            name,
            audio,
            fields.get("transcript"),
            language,
            (fields.get("mode") or "icl").strip().lower(),
            **common,
        )
    elif (fields.get("instruct") or "").strip():
        kind = "design"
        profile = await asyncio.to_thread(library.add_design, name, fields["instruct"], language, **common)
    else:
        raise ApiError(
            ErrorCode.INVALID_ARGUMENT, "send a reference clip (audio) or a voice description (instruct)"
        )
    if speed is not None:
        profile = await asyncio.to_thread(with_speed, library, profile, speed)
    state = context(request).state
    if state.prompts is not None:
        state.prompts.forget(profile.name)  # an overwritten voice must not keep its old prompt in memory
    names = await asyncio.to_thread(ha_names, state)
    warnings = list(profile.warnings)
    if not _usable(request, kind):
        warnings.append(f"{kind} voices are off on this server: it is saved but cannot speak yet")
    _LOGGER.info("HTTP: saved %s voice %r", kind, profile.name)
    return web.json_response(
        {"voice": profile_json(request, profile, names), "warnings": warnings}, status=201
    )


async def delete_voice(request: web.Request) -> web.Response:
    """DELETE /v1/voices/{name}"""
    key = _key(request.match_info["name"])
    await asyncio.to_thread(_library(request).remove, key)
    state = context(request).state
    if state.prompts is not None:
        state.prompts.forget(key)
    return web.json_response({"deleted": key})


async def _read_multipart(request: web.Request) -> tuple[dict[str, Any], Optional[bytes]]:
    """Text fields and the clip, each read with a size cap (nothing is buffered beyond it)."""
    reader = await request.multipart()
    fields: dict[str, Any] = {}
    audio: Optional[bytes] = None
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise ApiError(ErrorCode.BAD_REQUEST, "nested multipart bodies are not supported")
        if part.name in AUDIO_FIELDS:
            data = await _read_part(
                part, MAX_BYTES, ErrorCode.AUDIO_TOO_LARGE, f"the clip exceeds {MAX_BYTES} bytes"
            )
            audio = data or None
        elif part.name in TEXT_FIELDS:
            data = await _read_part(
                part, FIELD_LIMIT, ErrorCode.INVALID_FIELD, f"field {part.name} is too long"
            )
            fields[part.name] = data.decode(part.get_charset("utf-8"), errors="replace")
        else:
            await part.release()  # unknown fields are ignored
    return fields, audio


async def _read_part(part: BodyPartReader, limit: int, code: ErrorCode, message: str) -> bytes:
    data = bytearray()
    while True:
        chunk = await part.read_chunk(1 << 16)
        if not chunk:
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise ApiError(code, message)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/voices", list_voices)
    app.router.add_post("/v1/voices", add_voice)
    app.router.add_get("/v1/voices/{name}", get_voice)
    app.router.add_delete("/v1/voices/{name}", delete_voice)
    app.router.add_patch("/v1/voices/{name}", set_voice)
    app.router.add_get("/v1/voices/{name}/audio", voice_audio)
