"""The wiring of the whole server: read the model's config, build the shared service state, open both front
doors - Wyoming (announced over zeroconf) and the HTTP API - on one event loop, then load and warm the model
in a worker thread while they already answer (describe from the config; requests wait, bounded, see
service/models.py). Every start-up failure a user can cause ends as one :class:`StartupError` line, exit 1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from functools import partial
from typing import Any, Callable, Coroutine, Optional

from wyoming.server import AsyncServer, AsyncStdioServer, AsyncTcpServer

from .core.slowdown import Slowdown
from .core.vocab import ModelRole
from .engine import CheckpointError, Engine, ModelConfig, peek_config, resolve_device
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
        engine = Engine.load(
            model,
            device=settings.device,
            dtype=dtype,
            slots=settings.slots,
            cache_dir=settings.cache_dir,
            local_files_only=settings.local_files_only,
            quantize=quantize,
            adaptive_threads=True,  # a Home Assistant host runs other add-ons beside us
        )
        if settings.debug_slowdown:  # tests and bench/playback_sim.py: a host slower than this one
            _LOGGER.warning("--debug-slowdown %s: generation is slowed on purpose", settings.debug_slowdown)
            engine.scheduler.slowdown = Slowdown.parse(settings.debug_slowdown)
        return engine

    return load


def load_engine(settings: Settings) -> Engine:
    return engine_loader(settings)(settings.model)


def make_state(
    engine: Engine, settings: Settings, loader: Optional[Callable[[str], Engine]] = None
) -> ServerState:
    """Server state around the loaded main model; other models load through ``loader`` when needed."""
    state = state_for(engine.config, settings, loader)
    state.models.adopt(engine, settings.model)
    return state


def state_for(
    config: ModelConfig, settings: Settings, loader: Optional[Callable[[str], Engine]] = None
) -> ServerState:
    """Server state from the main model's config alone (its voices and languages; no weights needed)."""
    pool = ModelPool(
        role_models(settings),
        loader or engine_loader(settings),
        max_loaded=settings.max_loaded_models,
        on_demand=not settings.preload,
        unload_after=settings.unload_after,
    )
    pool.assign(settings.model, config.tts_model_type)
    engine_languages = config.supported_languages
    languages = language_codes(engine_languages)
    builtin = (
        builtin_voices(config.supported_speakers) if config.tts_model_type == ModelRole.CUSTOM_VOICE else []
    )
    library = VoiceLibrary(
        settings.voices_path, max_voices=settings.max_voices, max_bytes=settings.max_library_mb << 20
    )
    catalog = VoiceCatalog(
        builtin, library, pool, settings.voice, languages=engine_languages, strict=settings.strict_voices
    )
    if settings.voice and catalog.lookup(settings.voice) is None:
        raise StartupError(
            f"--voice {settings.voice!r} is not one of: {', '.join(v.name for v in catalog.voices())}; "
            "set --voice (add-on option `voice`) to one of them, or leave it empty for the first voice"
        )
    model_name = str(settings.model).rstrip("/").split("/")[-1]

    def info() -> Any:  # `state` is bound below; describe marks the voices while the model loads
        return build_info(catalog.advertised(), languages, model_name, settings.streaming, state.loading)

    state = ServerState(
        models=pool,
        catalog=catalog,
        info=info,
        default_language=settings.language,
        samples_per_chunk=settings.samples_per_chunk,
        max_concurrent=settings.max_concurrent,
        max_text_chars=settings.max_text_chars,
        streaming=settings.streaming,
        prompts=PromptCache(library),
        delivery=Delivery.of(settings),
    )
    return state


