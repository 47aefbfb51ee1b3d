"""`python -m wyoming_qwen3tts client`: run as a real subprocess against our real server (tiny random
checkpoint) and against small fake Wyoming servers for what ours never does (no streaming, several audio
cycles, a format change, hanging up). Random weights make random audio: assert structure, not sound."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Optional

import pytest
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.info import AsrProgram, Attribution, Describe, Info, TtsProgram, TtsVoice, TtsVoiceSpeaker
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeStopped

from tests.fixtures.server_process import ROOT, start_server
from wyoming_qwen3tts.client.output import PcmFormat, wav_header
from wyoming_qwen3tts.client.report import format_info
from wyoming_qwen3tts.client.textsource import split_fragments


def client(*args: str, env: Optional[dict] = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wyoming_qwen3tts", "client", *args],
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def server(tiny_custom_voice, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("client_server")
    log_path = tmp / "server.log"
    with open(log_path, "w+") as log:
        args = ["--max-concurrent", "2", "--threads", "2", "--data-dir", str(tmp / "data")]
        args.append("--strict-voices")  # an unknown voice is an error (the client's error path)
        try:
            proc, port = start_server(str(tiny_custom_voice), args, log)
        except RuntimeError as exc:
            pytest.fail(f"{exc}: {log_path.read_text()}")
        yield f"tcp://127.0.0.1:{port}"
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def speakers(tiny_custom_voice) -> list[str]:
    return list(json.loads((tiny_custom_voice / "config.json").read_text())["talker_config"]["spk_id"])


@pytest.fixture()
def fake_player(tmp_path) -> tuple[Path, dict]:
    """A directory holding an `aplay` that records its arguments and writes its stdin to a file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "aplay"
    script.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\nexec /bin/cat > {tmp_path}/played.raw\n')
    script.chmod(0o755)
    return tmp_path, {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


# -- our real server ---------------------------------------------------------------------------------------


def test_describe_lists_voices_languages_and_streaming(server, speakers):
    done = client("--uri", server, "describe")
    assert done.returncode == 0, done.stderr
    text = done.stdout.decode()
    assert "streaming    yes" in text
    assert all(f"    {name}@en " in text for name in speakers)  # language-bound voices (one per language)
    assert "languages    (" in text

    done = client("describe", "--uri", server, "--json")  # common flags also after the command
    info = json.loads(done.stdout)
    assert {v["name"].rpartition("@")[0] for v in info["tts"][0]["voices"]} == set(speakers)
    assert info["tts"][0]["supports_synthesize_streaming"] is True


def test_say_writes_a_wav_matching_the_received_audio(server, speakers, tmp_path):
    out = tmp_path / "hi.wav"
    done = client("--uri", server, "say", "Hi.", "--voice", speakers[0], "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["error"] is None and data["cycles"] == 1 and data["chunks"] > 0
    assert data["mode"] == "synthesize" and data["voice"] == speakers[0]
    assert 0 < data["ttfa_s"] <= data["total_s"]
    with wave.open(str(out)) as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (24000, 2, 1)
        assert (data["rate"], data["width"], data["channels"]) == (24000, 2, 1)
        assert wav.getnframes() == data["samples"] > 0
        assert len(wav.readframes(wav.getnframes())) == data["bytes"] == 2 * data["samples"]
    assert out.stat().st_size == 44 + data["bytes"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hi.wav"]  # no temporary file left


def test_wav_on_stdout_and_player_get_the_same_audio(server, fake_player):
    player_dir, env = fake_player
    done = client("--uri", server, "say", "Hi.", "--out", "-", "--play", env=env)
    assert done.returncode == 0, done.stderr
    assert (player_dir / "args").read_text().split() == [
        "-q",
        "-t",
        "raw",
        "-f",
        "S16_LE",
        "-r",
        "24000",
        "-c",
        "1",
    ]
    header, pcm = done.stdout[:44], done.stdout[44:]
    assert header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt "
    assert struct.unpack("<I", header[40:44])[0] == 0xFFFFFFFF  # a pipe: "length unknown"
    assert struct.unpack("<HHI", header[20:28]) == (1, 1, 24000)
    assert pcm and pcm == (player_dir / "played.raw").read_bytes()
    samples = int(done.stderr.decode().split(" chunks, ")[1].split(" samples")[0])
    assert len(pcm) == 2 * samples


def test_streaming_from_stdin_speaks_before_stdin_closes(server, speakers, fake_player):
    player_dir, env = fake_player
    played = player_dir / "played.raw"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wyoming_qwen3tts", "client", "--uri", server, "--timeout", "60"]
        + ["say", "--stream", "-", "--voice", speakers[-1], "--play", "--json"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        proc.stdin.write(b"Hi there. How")  # the server's segmenter sees a full sentence
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        while not (played.exists() and played.stat().st_size > 0):  # stdin is still open here
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no audio reached the player while stdin was open"
            time.sleep(0.05)
        time.sleep(0.3)
        stdout, stderr = proc.communicate(" are you?".encode(), timeout=120)  # writes, closes stdin
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    data = json.loads(stdout)
    assert data["mode"] == "stream" and data["fragments"] >= 2 and data["text_chars"] == 22
    assert data["ttfa_s"] < data["input_end_s"]
    assert played.stat().st_size == data["bytes"]


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_voice_exits_1_with_the_server_error_and_writes_nothing(server, tmp_path, stream):
    out = tmp_path / "never.wav"
    done = client(
        "--uri", server, "say", "Hi.", "--voice", "nobody", "--out", str(out), *(["--stream"] * stream)
    )
    assert done.returncode == 1
    assert "error voice-not-found:" in done.stderr.decode()
    assert list(tmp_path.iterdir()) == []


# -- exit codes without a working server -------------------------------------------------------------------


@pytest.fixture()
def silent_socket():
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(sock.accept()), daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    for conn, _ in accepted:
        conn.close()
    sock.close()


@pytest.mark.parametrize("command", [["describe"], ["say", "Hi."], ["say", "--stream", "Hi."]])
def test_timeout_exits_3_quickly(silent_socket, command):
    start = time.monotonic()
    done = client("--uri", silent_socket, "--timeout", "0.5", *command, timeout=30)
    assert done.returncode == 3, done.stderr
    assert done.stderr.decode().startswith("error: timeout")
    assert time.monotonic() - start < 10


def test_connection_refused_exits_3():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        done = client("--uri", f"tcp://127.0.0.1:{port}", "describe")
    assert done.returncode == 3
    assert "connection refused" in done.stderr.decode()


@pytest.mark.parametrize(
    "args, message",
    [
        (["say", "Hi.", "--json", "--out", "-"], "--json and --out -"),
        (["say", "Hi.", "--speaker", "x"], "--speaker needs --voice"),
        (["say", "Hi.", "--chunk-delay", "1"], "only apply with --stream"),
        (["--uri", "tcp://localhost", "describe"], "invalid URI"),
        (["--uri", "stdio://", "describe"], "unsupported URI"),
        (["say", "Hi.", "--out", "/nonexistent-dir/x.wav"], "does not exist"),
        (["say"], "required"),
    ],
)
def test_usage_errors_exit_2(args, message):
    done = client(*args)
    assert done.returncode == 2
    assert message in done.stderr.decode()


def test_play_without_a_player_says_what_to_install():
    done = client("say", "Hi.", "--play", env={**os.environ, "PATH": ""})
    assert done.returncode == 2
    assert "aplay" in done.stderr.decode() and "ffplay" in done.stderr.decode()


# -- fake servers: behaviour ours never shows --------------------------------------------------------------

RATE = 16000


def _cycle(frames: int, channels: int, chunks: int = 2) -> list[Event]:
    pcm = bytes(range(256)) * (frames * 2 * channels // 256) + bytes(frames * 2 * channels % 256)
    step = len(pcm) // chunks
    parts = [pcm[i * step : (i + 1) * step if i < chunks - 1 else len(pcm)] for i in range(chunks)]
    return (
        [AudioStart(RATE, 2, channels).event()]
        + [AudioChunk(RATE, 2, channels, part).event() for part in parts]
        + [AudioStop().event()]
    )


def _voice(
    name: str, languages: list[str], installed: bool = True, speakers: Optional[list] = None
) -> TtsVoice:
    return TtsVoice(
        name=name,
        attribution=Attribution(name="t", url="u"),
        installed=installed,
        description=f"{name}!",
        version=None,
        languages=languages,
        speakers=speakers,
    )


class FakeTts:
    """A thread running a minimal Wyoming TTS server; ``received`` lists the events it got."""

    def __init__(self, streaming: bool, hang_up: bool = False) -> None:
        self.streaming, self.hang_up = streaming, hang_up
        self.received: list[Event] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    def __enter__(self) -> "FakeTts":
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.uri = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        await self._stop.wait()
        server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        program = TtsProgram(
            name="fake",
            attribution=Attribution(name="t", url="u"),
            installed=True,
            description="fake",
            version="1",
            voices=[_voice("v", ["en"])],
            supports_synthesize_streaming=self.streaming,
        )
        in_stream = False
        while (event := await async_read_event(reader)) is not None:
            self.received.append(event)
            replies: list[Event] = []
            if Describe.is_type(event.type):
                replies = [Info(tts=[program]).event()]
            elif SynthesizeStart.is_type(event.type):
                in_stream = True
            elif Synthesize.is_type(event.type) and not in_stream:
                replies = _cycle(1000, 1)
                if self.hang_up:
                    replies = replies[:2]
            elif SynthesizeStop.is_type(event.type):  # piper-like: one cycle per sentence; 2nd is stereo
                replies = _cycle(1000, 1) + _cycle(500, 2, chunks=3) + [SynthesizeStopped().event()]
                in_stream = False
            for reply in replies:
                await async_write_event(reply, writer)
            if self.hang_up and replies:
                writer.close()
                return


def test_stream_counts_cycles_and_converts_a_format_change(tmp_path):
    out = tmp_path / "s.wav"
    with FakeTts(streaming=True) as fake:
        args = ["say", "--stream", "--chunk-words", "2", "one two three four five", "--out", str(out)]
        done = client("--uri", fake.uri, *args, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["cycles"], data["chunks"], data["samples"], data["converted"]) == (2, 5, 1500, True)
    assert "converting" in done.stderr.decode()
    with wave.open(str(out)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getnframes()) == (RATE, 1, 1500)
    types = [e.type for e in fake.received]
    assert types == ["describe", "synthesize-start"] + ["synthesize-chunk"] * 3 + [
        "synthesize",
        "synthesize-stop",
    ]
    chunks = [SynthesizeChunk.from_event(e).text for e in fake.received if e.type == "synthesize-chunk"]
    assert chunks == ["one two ", "three four ", "five"]
    assert Synthesize.from_event(fake.received[-2]).text == "one two three four five"


def test_stream_falls_back_when_the_server_cannot_stream():
    with FakeTts(streaming=False) as fake:
        done = client("--uri", fake.uri, "say", "--stream", "Hello there you", "--json")
    assert done.returncode == 0, done.stderr
    assert "does not support streaming" in done.stderr.decode()
    data = json.loads(done.stdout)
    assert (data["mode"], data["cycles"], data["samples"]) == ("synthesize (fallback)", 1, 1000)
    assert [e.type for e in fake.received] == ["describe", "synthesize"]
    assert Synthesize.from_event(fake.received[1]).text == "Hello there you"


def test_slow_stdin_is_not_a_timeout_and_arrives_in_pieces():
    with FakeTts(streaming=True) as fake:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wyoming_qwen3tts", "client", "--uri", fake.uri, "--timeout", "0.5"]
            + ["say", "--stream", "-", "--json"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        proc.stdin.write(b"Hello ")
        proc.stdin.flush()
        time.sleep(1.5)  # three times --timeout without any text: not the server's fault
        stdout, stderr = proc.communicate("wörld".encode(), timeout=30)
    assert proc.returncode == 0, stderr
    chunks = [SynthesizeChunk.from_event(e).text for e in fake.received if e.type == "synthesize-chunk"]
    assert chunks == ["Hello ", "wörld"]


def test_hang_up_mid_audio_exits_3_and_leaves_no_file(tmp_path):
    out = tmp_path / "x.wav"
    with FakeTts(streaming=False, hang_up=True) as fake:
        done = client("--uri", fake.uri, "say", "Hi.", "--out", str(out))
    assert done.returncode == 3
    assert "closed the connection" in done.stderr.decode()
    assert list(tmp_path.iterdir()) == []


# -- pure helpers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "a", "  lead and trail  ", "one two\nthree\tfour five six seven"])
def test_split_fragments_keeps_the_text_exactly(text):
    fragments = split_fragments(text, 3)
    assert "".join(fragments) == text
    assert all(len(f.split()) <= 3 for f in fragments)


def test_wav_header_is_what_the_wave_module_reads(tmp_path):
    path = tmp_path / "h.wav"
    path.write_bytes(wav_header(PcmFormat(22050, 2, 2), 8) + bytes(8))
    with wave.open(str(path)) as wav:
        assert wav.getparams()[:4] == (2, 2, 22050, 2)


def test_describe_listing_of_a_foreign_server():
    old = TtsProgram(name="old", attribution=None, installed=False, description=None, version=None, voices=[])
    speakers = [TtsVoiceSpeaker(name="s1"), TtsVoiceSpeaker(name="s2")]
    piper = TtsProgram(
        name="piper",
        attribution=Attribution(name="rhasspy", url=""),
        installed=True,
        description=None,
        version="2.5.2",
        voices=[_voice("a", ["en_US"]), _voice("b", ["de_DE"], installed=False, speakers=speakers)],
    )
    asr = AsrProgram(
        name="whisper", attribution=None, installed=True, description=None, version=None, models=[]
    )
    text = format_info(Info(tts=[old, piper], asr=[asr]), "tcp://h:1")
    assert "TTS program old  (not installed)" in text
    assert "TTS program piper 2.5.2  (the one clients use)" in text
    assert "  attribution  rhasspy\n" in text and "streaming    no" in text
    assert "languages    (2) en_US, de_DE" in text
    assert "    b  b!  [not installed; de_DE; speakers: s1, s2]" in text
    assert text.endswith("Also offers asr: whisper")
