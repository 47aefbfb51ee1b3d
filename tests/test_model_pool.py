"""The model pool's residency policy with real tiny engines: load on demand, one load shared by concurrent
requests, LRU unloading of idle engines only, load failures and wrong model types as model-not-loaded."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tests.fixtures.server_thread import load_test_engine
from wyoming_qwen3tts.service.models import ModelNotLoaded, ModelPool


class CountingLoader:
    """load_test_engine, counting loads per model (and optionally holding them until released)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, model: str):
        self.calls.append(model)
        assert self.gate.wait(60)
        return load_test_engine(model, slots=1)


@pytest.fixture
def roles(tiny_custom_voice, tiny_base, tiny_voice_design):
    return {
        "custom_voice": str(tiny_custom_voice),
        "base": str(tiny_base),
        "voice_design": str(tiny_voice_design),
    }


def _pool(roles, loader, **kwargs) -> ModelPool:
    pool = ModelPool(roles, loader, **kwargs)
    pool.load_now("custom_voice")
    return pool


def test_on_demand_load_is_shared_and_lru_unloads_idle_engines(roles):
    loader = CountingLoader()
    pool = _pool(roles, loader, max_loaded=2)

    async def go():
        loader.gate.clear()  # hold the Base load so three requests queue on it

        async def use_base():
            async with pool.use("base") as engine:
                return engine

        tasks = [asyncio.create_task(use_base()) for _ in range(3)]
        await asyncio.sleep(0.2)
        assert pool.loaded_roles() == ["custom_voice"]  # still loading; the loop is free meanwhile
        loader.gate.set()
        engines = await asyncio.gather(*tasks)
        assert engines[0] is engines[1] is engines[2] and engines[0].model_type == "base"
        assert loader.calls.count(roles["base"]) == 1
        async with pool.use("custom_voice"):  # custom_voice is now the most recently used
            pass
        async with pool.use("voice_design") as design:  # third model: the idle LRU one (base) goes
            assert design.model_type == "voice_design"
            assert sorted(pool.loaded_roles()) == ["custom_voice", "voice_design"]
        async with pool.use("base"):  # and comes back on demand
            assert sorted(pool.loaded_roles()) == ["base", "voice_design"]

    try:
        asyncio.run(go())
        assert loader.calls == [roles[r] for r in ("custom_voice", "base", "voice_design", "base")]
    finally:
        pool.close()


def test_busy_engine_is_never_unloaded(roles):
    loader = CountingLoader()
    pool = _pool(roles, loader, max_loaded=1)
    order: list[str] = []

    async def go():
        release = asyncio.Event()

        async def hold_custom():
            async with pool.use("custom_voice") as engine:
                order.append("cv-leased")
                await release.wait()
                assert not engine.scheduler._closed  # still usable while leased
                order.append("cv-released")

        async def want_base():
            async with pool.use("base"):
                order.append("base-leased")

        holder = asyncio.create_task(hold_custom())
        await asyncio.sleep(0.05)
        waiter = asyncio.create_task(want_base())
        await asyncio.sleep(0.3)
        assert order == ["cv-leased"] and pool.loaded_roles() == ["custom_voice"]
        release.set()
        await asyncio.gather(holder, waiter)

    try:
        asyncio.run(go())
        assert order == ["cv-leased", "cv-released", "base-leased"]
        assert pool.loaded_roles() == ["base"]
    finally:
        pool.close()


def test_failures_and_off_roles_are_model_not_loaded(roles, tmp_path):
    broken = dict(roles, base=str(tmp_path / "missing"), voice_design=None)
    pool = _pool(broken, CountingLoader())

    async def go():
        for role in ("base", "base", "voice_design"):
            with pytest.raises(ModelNotLoaded) as info:
                async with pool.use(role):
                    pass
            assert info.value.code == "model-not-loaded"
        async with pool.use("custom_voice") as engine:  # the working model is unaffected
            assert engine.model_type == "custom_voice"

    try:
        asyncio.run(go())
        assert "missing" in pool.roles["base"].failure[1]
    finally:
        pool.close()


def test_wrong_model_type_and_preload_without_on_demand(roles):
    swapped = dict(roles, base=roles["voice_design"])
    loader = CountingLoader()
    pool = _pool(swapped, loader, max_loaded=3)
    strict = _pool(roles, loader, on_demand=False)

    async def go():
        with pytest.raises(ModelNotLoaded, match="is a VoiceDesign model; --clone-model needs a Base model"):
            async with pool.use("base"):
                pass
        with pytest.raises(ModelNotLoaded, match="not loaded"):
            async with strict.use("base"):
                pass

    try:
        asyncio.run(go())
        assert pool.loaded_roles() == ["custom_voice"]  # the wrongly typed engine was closed, not kept
    finally:
        pool.close()
        strict.close()


def test_role_policy_and_the_preload_check():
    from wyoming_qwen3tts.service.roles import check_preload, role_models
    from wyoming_qwen3tts.settings import Settings, SettingsError

    settings = Settings(model="Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice", preload=True, max_loaded_models=2)
    assert role_models(settings) == {
        "custom_voice": "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice",
        "base": "Qwen/Qwen3-TTS-12Hz-1.7B-Base",
        "voice_design": "Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign",
    }
    with pytest.raises(SettingsError, match="--max-loaded-models is 2"):
        check_preload(settings)
    check_preload(Settings(model=settings.model, preload=True, max_loaded_models=3))
    check_preload(Settings(model=settings.model, max_loaded_models=1))  # on demand: no bound to check
