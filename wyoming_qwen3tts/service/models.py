"""Model residency: which engines are in memory, loading on demand, and the memory bound.

Each kind of voice needs its own model type: built-in speakers the CustomVoice model, ``clone:`` voices the
Base model, ``design:`` voices the VoiceDesign model. The policy (documented in the README):

* The main model (``--model``) loads at start, in a worker thread, and is warmed up while both ports already
  serve (``describe`` answers from the checkpoint's config); a request that arrives meanwhile waits for it, at
  most ``LOAD_WAIT_S``, then gets ``model-loading``.
* The other configured models load on their first request (``--preload``: all at start). The request that
  needs a model waits while it loads (in a worker thread: ``describe`` and other voices keep being served)
  and never fails because of the switch; concurrent requests share one load. A load that fails answers
  ``model-not-loaded`` (and is retried after ``RETRY_AFTER_S``); so does a voice whose model is off.
* At most ``max_loaded`` engines are in memory. Loading another one first unloads the least recently used
  *idle* engine; an engine with requests in flight is never unloaded (the new request waits for one to
  finish instead). With ``--preload`` nothing is ever unloaded or loaded later.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Optional

from ..core.vocab import ErrorCode, ModelRole
from ..engine import Engine
from .errors import ServiceError
from .speedmeter import meter_for

_LOGGER = logging.getLogger(__name__)

WARM_UP_FRAMES = 3  # Engine.warm_up: max_new_tokens=4

ROLE_LABELS = {role.value: role.label for role in ModelRole}  # custom_voice -> CustomVoice (core.vocab)
ROLE_SETTINGS = {role.value: role.setting for role in ModelRole}  # custom_voice -> --model
RETRY_AFTER_S = 30.0
# How long a request that arrives while the start-up load runs waits for it before `model-loading` (a warm
# restart loads in 15-60 s on a 2-core CPU; Home Assistant's TTS read has no timeout of its own).
LOAD_WAIT_S = 60.0


class ModelNotLoaded(ServiceError):
    """A request needs a model that is off, failed to load, or (with --preload) is not loaded."""

    def __init__(self, text: str) -> None:
        super().__init__(ErrorCode.MODEL_NOT_LOADED, text)


class ModelLoading(ServiceError):
    """A request arrived while the start-up load runs and it did not finish within ``load_wait``."""

    def __init__(self, text: str) -> None:
        super().__init__(ErrorCode.MODEL_LOADING, text)


Loader = Callable[[str], Engine]


@dataclass
class RoleState:
    """What the pool knows about one role at run time (its configured model is ``ModelPool.models``)."""

    engine: Optional[Engine] = None  # None while not in memory
    users: int = 0  # requests in flight on the engine: never unloaded while > 0
    last_used: float = 0.0  # time.monotonic() of the last lease's end (least recently used unloads first)
    failure: Optional[tuple[float, str]] = None  # (when, message) of the last failed load


class ModelPool:
    """Engines by role, loaded on demand and bounded in number. Async methods run on the event loop."""

    def __init__(
        self,
        models: dict[str, Optional[str]],
        loader: Loader,
        max_loaded: int = 2,
        on_demand: bool = True,
        unload_after: Optional[float] = None,
    ) -> None:
        self.models = dict(models)  # role -> model id/path, None = off
        self.loader = loader
        self.max_loaded = max(1, max_loaded)
        self.on_demand = on_demand
        self.unload_after = unload_after  # seconds idle before an engine is unloaded (service/idle.py)
        self.roles: dict[str, RoleState] = {}  # role -> its engine, users, last use and last failure
        self.loads = 0  # engines loaded so far (tests, logs)
        self._loading: Optional[asyncio.Future] = None
        self._cond: Optional[asyncio.Condition] = None
        self.starting: Optional[asyncio.Future] = None  # the start-up load (load_at_start) while it runs
        self.load_wait = LOAD_WAIT_S

    # -- start-up (before the event loop) -------------------------------------------------------------------
    def load_now(self, role: str) -> Engine:
        """Loads a role's model synchronously (start-up); raises what the loader raises."""
        engine = self._load_checked(role)
        self._register(role, engine)
        return engine

    def assign(self, model: str, role: str) -> str:
        """Puts ``model`` under ``role``, the type its checkpoint says (a guessed role may be wrong)."""
        for other, value in self.models.items():
            if value == model and other != role:  # a guessed role was wrong: the checkpoint decides
                self.models[other] = None
        self.models[role] = model
        return role

    def adopt(self, engine: Engine, model: str) -> str:
        """Registers an already loaded engine under the role of its real type; returns the role."""
        role = self.assign(model, engine.model_type)
        self._register(role, engine)
        return role

    def _state(self, role: str) -> RoleState:
        return self.roles.setdefault(role, RoleState())

    def _register(self, role: str, engine: Engine) -> None:
        """``engine`` is loaded for ``role`` and idle."""
        state = self._state(role)
        state.engine, state.users, state.last_used, state.failure = engine, 0, time.monotonic(), None

    # -- facts ------------------------------------------------------------------------------------------
    def enabled(self, role: str) -> bool:
        return self.models.get(role) is not None

    @property
    def engines(self) -> dict[str, Engine]:
        """The loaded engines by role (a snapshot: the pool changes ``roles``)."""
        return {role: state.engine for role, state in self.roles.items() if state.engine is not None}

    def loaded_roles(self) -> list[str]:
        return list(self.engines)

    def check_enabled(self, role: str) -> None:
        if not self.enabled(role):
            raise ModelNotLoaded(
                f"{ROLE_LABELS[role]} voices are off: no {ROLE_LABELS[role]} model is configured "
                f"({ROLE_SETTINGS[role]})"
            )

    # -- leasing ------------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def use(self, role: str) -> AsyncIterator[Engine]:
        """The engine of ``role`` for the duration of the block (loaded first if needed; never unloaded
        while the block runs)."""
        engine = await self._acquire(role)
        try:
            yield engine
        finally:
            async with self._condition():
                state = self.roles[role]
                state.users -= 1
                state.last_used = time.monotonic()
                self._condition().notify_all()

    async def load_at_start(self, roles: list[str], prepare: Callable[[Engine], Any]) -> None:
        """Start-up: loads ``roles`` in turn in a worker thread (``prepare``, the warm-up, runs there too)
        while the front doors already serve; every request waits for it (``_wait_start``). Raises what the
        loader raises (the server then exits)."""
        self.starting = asyncio.get_running_loop().create_future()
        cond = self._condition()
        try:
            for role in roles:

                def load(role: str = role) -> Engine:
                    engine = self._load_checked(role)
                    try:
                        prepare(engine)
                    except BaseException:
                        engine.close()
                        raise
                    return engine

                engine = await asyncio.to_thread(load)
                async with cond:
                    self._register(role, engine)
                    cond.notify_all()
        except BaseException as exc:
            for role in roles:  # waiting requests get this failure, not a second load attempt
                if self._state(role).engine is None:
                    self._state(role).failure = (time.monotonic(), f"the model failed to load: {exc}")
            raise
        finally:
            self.starting.set_result(None)

    async def _wait_start(self, role: str) -> None:
        """A request during the start-up load waits for it, at most ``load_wait`` seconds."""
        starting = self.starting
        if starting is None or starting.done() or self._state(role).engine is not None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(starting), self.load_wait)
        except asyncio.TimeoutError:
            raise ModelLoading(
                f"the model is still loading (waited {self.load_wait:g} s); try again in a moment"
            ) from None

    async def _acquire(self, role: str) -> Engine:
        self.check_enabled(role)
        await self._wait_start(role)
        cond = self._condition()
        while True:
            async with cond:
                while True:
                    state = self._state(role)
                    if state.engine is not None:
                        state.users += 1
                        return state.engine
                    if not self.on_demand:
                        label = ROLE_LABELS[role]
                        raise ModelNotLoaded(
                            f"the {label} model is not loaded (--preload loads at start only)"
                        )
                    failed = state.failure
                    if failed is not None and time.monotonic() - failed[0] < RETRY_AFTER_S:
                        raise ModelNotLoaded(failed[1])
                    if self._loading is None and await self._make_room():
                        self._loading = asyncio.ensure_future(self._load(role))
                        # A load outlives a cancelled requester; its error is still collected here.
                        self._loading.add_done_callback(lambda t: t.cancelled() or t.exception())
                        break
                    await cond.wait()  # another load runs, or every loaded engine is busy
                loading = self._loading
            await asyncio.shield(loading)  # then take the engine under the lock (next iteration)

    async def _load(self, role: str) -> None:
        """Loads ``role`` in a worker thread (the event loop keeps serving) and registers it, idle."""
        cond = self._condition()
        model = self.models[role]
        _LOGGER.info(
            "Loading the %s model %s for a request (%d of at most %d models loaded)",
            ROLE_LABELS[role],
            model,
            len(self.engines),
            self.max_loaded,
        )
        started = time.monotonic()
        try:
            engine = await asyncio.to_thread(self._load_checked, role)
        except Exception as exc:  # noqa: BLE001 - any load failure becomes a clear error event
            message = f"cannot load the {ROLE_LABELS[role]} model {model}: {exc}"
            _LOGGER.error("%s", message)
            async with cond:
                self._state(role).failure = (time.monotonic(), message)
                self._loading = None
                cond.notify_all()
            raise ModelNotLoaded(message) from exc
        _LOGGER.info("%s model ready in %.1f s", ROLE_LABELS[role], time.monotonic() - started)
        async with cond:
            self._register(role, engine)
            self._loading = None
            cond.notify_all()

    async def _make_room(self) -> bool:
        """Unloads least recently used idle engines until one more fits; False when all are busy."""
        while len(self.engines) >= self.max_loaded:
            idle = [r for r, s in self.roles.items() if s.engine is not None and s.users == 0]
            if not idle:
                return False
            victim = min(idle, key=lambda r: self.roles[r].last_used)
            engine = self.roles[victim].engine
            assert engine is not None
            self.roles[victim].engine = None
            _LOGGER.info(
                "Unloading the %s model %s (least recently used)", ROLE_LABELS[victim], self.models[victim]
            )
            await asyncio.to_thread(_release, engine)
        return True

    def _load_checked(self, role: str) -> Engine:
        model = self.models[role]
        assert model is not None
        engine = self.loader(model)
        self.loads += 1
        if engine.model_type != role:
            engine.close()
            raise ValueError(
                f"{model} is a {ROLE_LABELS.get(engine.model_type, engine.model_type)} model; "
                f"{ROLE_SETTINGS[role]} needs a {ROLE_LABELS[role]} model"
            )
        return engine

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:  # created lazily: the pool is built before the event loop runs
            self._cond = asyncio.Condition()
        return self._cond

    # -- shutdown ------------------------------------------------------------------------------------------
    def close(self) -> None:
        for state in self.roles.values():
            if state.engine is not None:
                state.engine.close()
                state.engine = None


def _release(engine: Engine) -> None:
    """Stops an engine's worker and gives its memory back (tensors die with the last reference)."""
    engine.close()
    device = engine.device
    del engine
    gc.collect()
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


def warm_up(engine: Engine, speaker: Optional[str] = None) -> float:
    """One short synthesis: the first real request then meets warm kernels and caches, and playback
    pacing a first idea of this host's speed (service/pacing.py; the warm-up makes 3 frames)."""
    seconds = engine.warm_up(speaker)
    meter_for(engine).seed(WARM_UP_FRAMES * 0.08, seconds)
    return seconds