async def serve(
    settings: Settings,
    state: ServerState,
    ready: Optional[asyncio.Event] = None,
    stop: Optional[asyncio.Event] = None,
    startup: Optional[Callable[[], Coroutine[Any, Any, None]]] = None,
) -> None:
    """Serves until SIGTERM/SIGINT (or `stop` is set); `ready` is set once the port is open. ``startup`` (the
    model load) runs once the ports are open; what it raises stops the server and is raised here."""
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
    loading: Optional[asyncio.Task] = None
    try:
        if isinstance(server, AsyncStdioServer):  # one client on stdin/stdout, until it closes
            if startup is not None:
                loading = asyncio.create_task(startup(), name="qwen3tts start-up load")
                loading.add_done_callback(_log_failed_load)  # nothing awaits it while stdio serves
            _LOGGER.info("Serving %s", settings.uri)
            await server.run(factory)
            return
        try:
            await server.start(factory)
        except OSError as exc:
            raise StartupError(
                f"cannot serve Wyoming on {settings.uri}: {exc.strerror or exc}; another program (or a "
                "second copy of this server) uses that port: stop it, or choose another --uri port"
            ) from None
        if settings.http:
            http = await _start_http(settings, state)
        if settings.zeroconf_name is not None and isinstance(server, AsyncTcpServer):
            announcer = await _announce(settings.zeroconf_name, server)
        _LOGGER.info("Serving %s%s", settings.uri, " (the model is loading)" if startup is not None else "")
        if ready is not None:
            ready.set()
        if startup is not None:
            loading = asyncio.create_task(startup(), name="qwen3tts start-up load")
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if loading.done():
                loading.result()  # a failed load ends the server (StartupError)
        await stop.wait()
    finally:
        _LOGGER.info("Stopping")
        reaper.cancel()
        if loading is not None and not loading.done():
            loading.cancel()  # the worker thread finishes its load; nothing waits for it
        if http is not None:
            await http.stop()
        for handler in list(state.handlers):
            await handler.shutdown()
        await server.stop()
        if announcer is not None:
            await announcer.stop()


def _log_failed_load(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        _LOGGER.error("%s", task.exception())


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


async def load_models(settings: Settings, state: ServerState, started: float) -> None:
    """The start-up load, while the front doors serve: the main model (and with --preload the others), each
    warmed up before requests reach it; then /readyz turns ready and describe drops its loading marks."""
    pool = state.models
    roles = [r for r, m in pool.models.items() if m and (m == settings.model or settings.preload)]
    roles.sort(key=lambda r: pool.models[r] != settings.model)  # the main model first
    speaker = state.catalog.builtin[0].speaker if state.catalog.builtin else None
    warm: list[float] = []

    def prepare(engine: Engine) -> None:
        warm.append(warm_up(engine, speaker if engine.model_type == ModelRole.CUSTOM_VOICE else None))

    try:
        await pool.load_at_start(roles, prepare)
    except CheckpointError as exc:
        raise StartupError(checkpoint_hint(exc)) from exc
    except (ValueError, OSError) as exc:  # e.g. --device without that GPU, a model of the wrong type
        raise StartupError(f"cannot load the model: {exc}; change that setting (see --help)") from exc
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and "out of memory" not in str(exc).lower():
            raise  # a bug, not a setting: the traceback helps
        raise StartupError(
            f"not enough memory to load the model ({exc}); choose the smaller model (--model, add-on option "
            "`model_size`), --quantize int8 on a CPU, or fewer --slots"
        ) from exc
    state.loading = False
    state.warm = True  # HTTP /readyz
    if state.described is not None:
        state.described.invalidate()  # describe without the loading marks
    _LOGGER.info(
        "Ready in %.1f s (warm-up %.1f s); models: %s; voices: %s",
        time.monotonic() - started,
        sum(warm),
        ", ".join(
            f"{ROLE_LABELS[r]}={m}{'' if r in pool.engines else ' (on demand)'}"
            for r, m in pool.models.items()
            if m
        ),
        ", ".join(v.name for v in state.voices()) or "none",
    )


def checkpoint_hint(exc: CheckpointError) -> str:
    """A checkpoint problem as one line that names the fix."""
    text = str(exc)
    if "Download it once" in text or "token" in text:
        return f"cannot load the model: {text}"  # the message names the fix already
    if "corrupt" in text or "incomplete" in text or "does not fit" in text:
        return (
            f"cannot load the model: {text}; delete the model directory (or its Hugging Face cache entry) "
            "and download it again"
        )
    return (
        f"cannot load the model: {text}; set --model (add-on option `model`) to a complete Qwen3-TTS model "
        "directory or a Hugging Face id such as Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"
    )


def run(settings: Settings) -> int:
    started = time.monotonic()
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    state = None
    try:
        try:  # the configs only: the weights load once the ports are open
            config = peek_config(
                settings.model, cache_dir=settings.cache_dir, local_files_only=settings.local_files_only
            )
        except CheckpointError as exc:
            raise StartupError(checkpoint_hint(exc)) from exc
        state = state_for(config, settings)
        state.loading = True
        asyncio.run(serve(settings, state, startup=partial(load_models, settings, state, started)))
    except StartupError as exc:
        if settings.debug:
            _LOGGER.exception("start-up failed")
        _LOGGER.error("%s", exc)
        return 1
    finally:
        if state is not None:
            state.models.close()
    return 0
