"""The wiring of the whole server: load and warm the model, build the shared service state, then serve both
front doors - Wyoming (announced over zeroconf) and the HTTP API - on one event loop and the same engines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from functools import partial
from typing import Callable, Optional

from wyoming.server import AsyncServer, AsyncStdioServer, AsyncTcpServer

from .engine import Engine, resolve_device
from .http.app import HttpServer
from .server.discovery import DiscoveryError, ServiceAnnouncer
from .server.handler import Qwen3TtsEventHandler
from .server.info import build_info
from .server.reader import Limits
from .service.catalog import VoiceCatalog
from .service.connections import ConnectionCounter
from .service.delivery import Delivery
from .service.idle import idle_reaper
from .service.models import ROLE_LABELS, ModelPool, warm_up
from .service.roles import role_models
from .service.state import ServerState
from .service.voice import builtin_voices, language_codes
from .settings import Settings
from .voices.library import VoiceLibrary
from .voices.prompts import PromptCache

_LOGGER = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """A clear, fatal start-up problem (logged as one line, exit code 1)."""


def engine_loader(settings: Settings) -> Callable[[str], Engine]:
    """Loads any of the configured models with the server's device, dtype and slots."""

    quantize, dtype = settings.quantize, settings.dtype
    if quantize in ("int8", "int4") and resolve_device(settings.device).type != "cpu":
        # The add-on offers one option set for CPU and ROCm hosts: a GPU simply runs bf16.
        _LOGGER.warning("quantize=%s applies on CPU only; ignored on the GPU", quantize)
        quantize = "none"

    def load(model: str) -> Engine:
        return Engine.load(
            model,
            device=settings.device,
            dtype=dtype,
            slots=settings.slots,
            cache_dir=settings.cache_dir,
            local_files_only=settings.local_files_only,
            quantize=quantize,
            adaptive_threads=True,  # a Home Assistant host runs other add-ons beside us
        )

    return load


def load_engine(settings: Settings) -> Engine:
    return engine_loader(settings)(settings.model)


def make_state(
    engine: Engine, settings: Settings, loader: Optional[Callable[[str], Engine]] = None
) -> ServerState:
    """Server state around the loaded main model; other models load through ``loader`` when needed."""
    pool = ModelPool(
        role_models(settings),
        loader or engine_loader(settings),
        max_loaded=settings.max_loaded_models,
        on_demand=not settings.preload,
        unload_after=settings.unload_after,
    )
    pool.adopt(engine, settings.model)
    languages = language_codes(engine.languages)
    builtin = builtin_voices(engine.speakers) if engine.model_type == "custom_voice" else []
    library = VoiceLibrary(
        settings.voices_path, max_voices=settings.max_voices, max_bytes=settings.max_library_mb << 20
    )
    catalog = VoiceCatalog(
        builtin, library, pool, settings.voice, languages=engine.languages, strict=settings.strict_voices
    )
    if settings.voice and catalog.lookup(settings.voice) is None:
        raise SystemExit(
            f"--voice {settings.voice!r} is not one of: {', '.join(v.name for v in catalog.voices())}"
        )
    model_name = str(settings.model).rstrip("/").split("/")[-1]
    return ServerState(
        models=pool,
        catalog=catalog,
        info=lambda: build_info(catalog.advertised(), languages, model_name, settings.streaming),
        default_language=settings.language,
        samples_per_chunk=settings.samples_per_chunk,
        max_concurrent=settings.max_concurrent,
        max_text_chars=settings.max_text_chars,
        streaming=settings.streaming,
        prompts=PromptCache(library),
        delivery=Delivery.of(settings),
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
    http = None
    limits = Limits(
        idle_timeout=settings.idle_timeout,
        write_timeout=settings.write_timeout,
        connection_idle_timeout=settings.connection_idle_timeout,
        connections=ConnectionCounter(settings.max_connections_per_peer, settings.max_connections),
    )
    factory = partial(Qwen3TtsEventHandler, state, limits=limits)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    reaper = asyncio.create_task(idle_reaper(state.models), name="qwen3tts idle unload")
    try:
        if isinstance(server, AsyncStdioServer):  # one client on stdin/stdout, until it closes
            _LOGGER.info("Ready: serving %s", settings.uri)
            await server.run(factory)
            return
        await server.start(factory)
        if settings.http:
            http = await _start_http(settings, state)
        if settings.zeroconf_name is not None and isinstance(server, AsyncTcpServer):
            announcer = await _announce(settings.zeroconf_name, server)
        _LOGGER.info("Ready: serving %s", settings.uri)
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        _LOGGER.info("Stopping")
        reaper.cancel()
        if http is not None:
            await http.stop()
        for handler in list(state.handlers):
            await handler.shutdown()
        await server.stop()
        if announcer is not None:
            await announcer.stop()


async def _start_http(settings: Settings, state: ServerState):
    http = HttpServer(settings, state)
    try:
        await http.start()
    except OSError as exc:
        raise StartupError(
            f"cannot serve HTTP on {settings.http_host}:{settings.http_port}: {exc.strerror or exc}; "
            "choose another --http-port, or turn HTTP off with --no-http"
        ) from None
    shown = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::") else settings.http_host
    _LOGGER.info(
        "HTTP: OpenAI-compatible API at http://%s:%s/v1, voice page at http://%s:%s/%s",
        shown,
        settings.http_port,
        shown,
        settings.http_port,
        " (API key required)" if settings.http_api_key else "",
    )
    return http


async def _announce(name: str, server: AsyncTcpServer):
    """Zeroconf after the port is open (a discovered server must accept connections). A failure to
    announce is logged, not fatal: the server is still reachable by address."""
    announcer = ServiceAnnouncer()
    try:
        registered = await announcer.start(name, server.host, server.port)
    except DiscoveryError as exc:
        _LOGGER.warning("zeroconf announcement failed: %s", exc)
        return None
    _LOGGER.info("Announced over zeroconf as %s at %s:%s", registered, announcer.address, server.port)
    return announcer


def _start(settings: Settings) -> tuple[ServerState, float]:
    """Loads and warms the main model into a new state; the model pool then holds the only reference to it
    (so that --unload-after can free it). Returns the state and the warm-up seconds."""
    engine = load_engine(settings)
    try:
        state = make_state(engine, settings)
        speaker = state.catalog.builtin[0].speaker if state.catalog.builtin else None
        return state, warm_up(engine, speaker)
    except BaseException:
        engine.close()
        raise


def run(settings: Settings) -> int:
    started = time.monotonic()
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    state = None
    try:
        state, warm = _start(settings)
        if settings.preload:
            for role, model in state.models.models.items():
                if model and role not in state.models.engines:
                    warm_up(state.models.load_now(role))
        state.warm = True  # HTTP /readyz
        _LOGGER.info(
            "Ready in %.1f s (warm-up %.1f s); models: %s; voices: %s",
            time.monotonic() - started,
            warm,
            ", ".join(
                f"{ROLE_LABELS[r]}={m}{'' if r in state.models.engines else ' (on demand)'}"
                for r, m in state.models.models.items()
                if m
            ),
            ", ".join(v.name for v in state.voices()) or "none",
        )
        asyncio.run(serve(settings, state))
    except StartupError as exc:
        _LOGGER.error("%s", exc)
        return 1
    finally:
        if state is not None:
            state.models.close()
    return 0
