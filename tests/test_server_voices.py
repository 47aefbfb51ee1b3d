"""Voice-library voices through the real server: `clone:` and `design:` voices next to the built-in ones,
changes picked up on the next describe, the model pool switching models, and the prompt cache surviving a
restart of the real server process. Real files in temp dirs, real TCP, tiny random checkpoints."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeVoice

from tests.fixtures.server_process import ROOT, free_port, start_server
from tests.fixtures.server_thread import ServerThread, load_test_engine
from wyoming_qwen3tts.app import StartupError
from wyoming_qwen3tts.settings import Settings
from wyoming_qwen3tts.voices.library import VoiceLibrary

TRANSCRIPT = "Hello there, this is a short test of my voice."


def _clip(path: Path, sr: int = 16000, seconds: float = 3.0) -> Path:
    t = np.arange(int(sr * seconds)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 170 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    sf.write(path, wave.astype(np.float32), sr)
    return path


def _voices_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WYOMING_QWEN3TTS_")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "wyoming_qwen3tts", "voices", "--data-dir", str(data_dir), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


async def _describe(client: AsyncTcpClient) -> dict:
    await client.write_event(Describe().event())
    info = Info.from_event(await asyncio.wait_for(client.read_event(), 10))
    return {v.name: v for v in info.tts[0].voices}


async def _speak(client: AsyncTcpClient, text: str, voice: str | None) -> tuple[int, list]:
    """One synthesize; returns (samples, error events); ends at audio-stop or an error."""
    await client.write_event(
        Synthesize(text=text, voice=SynthesizeVoice(name=voice) if voice else None).event()
    )
    samples, errors = 0, []
    while True:
        event = await asyncio.wait_for(client.read_event(), 120)
        assert event is not None, "connection closed"
        if AudioChunk.is_type(event.type):
            samples += len(AudioChunk.from_event(event).audio) // 2
        elif Error.is_type(event.type):
            errors.append(Error.from_event(event))
            return samples, errors
        elif AudioStop.is_type(event.type):
            return samples, errors


def _connect(port: int) -> AsyncTcpClient:
    return AsyncTcpClient("127.0.0.1", port)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data")
    library = VoiceLibrary(data / "voices")
    clips = tmp_path_factory.mktemp("clips")
    library.add_clone("anna", _clip(clips / "anna.wav"), TRANSCRIPT, language="de", display_name="Anna")
    library.add_clone("xv", _clip(clips / "xv.flac", 44100), mode="xvector")
    library.add_design("narrator", "A warm, low, calm narrator.", language="en", display_name="The Narrator")
    return data


@pytest.fixture(scope="module")
def main_engine(tiny_custom_voice):
    engine = load_test_engine(str(tiny_custom_voice))
    yield engine
    engine.close()


def _settings(tiny_custom_voice, tiny_base, tiny_voice_design, data_dir: Path, **kwargs) -> Settings:
    values = dict(
        uri=f"tcp://127.0.0.1:{free_port()}",
        model=str(tiny_custom_voice),
        clone_model=str(tiny_base),
        design_model=str(tiny_voice_design),
        data_dir=data_dir,
        max_loaded_models=3,
        max_concurrent=4,
        strict_voices=True,  # bad names are errors here (the default fallback: tests/test_reply_delivery.py)
    )
    values.update(kwargs)
    return Settings(**values)


@pytest.fixture(scope="module")
def server(main_engine, tiny_custom_voice, tiny_base, tiny_voice_design, data_dir):
    srv = ServerThread(_settings(tiny_custom_voice, tiny_base, tiny_voice_design, data_dir), main_engine)
    yield srv
    srv.close()


def test_describe_advertises_library_voices_and_picks_up_changes(server, data_dir, tmp_path):
    async def describe():
        async with _connect(server.port) as client:
            return await _describe(client)

    voices = asyncio.run(describe())
    assert {"clone:anna", "clone:xv@de", "design:narrator", "ryan@en", "ryan@de"} <= set(voices)
    assert voices["clone:anna"].description == "Anna" and voices["clone:anna"].languages == ["de"]
    assert voices["design:narrator"].description == "The Narrator"
    assert voices["design:narrator"].languages == ["en"]
    # No language of its own: bound to each model language, like the built-in speakers.
    assert "clone:xv" not in voices and voices["clone:xv@fr"].languages == ["fr"]
    assert len([name for name in voices if name.startswith("clone:xv@")]) == 10

    # Added and removed by the CLI while the server runs: visible on the next describe, no restart.
    added = _voices_cli(data_dir, "add", "Bob", "--audio", str(_clip(tmp_path / "bob.ogg", 22050)))
    assert added.returncode == 0, added.stderr
    assert "clone:bob@en" in asyncio.run(describe())
    assert _voices_cli(data_dir, "remove", "bob").returncode == 0
    assert not any(name.startswith("clone:bob") for name in asyncio.run(describe()))


def test_clone_design_and_builtin_requests_interleave(server, data_dir):
    async def one_connection():
        async with _connect(server.port) as client:
            results = []
            for voice in ("ryan", "clone:anna", "design:narrator", "clone:xv", "ryan", "clone:anna"):
                results.append((voice, *await _speak(client, "Hello there.", voice)))
            return results

    async def two_connections():
        async with _connect(server.port) as a, _connect(server.port) as b:
            return await asyncio.gather(
                _speak(a, "Guten Tag, wie geht es?", "clone:anna"), _speak(b, "Good day to you.", "ryan")
            )

    for voice, samples, errors in asyncio.run(one_connection()):
        assert not errors and samples > 0, (voice, errors)
    for samples, errors in asyncio.run(two_connections()):
        assert not errors and samples > 0
    assert list((data_dir / "voices" / "anna").glob("prompt.*.safetensors"))
    assert list((data_dir / "voices" / "xv").glob("prompt.*.safetensors"))
    assert sorted(server.state.models.loaded_roles()) == ["base", "custom_voice", "voice_design"]


def test_bad_voice_names_and_corrupt_profiles(server, data_dir):
    broken = data_dir / "voices" / "broken"
    broken.mkdir()
    (broken / "meta.json").write_text("{ not json")

    async def go():
        async with _connect(server.port) as client:
            voices = await _describe(client)
            assert "clone:broken" not in voices and "clone:anna" in voices  # skipped, others intact
        codes = {}
        for name in ("clone:broken", "clone:../anna", "design:..", "../../etc/passwd", "clone:nobody"):
            async with _connect(server.port) as client:  # a failed synthesize closes its connection
                _, errors = await _speak(client, "Hi.", name)
                codes[name] = errors[0].code
                assert await asyncio.wait_for(client.read_event(), 10) is None
        async with _connect(server.port) as client:
            await client.write_event(Ping(text="still").event())  # the server survived all of it
            assert Pong.is_type((await asyncio.wait_for(client.read_event(), 5)).type)
        return codes

    try:
        codes = asyncio.run(go())
    finally:
        broken.joinpath("meta.json").unlink()
        broken.rmdir()
    assert codes.pop("clone:broken") == "voice-unusable"
    assert set(codes.values()) == {"voice-not-found"}


def test_add_while_a_stream_is_being_synthesized(server, data_dir, tmp_path):
    clip = _clip(tmp_path / "carl.wav")

    async def go():
        async with _connect(server.port) as client:
            await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name="clone:anna")).event())
            await client.write_event(SynthesizeChunk(text="Das ist der erste Satz. Und").event())
            first = await asyncio.wait_for(client.read_event(), 60)
            assert AudioStart.is_type(first.type)
            # The library changes while the stream (and its Base-model lease) is open.
            added = await asyncio.to_thread(_voices_cli, data_dir, "add", "carl", "--audio", str(clip))
            assert added.returncode == 0, added.stderr
            await client.write_event(SynthesizeChunk(text=" hier der zweite Satz.").event())
            await client.write_event(SynthesizeStop().event())
            types = []
            while not types or types[-1] != "synthesize-stopped":
                types.append((await asyncio.wait_for(client.read_event(), 60)).type)
            assert "error" not in types and types.count("audio-stop") == 1
            voices = await _describe(client)
            assert "clone:carl@de" in voices
            samples, errors = await _speak(client, "Hi.", "clone:carl")
            assert samples > 0 and not errors

    asyncio.run(go())


def test_one_model_in_memory_switches_without_failing(
    main_engine, tiny_custom_voice, tiny_base, tiny_voice_design, data_dir
):
    settings = _settings(tiny_custom_voice, tiny_base, tiny_voice_design, data_dir, max_loaded_models=1)
    srv = ServerThread(settings, main_engine)

    async def go():
        async with _connect(srv.port) as client:
            out = []
            for voice in ("clone:anna", "ryan", "design:narrator", "clone:anna"):
                samples, errors = await _speak(client, "Hello.", voice)
                out.append((voice, samples, [e.code for e in errors], srv.state.models.loaded_roles()))
            return out

    try:
        results = asyncio.run(go())
    finally:
        srv.close()
    for voice, samples, errors, loaded in results:
        assert samples > 0 and not errors, (voice, errors)
        assert len(loaded) == 1
    assert [r[3][0] for r in results] == ["base", "custom_voice", "voice_design", "base"]


def test_models_turned_off_and_a_library_default_voice(main_engine, tiny_custom_voice, tiny_base, data_dir):
    settings = _settings(
        tiny_custom_voice,
        tiny_base,
        None,
        data_dir,
        design_model=None,
        voice="clone:anna",
        max_loaded_models=2,
    )
    srv = ServerThread(settings, main_engine)

    async def go():
        async with _connect(srv.port) as client:
            voices = await _describe(client)
            assert "design:narrator" not in voices and "clone:anna" in voices
            _, errors = await _speak(client, "Hi.", "design:narrator")
            assert [e.code for e in errors] == ["model-not-loaded"] and "--design-model" in errors[0].text
        async with _connect(srv.port) as client:  # the error closed the first connection
            samples, errors = await _speak(client, "Hallo.", None)  # the default voice: clone:anna
            assert samples > 0 and not errors
            assert "base" in srv.state.models.loaded_roles()

    try:
        asyncio.run(go())
    finally:
        srv.close()
    with pytest.raises(StartupError, match="nobody.*set --voice"):
        ServerThread(
            _settings(tiny_custom_voice, tiny_base, None, data_dir, voice="clone:nobody"), main_engine
        )


def test_prompt_cache_survives_a_restart_of_the_real_server(tiny_custom_voice, tiny_base, tmp_path):
    """The first process computes the prompt and writes it; the second loads it from disk: the file is
    untouched (same inode and mtime) and the second log shows the load, never a computation."""
    data = tmp_path / "data"
    assert _voices_cli(data, "add", "dora", "--audio", str(_clip(tmp_path / "d.wav")), "--text", TRANSCRIPT)
    args = ["--data-dir", str(data), "--clone-model", str(tiny_base), "--threads", "1", "--debug"]

    def run_once(log_path: Path) -> str:
        with open(log_path, "w+") as log:
            proc, port = start_server(str(tiny_custom_voice), args, log)
            try:

                async def go():
                    async with _connect(port) as client:
                        return await _speak(client, "Hello there.", "clone:dora")

                samples, errors = asyncio.run(go())
                assert samples > 0 and not errors
            finally:
                proc.terminate()
                proc.wait(30)
        return log_path.read_text()

    first = run_once(tmp_path / "first.log")
    assert "Computing the voice prompt of 'dora'" in first
    (cached,) = (data / "voices" / "dora").glob("prompt.*.safetensors")
    before = cached.stat()
    second = run_once(tmp_path / "second.log")
    after = cached.stat()
    assert "Computing the voice prompt" not in second
    assert f"Loaded voice prompt {cached}" in second
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_flat_folder_voices_are_served_read_only(main_engine, tiny_custom_voice, tiny_base, tmp_path):
    voices_dir = tmp_path / "flat"
    voices_dir.mkdir()
    _clip(voices_dir / "Erin.wav")
    (voices_dir / "Erin.txt").write_text(TRANSCRIPT)
    settings = _settings(
        tiny_custom_voice, tiny_base, None, tmp_path, voices_dir=voices_dir, design_model=None
    )
    srv = ServerThread(settings, main_engine)

    async def go():
        async with _connect(srv.port) as client:
            assert "clone:erin@en" in await _describe(client)  # no language of its own: bound to each
            return await _speak(client, "Hello.", "clone:erin")

    try:
        samples, errors = asyncio.run(go())
    finally:
        srv.close()
    assert samples > 0 and not errors
    assert list((voices_dir / ".prompts" / "erin").glob("prompt.*.safetensors"))


def test_concurrent_threads_do_not_compute_one_prompt_twice(server, data_dir):
    """Two connections asking for a voice nobody used yet: one prompt computation, both get audio."""
    library = VoiceLibrary(data_dir / "voices")
    library.add_clone("twin", _clip(data_dir / "twin.wav"), TRANSCRIPT)
    computed = []
    original = server.state.prompts._compute
    lock = threading.Lock()

    def counting(profile, engine):
        with lock:
            computed.append(profile.name)
        return original(profile, engine)

    server.state.prompts._compute = counting

    async def go():
        async with _connect(server.port) as a, _connect(server.port) as b:
            return await asyncio.gather(_speak(a, "One.", "clone:twin"), _speak(b, "Two.", "clone:twin"))

    try:
        results = asyncio.run(go())
    finally:
        server.state.prompts._compute = original
    assert all(samples > 0 and not errors for samples, errors in results)
    assert computed == ["twin"]
