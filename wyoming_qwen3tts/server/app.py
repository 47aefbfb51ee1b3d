"""Server start-up: load and warm the model, then serve Wyoming (and announce it over zeroconf)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from functools import partial
from typing import Optional

from wyoming.server import AsyncServer, AsyncStdioServer, AsyncTcpServer

from ..engine import Engine, SamplingParams, SpeechRequest
from ..settings import Settings
from .handler import Qwen3TtsEventHandler, ServerState
from .info import Voice, build_info, builtin_voices, language_codes

_LOGGER = logging.getLogger(__name__)


def load_engine(settings: Settings) -> Engine:
    return Engine.load(
        settings.model,
        device=settings.device,
        dtype=settings.dtype,
        slots=settings.slots,
        cache_dir=settings.cache_dir,
        local_files_only=settings.local_files_only,
    )


def warm_up(engine: Engine, voices: list[Voice]) -> float:
    """One short synthesis before the port opens: first requests then meet warm kernels and caches."""
    started = time.monotonic()
    voice = voices[0]
    request = SpeechRequest(
        "Ready.", speaker=voice.speaker, sampling=SamplingParams(max_new_tokens=4, seed=0)
    )
    engine.synthesize(request, timeout=600)
    return time.monotonic() - started


def make_state(engine: Engine, settings: Settings) -> ServerState:
    voices_now = builtin_voices(engine.speakers)
    if not voices_now:
        raise SystemExit(
            f"{settings.model} is a {engine.model_type} model without built-in voices; "
            "serve a CustomVoice model (clone and designed voices come from the voice library)"
        )
    default_voice = settings.voice
    if default_voice and default_voice.lower() not in {v.name for v in voices_now}:
        raise SystemExit(f"--voice {default_voice!r} is not one of: {', '.join(v.name for v in voices_now)}")
    languages = language_codes(engine.languages)
    model_name = str(settings.model).rstrip("/").split("/")[-1]

    def voices() -> list[Voice]:
        return list(voices_now)

    return ServerState(
        engine=engine,
        voices=voices,
        info=lambda: build_info(voices(), languages, model_name, settings.streaming),
        default_voice=default_voice,
        default_language=settings.language,
        samples_per_chunk=settings.samples_per_chunk,
        max_concurrent=settings.max_concurrent,
        max_text_chars=settings.max_text_chars,
        streaming=settings.streaming,
    )


async def serve(
    settings: Settings,
    state: ServerState,
    ready: Optional[asyncio.Event] = None,
    stop: Optional[asyncio.Event] = None,
) -> None:
    """Serves until SIGTERM/SIGINT (or `stop` is set); `ready` is set once the port is open."""
    server = AsyncServer.from_uri(settings.uri)
    announcer = None
    factory = partial(Qwen3TtsEventHandler, state)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if isinstance(server, AsyncStdioServer):  # one client on stdin/stdout, until it closes
            _LOGGER.info("Ready: serving %s", settings.uri)
            await server.run(factory)
            return
        await server.start(factory)
        if settings.zeroconf_name is not None and isinstance(server, AsyncTcpServer):
            announcer = await _announce(settings.zeroconf_name, server)
        _LOGGER.info("Ready: serving %s", settings.uri)
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        _LOGGER.info("Stopping")
        for handler in list(state.handlers):
            await handler.shutdown()
        await server.stop()
        if announcer is not None:
            await announcer.stop()


async def _announce(name: str, server: AsyncTcpServer):
    """Zeroconf after the port is open (a discovered server must accept connections). A failure to
    announce is logged, not fatal: the server is still reachable by address."""
    from .discovery import DiscoveryError, ServiceAnnouncer

    announcer = ServiceAnnouncer()
    try:
        registered = await announcer.start(name, server.host, server.port)
    except DiscoveryError as exc:
        _LOGGER.warning("zeroconf announcement failed: %s", exc)
        return None
    _LOGGER.info("Announced over zeroconf as %s at %s:%s", registered, announcer.address, server.port)
    return announcer


def run(settings: Settings) -> int:
    started = time.monotonic()
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    if settings.clone_model:
        _LOGGER.warning("--clone-model is not used yet: clone voices arrive with the voice library")
    engine = load_engine(settings)
    try:
        state = make_state(engine, settings)
        warm = warm_up(engine, state.voices())
        _LOGGER.info(
            "Model %s loaded and warmed up in %.1f s (warm-up %.1f s); voices: %s",
            settings.model,
            time.monotonic() - started,
            warm,
            ", ".join(v.name for v in state.voices()),
        )
        asyncio.run(serve(settings, state))
    finally:
        engine.close()
    return 0
