"""Packaging: the sdist and the wheel build, and the wheel alone gives a working server.

The sdist is built from a copy of the checkout and the wheel from that sdist (``python -m build``), so a file
missing from the sdist fails here. The wheel goes into a fresh virtual environment with ``--no-deps`` (the
dependencies come from the environment running the tests, which is made visible to it), and everything then
runs from that environment, outside the repository: ``wyoming-qwen3tts --version``, ``--help``, and a real
server on a tiny random checkpoint that answers the health check and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.fixtures.deploy_files import ROOT
from tests.fixtures.deploy_files import package_version as _version
from tests.fixtures.deploy_files import require_module
from tests.fixtures.server_process import free_port

# Not part of a source distribution (and large, or machine-local).
_COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv*",
    ".hypothesis",
    ".pytest_cache",
    ".benchmarks",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    "checkpoints",
    "goldens",
    "data",
)


def _run(args: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist + wheel, built like a release: the wheel from the sdist, in isolated build environments."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=_COPY_IGNORE)
    out = work / "dist"
    require_module("build")
    _run([sys.executable, "-m", "build", "--outdir", out, source], timeout=600)
    return out


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding only the wheel; dependencies come from the running environment."""
    (wheel,) = dist.glob("*.whl")
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    _run([sys.executable, "-m", "venv", "--system-site-packages", env_dir], timeout=300)
    python = env_dir / "bin" / "python"
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", wheel], timeout=300)
    # Appended after the venv's own site-packages, so the installed wheel wins over any editable install of
    # the checkout in the running environment (.pth files of an added path are not executed).
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    parents = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "zz_test_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(parents)))
    return env_dir


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["HF_HUB_OFFLINE"] = "1"
    return env


def test_sdist_and_wheel_contents(dist):
    version = _version()
    wheel = dist / f"wyoming_qwen3tts-{version}-py3-none-any.whl"
    assert wheel.is_file(), sorted(p.name for p in dist.iterdir())
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(f"wyoming_qwen3tts-{version}.dist-info/entry_points.txt").decode()
    assert "wyoming_qwen3tts/health_check.py" in names and "wyoming_qwen3tts/engine/__init__.py" in names
    assert "wyoming_qwen3tts/http/static/index.html" in names, "the voice page ships as package data"
    assert not any(name.startswith("tests/") for name in names), "tests do not ship in the wheel"
    assert "wyoming-qwen3tts = wyoming_qwen3tts.__main__:main" in entry_points
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "wyoming_qwen3tts/__main__.py"):
        assert needed in members, needed


def test_installed_wheel_runs_outside_the_checkout(venv, tmp_path):
    env = _clean_env()
    python, script = venv / "bin" / "python", venv / "bin" / "wyoming-qwen3tts"
    location = _run(
        [python, "-c", "import wyoming_qwen3tts; print(wyoming_qwen3tts.__file__)"], cwd=tmp_path, env=env
    )
    assert Path(location.stdout.strip()).is_relative_to(
        venv
    ), "the wheel's copy is imported, not the checkout"
    assert _run([script, "--version"], cwd=tmp_path, env=env).stdout.strip() == _version()
    help_text = _run([python, "-m", "wyoming_qwen3tts", "--help"], cwd=tmp_path, env=env).stdout
    for flag in (
        "--uri",
        "--model",
        "--clone-model",
        "--voices-dir",
        "--max-loaded-models",
        "--no-streaming",
    ):
        assert flag in help_text
    _run([python, "-m", "wyoming_qwen3tts.health_check", "--help"], cwd=tmp_path, env=env)


def test_installed_wheel_serves_a_local_checkpoint(venv, tiny_custom_voice, tmp_path):
    """The README's path in small: install, start, answer describe, stop on SIGTERM with exit code 0."""
    env = _clean_env()
    uri = f"tcp://127.0.0.1:{free_port()}"
    http_port = free_port()
    log_path = tmp_path / "server.log"
    command = [
        venv / "bin" / "wyoming-qwen3tts",
        "--uri",
        uri,
        "--model",
        tiny_custom_voice,
        "--device",
        "cpu",
        "--threads",
        "2",
        "--data-dir",
        tmp_path / "data",
        "--http-host",
        "127.0.0.1",
        "--http-port",
        http_port,
    ]
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(a) for a in command], cwd=tmp_path, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 120
            while True:
                check = subprocess.run(
                    [
                        str(venv / "bin" / "python"),
                        "-m",
                        "wyoming_qwen3tts.health_check",
                        "--uri",
                        uri,
                        "--timeout",
                        "2",
                    ],
                    cwd=tmp_path,
                    env=env,
                    capture_output=True,
                    text=True,
                )
                if check.returncode == 0:
                    break
                assert proc.poll() is None, f"server exited with {proc.returncode}: {log_path.read_text()}"
                assert time.monotonic() < deadline, f"not healthy after 120 s: {log_path.read_text()}"
                time.sleep(0.5)
            assert check.stdout.startswith("healthy:")
            # The HTTP side of the installed wheel: ready, and the voice page (package data) is served.
            base = f"http://127.0.0.1:{http_port}"
            while True:  # describe answers while the model loads; /readyz once it serves
                try:
                    with urllib.request.urlopen(f"{base}/readyz", timeout=10) as response:
                        assert response.status == 200
                        break
                except urllib.error.HTTPError as exc:
                    assert exc.code == 503 and time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.5)
            with urllib.request.urlopen(f"{base}/", timeout=10) as response:
                assert response.status == 200 and b"<!doctype html>" in response.read().lower()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log_path.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
