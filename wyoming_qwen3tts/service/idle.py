"""``--unload-after SECONDS``: give the memory back while nobody speaks (users share the GPU with a local
LLM). Every idle engine (no request in flight) whose last use is older than that is unloaded, the main
model included; the next request loads it again on demand (models.py), and ``describe`` is unaffected
(the voices come from the configuration and the library, never from a loaded model)."""

from __future__ import annotations

import asyncio
import logging
import time

from .models import ROLE_LABELS, ModelPool, _release

_LOGGER = logging.getLogger(__name__)


async def unload_idle(pool: ModelPool) -> list[str]:
    """One pass: unloads the engines idle for ``pool.unload_after`` seconds; returns their roles."""
    if not pool.unload_after:
        return []
    now = time.monotonic()
    gone = []
    async with pool._condition():
        for role, state in pool.roles.items():
            if state.engine is not None and state.users == 0 and now - state.last_used >= pool.unload_after:
                gone.append((role, state.engine))
                state.engine = None
    for role, engine in gone:
        _LOGGER.info(
            "Unloading the %s model %s: idle for %.0f s (--unload-after); the next request reloads it",
            ROLE_LABELS[role],
            pool.models[role],
            pool.unload_after,
        )
        await asyncio.to_thread(_release, engine)
    return [role for role, _ in gone]


async def idle_reaper(pool: ModelPool) -> None:
    """Runs until cancelled (serve() owns it), checking a few times per ``unload_after``."""
    if not pool.unload_after:
        return
    if not pool.on_demand:
        _LOGGER.warning("--unload-after is ignored with --preload (models are never reloaded)")
        return
    interval = min(max(pool.unload_after / 4, 0.2), 30.0)
    while True:
        await asyncio.sleep(interval)
        try:
            await unload_idle(pool)
        except Exception:  # noqa: BLE001 - a failed unload must not stop later ones
            _LOGGER.exception("idle unload failed")
