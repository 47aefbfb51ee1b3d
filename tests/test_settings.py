"""Settings: flags, config file, env passthrough, precedence and validation (no model, no torch needed)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wyoming_qwen3tts import __version__
from wyoming_qwen3tts.__main__ import main
from wyoming_qwen3tts.settings import (
    ENV_ARGS,
    ENV_CONFIG,
    LANGUAGES,
    Settings,
    SettingsError,
    build_parser,
    load_settings,
    normalize_language,
    read_config_file,
)

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_no_sources_gives_defaults():
    assert load_settings([], {}) == Settings()
    assert Settings().zeroconf_name is None


def test_shipped_config_yaml_is_exactly_the_defaults():
    path = ROOT / "config.yaml"
    values = read_config_file(path)
    # It documents every setting, and loading it changes nothing.
    assert set(values) == {f.name for f in dataclasses.fields(Settings)}
    assert load_settings(["--config", str(path)], {}) == Settings()


def test_every_setting_has_a_flag():
    parser = build_parser()
    flags = {opt for action in parser._actions for opt in action.option_strings}
    for field in dataclasses.fields(Settings):
        flag = "--no-streaming" if field.name == "streaming" else "--" + field.name.replace("_", "-")
        assert flag in flags
    assert {"--config", "--version"} <= flags


def test_precedence_defaults_file_env_cli(tmp_path):
    config = _write(
        tmp_path / "settings.yaml",
        "uri: tcp://127.0.0.1:1111\n"
        "model: file-model\n"
        "samples-per-chunk: 111\n"  # dashes accepted
        "max_concurrent: 2\n"
        "slots: 3\n"
        "debug: true\n",
    )
    env = {
        ENV_CONFIG: str(config),
        ENV_ARGS: "--uri tcp://127.0.0.1:2222 --samples-per-chunk 222 --voice 'my voice'",
    }
    argv = ["--uri", "tcp://127.0.0.1:3333", "--slots", "4"]  # 4 == the default, still wins over the file
    s = load_settings(argv, env)
    assert s.uri == "tcp://127.0.0.1:3333"  # cli > env > file
    assert s.samples_per_chunk == 222  # env > file
    assert s.voice == "my voice"  # shlex-split
    assert s.slots == 4  # cli flag equal to the default still beats the file's 3
    assert s.model == "file-model" and s.max_concurrent == 2 and s.debug is True  # file > defaults
    assert s.max_text_chars == Settings().max_text_chars  # defaults


def test_config_path_sources(tmp_path):
    a = _write(tmp_path / "a.yaml", "model: from-a\n")
    b = _write(tmp_path / "b.yaml", "model: from-b\n")
    c = _write(tmp_path / "c.yaml", "model: from-c\n")
    assert load_settings([], {ENV_CONFIG: str(a)}).model == "from-a"
    assert load_settings([], {ENV_CONFIG: str(a), ENV_ARGS: f"--config {b}"}).model == "from-b"
    assert (
        load_settings(["--config", str(c)], {ENV_CONFIG: str(a), ENV_ARGS: f"--config {b}"}).model == "from-c"
    )


def test_flag_values_are_normalised():
    s = load_settings(
        [
            "--zeroconf",
            "--device",
            "CUDA:1",
            "--dtype",
            "bf16",
            "--language",
            "de",
            "--no-streaming",
            "--local-files-only",
            "--threads",
            "2",
            "--data-dir",
            "/tmp/voices",
            "--clone-model",
            "Qwen/Qwen3-TTS-12Hz-0.6B-Base",
        ],
        {},
    )
    assert s.zeroconf == "" and s.zeroconf_name == "qwen3-tts"
    assert (s.device, s.dtype, s.language) == ("cuda:1", "bfloat16", "german")
    assert s.streaming is False and s.local_files_only is True and s.threads == 2
    assert s.data_dir == Path("/tmp/voices") and s.clone_model == "Qwen/Qwen3-TTS-12Hz-0.6B-Base"
    assert load_settings(["--zeroconf", "kitchen"], {}).zeroconf_name == "kitchen"


def test_yaml_types_and_conveniences(tmp_path):
    cfg = _write(
        tmp_path / "c.yaml",
        "zeroconf: true\ndata_dir: /srv/qwen\nthreads: null\ndtype: fp16\nlanguage: JA\nstreaming: false\n",
    )
    s = load_settings(["--config", str(cfg)], {})
    assert s.zeroconf == "" and s.data_dir == Path("/srv/qwen") and s.threads is None
    assert (s.dtype, s.language, s.streaming) == ("float16", "japanese", False)
    assert (
        load_settings(["--config", str(_write(tmp_path / "e.yaml", "# only comments\n"))], {}) == Settings()
    )


@pytest.mark.parametrize(
    "value, expected",
    [
        ("auto", "auto"),
        ("English", "english"),
        ("en", "english"),
        ("en-US", "english"),
        ("zh_Hans", "chinese"),
        ("zh-CN", "chinese"),
        ("pt-BR", "portuguese"),
        ("ES", "spanish"),
        ("it", "italian"),
        ("ja", "japanese"),
        ("ko", "korean"),
        ("fr-CA", "french"),
        ("ru", "russian"),
    ],
)
def test_bcp47_language_normalisation(value, expected):
    assert normalize_language(value) == expected
    assert load_settings(["--language", value], {}).language == expected


def test_all_ten_languages_by_name_and_code():
    assert len(LANGUAGES) == 10
    for name, code in LANGUAGES.items():
        assert normalize_language(name) == name == normalize_language(code)


@pytest.mark.parametrize(
    "uri",
    ["tcp://0.0.0.0:10200", "tcp://[::]:10200", "tcp://localhost:1", "unix:///tmp/q.sock", "stdio://"],
)
def test_valid_uris(uri):
    assert load_settings(["--uri", uri], {}).uri == uri


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--uri", "bogus"], "--uri: 'bogus' is not"),
        (["--uri", "http://host:80"], "--uri"),
        (["--uri", "tcp://host"], "port in 1..65535"),
        (["--uri", "tcp://host:0"], "port in 1..65535"),
        (["--uri", "tcp://host:70000"], "port in 1..65535"),
        (["--uri", "tcp://:10200"], "tcp://HOST:PORT"),
        (["--uri", "unix://relative.sock"], "unix:///absolute"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--device", "cuda:x"], "unknown device"),
        (["--dtype", "int8"], "unknown dtype 'int8'"),
        (["--language", "elvish"], "unknown language 'elvish'"),
        (["--samples-per-chunk", "0"], "--samples-per-chunk: expected a positive integer"),
        (["--max-concurrent", "-1"], "--max-concurrent: expected a positive integer"),
        (["--slots", "many"], "--slots: expected a positive integer, got 'many'"),
        (["--max-text-chars", "1.5"], "--max-text-chars"),
        (["--threads", "0"], "--threads"),
        (["--model", ""], "--model: must not be empty"),
        (["--log-format", "%(nosuchfield)s"], "--log-format: invalid logging format"),
        (["--bogus-flag"], "unrecognized arguments: --bogus-flag"),
        (["--uri"], "expected one argument"),
        (["--config", "/nonexistent/settings.yaml"], "/nonexistent/settings.yaml: not found"),
    ],
)
def test_invalid_flags(argv, fragment):
    with pytest.raises(SettingsError) as info:
        load_settings(argv, {})
    message = str(info.value)
    assert fragment in message and "\n" not in message


@pytest.mark.parametrize(
    "env_args, fragment",
    [
        ("--slots zero", "WYOMING_QWEN3TTS_ARGS: --slots: expected a positive integer"),
        ("--nope", "WYOMING_QWEN3TTS_ARGS: unrecognized arguments: --nope"),
        ("--voice 'unbalanced", "WYOMING_QWEN3TTS_ARGS: cannot split"),
    ],
)
def test_invalid_env_args_name_the_variable(env_args, fragment):
    with pytest.raises(SettingsError, match=fragment):
        load_settings([], {ENV_ARGS: env_args})


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("- just\n- a list\n", "expected a mapping"),
        ("plain string\n", "expected a mapping"),
        ("uri: [unclosed\n", "invalid YAML at line"),
        ("mdoel: x\n", "unknown key 'mdoel'"),
        ("config: other.yaml\n", "unknown key 'config'"),
        ("slots: '4'\n", "slots: expected a positive integer, got '4'"),
        ("slots: true\n", "slots: expected a positive integer, got True"),
        ("debug: 'yes'\n", "debug: expected true or false"),
        ("model: 123\n", "model: expected a string, got 123"),
        ("voice: []\n", "voice: expected a string"),
        ("zeroconf: 5\n", "zeroconf: expected a service name"),
        ("language: klingon\n", "language: unknown language 'klingon'"),
        ("uri: tcp://x:99999\n", "uri: 'tcp://x:99999' is not"),
        ("device: gpu\n", "device: unknown device"),
        ("slots: 4\nslots-x: 1\n", "unknown key 'slots-x'"),
        ("max_concurrent: 2\nmax-concurrent: 3\n", "'max_concurrent' is set twice"),
    ],
)
def test_invalid_config_file_names_file_and_key(tmp_path, text, fragment):
    path = _write(tmp_path / "bad.yaml", text)
    with pytest.raises(SettingsError) as info:
        load_settings(["--config", str(path)], {})
    message = str(info.value)
    assert str(path) in message and fragment in message and "\n" not in message


def test_unreadable_config_file(tmp_path):
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(["--config", str(tmp_path)], {})  # a directory
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SettingsError, match="bin.yaml"):
        load_settings(["--config", str(binary)], {})


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as info:
        load_settings(["--version"], {})
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == __version__
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0


def test_main_invalid_settings_exit_1_one_line(capsys):
    assert main(["--device", "tpu"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown device 'tpu'" in err


def test_main_applies_platform_env_before_server(monkeypatch):
    """main(): settings -> env tuning -> app.run(settings), with a stand-in app module."""
    import types

    from wyoming_qwen3tts import platform_env

    seen = {}

    def fake_run(settings):
        seen["settings"] = settings
        seen["queues"] = platform_env.os.environ.get("GPU_MAX_HW_QUEUES")
        return 0

    for name in platform_env.ROCM_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MIOPEN_FIND_MODE", "NORMAL")  # the user's own value must survive
    monkeypatch.setattr(platform_env, "detect_gpu_vendor", lambda: "amd")
    app = types.ModuleType("wyoming_qwen3tts.app")
    app.run = fake_run
    monkeypatch.setitem(sys.modules, "wyoming_qwen3tts.app", app)
    monkeypatch.delenv(ENV_ARGS, raising=False)
    monkeypatch.delenv(ENV_CONFIG, raising=False)
    assert main(["--uri", "tcp://127.0.0.1:10555", "--language", "fr"]) == 0
    assert seen["settings"].uri == "tcp://127.0.0.1:10555" and seen["settings"].language == "french"
    assert seen["queues"] == "1"
    assert platform_env.os.environ["MIOPEN_FIND_MODE"] == "NORMAL"


def test_cli_bad_uri_subprocess_exits_1_quickly():
    """A bad option value through the real entry point: one line naming the setting, exit 1 (issue 28)."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "wyoming_qwen3tts", "--uri", "bogus"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "--uri" in proc.stderr and "bogus" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert elapsed < 10, elapsed


def test_invalid_settings_import_nothing_heavy():
    code = (
        "import sys; from wyoming_qwen3tts.__main__ import main; rc = main(['--slots', '0']); "
        "print(rc, 'torch' in sys.modules, 'wyoming_qwen3tts.engine' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["1", "False", "False"], proc.stderr


def test_quantize_setting_from_flag_config_and_checks(tmp_path):
    assert load_settings([], {}).quantize == "auto"
    assert load_settings(["--quantize", "INT8"], {}).quantize == "int8"
    config = tmp_path / "config.yaml"
    config.write_text("quantize: int4\n")
    assert load_settings(["--config", str(config)], {}).quantize == "int4"
    with pytest.raises(SettingsError, match="--quantize: unknown quantize mode 'int2'"):
        load_settings(["--quantize", "int2"], {})
