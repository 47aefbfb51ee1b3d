"""The README tells the truth: its two set-up commands give a running server, and its configuration table
names only flags the server has, config keys that exist and add-on options the add-on offers."""

from __future__ import annotations

import configparser
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests.fixtures.server_process import ROOT, free_port, loaded
from wyoming_qwen3tts.settings import Settings
from wyoming_qwen3tts.settings.docs import readme_table, table

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def _first_sh_block(text: str) -> list[str]:
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "no sh code block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_two_setup_commands_give_a_running_server(tiny_custom_voice):
    setup, run = _first_sh_block(_section("Install and run"))
    assert setup == "script/setup" and (ROOT / "script" / "setup").stat().st_mode & 0o111
    prefix = ".venv/bin/python -m wyoming_qwen3tts "
    assert run.startswith(prefix)
    readme_args = run[len(prefix) :].split()
    # The README's command as written, plus what CI must add: a local checkpoint (the hub is unreachable here)
    # and free loopback ports. Later flags win, so the README's own flags are all parsed and used.
    port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data:
        extra = ["--model", str(tiny_custom_voice), "--device", "cpu", "--data-dir", data]
        extra += [
            "--uri",
            f"tcp://127.0.0.1:{port}",
            "--http-host",
            "127.0.0.1",
            "--http-port",
            str(http_port),
        ]
        log_path = Path(data) / "server.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "wyoming_qwen3tts", *readme_args, *extra],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + 120
                while not loaded(f"tcp://127.0.0.1:{port}"):
                    assert proc.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.5)
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(30) == 0, log_path.read_text()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        text = log_path.read_text()
        assert "Ready" in text and "Zeroconf" in text, text  # --zeroconf from the README was honoured


def _config_table() -> list[list[str]]:
    rows = []
    for line in _section("Configuration").splitlines():
        if line.startswith("| `--") or line.startswith("| |"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert len(rows) > 20
    return rows


def test_configuration_table_matches_flags_config_keys_and_addon_options():
    help_text = subprocess.run(
        [sys.executable, "-m", "wyoming_qwen3tts", "--help"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    fields = {f for f in Settings.__dataclass_fields__}
    config_keys = set(yaml.safe_load((ROOT / "config.yaml").read_text()))
    addon_schema = yaml.safe_load((ROOT / "addon" / "config.yaml").read_text())["schema"]
    named_options = set()
    for flag_cell, key_cell, _default, addon_cell, _meaning in _config_table():
        for flag in re.findall(r"--[a-z-]+", flag_cell):
            assert flag in help_text, f"README names {flag}, the server has no such flag"
        for key in re.findall(r"`([a-z_]+)(?:: false)?`", key_cell):
            assert key in fields, f"README names config key {key}, Settings has no such field"
            assert key in config_keys, f"config.yaml does not document {key}"
        named_options |= set(re.findall(r"`([a-z_0-9]+)`", addon_cell)) & set(addon_schema)
    # Every add-on option but the pass-through one appears in the table.
    assert set(addon_schema) - {"extra_args"} <= named_options


def test_configuration_table_is_the_generated_one():
    """The table is generated from the settings' declarations: `python -m wyoming_qwen3tts.settings.docs
    --write` rewrites it after a change."""
    written = readme_table(_section("Configuration"))
    assert written is not None, "README's configuration table lost its markers"
    assert (
        written == table()
    ), "README's settings table is stale: python -m wyoming_qwen3tts.settings.docs --write"
    generated = subprocess.run(
        [sys.executable, "-m", "wyoming_qwen3tts.settings.docs"], cwd=ROOT, capture_output=True, text=True
    )
    assert generated.returncode == 0 and generated.stdout == written, generated.stderr


def _extra(name: str) -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    return {line.strip() for line in parser["options.extras_require"][name].splitlines() if line.strip()}


def test_setup_installs_everything_the_test_command_needs_and_ci_runs_both():
    """README: `script/setup`, then `script/test`, passes on a fresh clone; CI runs exactly those commands."""
    setup = (ROOT / "script" / "setup").read_text(encoding="utf-8")
    installs = re.findall(r"pip install (?:-e )?'\.\[([a-z,]+)\]'", setup)
    assert installs, "script/setup installs the package with extras"
    extras = {extra for group in installs for extra in group.split(",")}
    assert "dev" in extras and "zeroconf" in extras
    assert setup.index("pip install torch==2.13.0") < setup.index("pip install -e"), "torch first"
    # The test extra is what the suite imports (openai, selenium, hypothesis, ...): dev must hold all of it.
    assert _extra("test") <= _extra("dev"), f"dev lacks {sorted(_extra('test') - _extra('dev'))}"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.strip().startswith("#")]
    setup_at = [i for i, line in enumerate(commands) if re.search(r"\bbash script/setup\b", line)]
    test_at = [i for i, line in enumerate(commands) if re.search(r"\bbash script/test\b", line)]
    assert setup_at and test_at and setup_at[0] < test_at[0]
    assert not any("pip install" in line for line in commands), "CI installs only through script/setup"
    assert "-eq 5" in ci, "pytest's exit code 5 (no tests collected) fails CI"
    tests_section = _section("Tests")
    assert _first_sh_block(tests_section) == ["script/test"]
