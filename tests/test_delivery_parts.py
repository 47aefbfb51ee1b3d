"""The parts behind the reply delivery, one by one: language-bound voice names in the catalog, the PCM shaper
(speed, pauses, constant blocks), style voices and per-voice speed in the library and its CLI, the new
settings, and the per-request log line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from tests.test_voices_cli import _one_error_line, _voices
from wyoming_qwen3tts.core.tempo import stretch
from wyoming_qwen3tts.service.catalog import VoiceCatalog
from wyoming_qwen3tts.service.delivery import Delivery, PcmShaper
from wyoming_qwen3tts.service.errors import ServiceError
from wyoming_qwen3tts.service.models import ModelPool
from wyoming_qwen3tts.service.report import RequestReport
from wyoming_qwen3tts.service.speech import language_and_source
from wyoming_qwen3tts.service.voice import builtin_voices
from wyoming_qwen3tts.settings import SettingsError, load_settings
from wyoming_qwen3tts.voices.library import VoiceLibrary
from wyoming_qwen3tts.voices.styles import add_style, set_speed
from wyoming_qwen3tts.voices.validation import VoiceLibraryError

LANGUAGES = ["english", "german", "chinese"]


def _catalog(tmp_path: Path, strict: bool = False) -> VoiceCatalog:
    pool = ModelPool({"custom_voice": "cv", "base": None, "voice_design": None}, loader=lambda m: None)
    library = VoiceLibrary(tmp_path / "voices")
    return VoiceCatalog(builtin_voices(["ryan", "ono_anna"]), library, pool, "ryan", LANGUAGES, strict)


def test_bound_names_fix_the_language_and_plain_names_still_work(tmp_path):
    catalog = _catalog(tmp_path)
    advertised = {v.name: v for v in catalog.advertised()}
    assert set(advertised) == {f"{s}@{c}" for s in ("ryan", "ono_anna") for c in ("en", "de", "zh")}
    assert advertised["ono_anna@de"].description.startswith("Ono Anna · Deutsch (")
    for name, language in (("ryan@de", "german"), ("RYAN@de-AT", "german"), ("ryan@zh", "chinese")):
        voice = catalog.find(name)
        assert voice.speaker == "ryan" and voice.language == language and voice.bound
    plain = catalog.find("ryan")
    assert plain.language is None and not plain.bound
    assert language_and_source(catalog.find("ryan@de"), "english", "Hello") == ("german", "voice")
    assert language_and_source(plain, "auto", "Hello") == ("auto", "model")
    assert language_and_source(plain, "auto", "Das ist gut und schön.") == ("german", "detected")
    assert language_and_source(plain, "french", "Hello") == ("french", "default")
    for bad in ("ryan@xx", "nobody@de", "@de", "ryan@"):
        assert catalog.lookup(bad) is None, bad


def test_missing_voice_falls_back_unless_strict(tmp_path, caplog):
    catalog = _catalog(tmp_path)
    with pytest.raises(ServiceError) as err:
        catalog.find("clone:gone")  # the HTTP API's lookup stays strict
    assert err.value.code == "voice-not-found"
    with caplog.at_level(logging.WARNING):
        assert catalog.find_or_default("clone:gone").name == "ryan"
    assert "'clone:gone' not found" in caplog.text
    with pytest.raises(ServiceError):
        _catalog(tmp_path, strict=True).find_or_default("clone:gone")


def test_library_voices_keep_their_language_and_style_voices_are_listed(tmp_path):
    catalog = _catalog(tmp_path)
    add_style(catalog.library, "night", "ryan", "Calm.", language="de", speed=0.8)
    add_style(catalog.library, "any", "ryan", "Loud.")
    voices = {v.name: v for v in catalog.advertised()}
    night = voices["style:night"]
    assert night.language == "german" and night.bound and night.speed == 0.8 and night.instruct == "Calm."
    assert night.role == "custom_voice" and "style:any" not in voices  # no language: bound to each
    assert voices["style:any@zh"].language == "chinese" and voices["style:any@zh"].instruct == "Loud."
    assert (
        catalog.find("night").name == "style:night" and catalog.find("style:night@en").language == "english"
    )


def test_shaper_blocks_are_constant_and_speed_and_pauses_add_up():
    rng = np.random.default_rng(0)
    sentences = [(rng.standard_normal(n) * 3000).astype("<i2").tobytes() for n in (5000, 333, 7777)]
    for speed, silence in ((1.0, 0.0), (1.25, 0.0), (0.8, 0.25)):
        shaper = PcmShaper(speed, silence, block=2048)
        out: list[bytes] = []
        for pcm in sentences:
            out += shaper.sentence()
            for start in range(0, len(pcm), 998):  # uneven pieces, as an engine streams them
                out += shaper.feed(pcm[start : start + 998])
        out += shaper.finish()
        assert all(len(b) == 2048 for b in out[:-1]) and 0 < len(out[-1]) <= 2048
        total = sum(len(s) for s in sentences) // 2 + 2 * round(silence * speed * 24000)
        assert sum(len(b) for b in out) // 2 == round(total / speed)
    same = PcmShaper(1.25)  # no blocks: as the stretcher gives them, the same samples as one whole stretch
    joined = b"".join(b"".join(same.feed(s)) for s in sentences) + b"".join(same.finish())
    assert joined == stretch(b"".join(sentences), 1.25)


def test_request_seed_and_the_log_line(caplog):
    assert Delivery(seed=7).request_seed() == 7
    assert len({Delivery().request_seed() for _ in range(20)}) > 1
    report = RequestReport("http", "ryan@de", "german", "voice", speed=1.25, seed=7, chars=20, sentences=2)
    report.audio(b"\0\0" * 24000)
    line = report.line()
    for part in ("http request", "voice=ryan@de", "language=german (voice)", "chars=20", "sentences=2"):
        assert part in line
    assert "audio=1.00 s" in line and "speed=1.25" in line and "seed=7" in line and "ttfa=" in line
    report.truncated = 1
    with caplog.at_level(logging.INFO, logger="wyoming_qwen3tts.request"):
        report.log()
    assert caplog.records[-1].levelno == logging.WARNING and "runaway guard cut 1" in caplog.text


def test_style_and_speed_in_the_library(tmp_path):
    library = VoiceLibrary(tmp_path)
    profile = add_style(library, "night", "Ryan", "  calm,   quiet  ", language="en", speed=1.0)
    assert (profile.kind, profile.speaker, profile.instruct, profile.speed) == (
        "style",
        "ryan",
        "calm, quiet",
        None,
    )
    assert set_speed(library, "night", 1.2).speed == 1.2
    assert json.loads((tmp_path / "night" / "meta.json").read_text())["speed"] == 1.2
    assert set_speed(library, "night", 1).speed is None  # 1 clears it: the server's --speed again
    for kwargs, code in (
        (dict(speaker="ry an", instruct="x"), "invalid-argument"),
        (dict(speaker="ryan", instruct="  "), "invalid-argument"),
        (dict(speaker="ryan", instruct="x", speed=3.0), "invalid-argument"),
        (dict(speaker="ryan", instruct="x", speed=float("nan")), "invalid-argument"),
    ):
        with pytest.raises(VoiceLibraryError) as err:
            add_style(library, "other", **kwargs)
        assert err.value.code == code
    meta = tmp_path / "night" / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "speed": "fast"}))
    assert library.get("night").speed is None  # a bad stored speed is ignored, the voice still works
    meta.write_text(json.dumps({"kind": "style", "instruct": "calm"}))
    assert [p.name for p in library.list()] == []  # a style voice without a speaker is skipped


def test_voices_cli_style_and_set(tmp_path):
    proc = _voices(tmp_path, "style", "night", "--speaker", "ryan", "--instruct", "calm", "--speed", "0.9")
    assert proc.returncode == 0, proc.stderr
    assert "speaker: ryan" in proc.stdout and "speed: 0.9" in proc.stdout
    proc = _voices(tmp_path, "set", "night", "--speed", "1.1")
    assert proc.returncode == 0 and "speed: 1.1" in proc.stdout, proc.stderr
    _one_error_line(_voices(tmp_path, "set", "night", "--speed", "9"), "invalid-argument")
    _one_error_line(_voices(tmp_path, "set", "nobody", "--speed", "1.1"), "voice-not-found")
    listed = json.loads(_voices(tmp_path, "list", "--json").stdout)
    assert listed[0]["kind"] == "style" and listed[0]["speed"] == 1.1


def test_delivery_settings():
    s = load_settings(["--speed", "1.25", "--sentence-silence", "0.3", "--no-normalize", "--seed", "5"], {})
    assert (s.speed, s.sentence_silence, s.normalize, s.seed) == (1.25, 0.3, False, 5)
    s = load_settings(["--strict-voices", "--unload-after", "0"], {})
    assert s.strict_voices and s.unload_after is None  # 0 = never
    assert load_settings(["--unload-after", "600"], {}).unload_after == 600.0
    for argv in (["--speed", "3"], ["--speed", "nan"], ["--sentence-silence", "-1"], ["--seed", "x"]):
        with pytest.raises(SettingsError):
            load_settings(argv, {})
