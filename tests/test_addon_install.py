"""The add-on's Python install, reproduced outside Docker exactly as addon/Dockerfile does it.

The Dockerfile installs the server from the project's release archive for the add-on's version
(``<repository>/archive/refs/tags/v<version>.tar.gz``): it is not published on the package index, so any
other source (an index pin such as ``wyoming-qwen3tts==0.1.0``, another tag, a branch) would fail on the build
machine. The first tests parse the Dockerfile and fail on such a source.

The last one runs the Dockerfile's ``pip install`` commands, in its order, in a fresh virtual environment (no
access to the environment running the tests), with the add-on's constraints file. The release archive is
stood in for by an archive of the working tree's files that git tracks or would track (committed or not, so
the test reflects the checkout, as ``git archive`` of the release commit will), laid out like GitHub's
(``wyoming-qwen3tts-<version>/...``). Two substitutions, both about the machine rather than the install:
torch comes from this machine's package index instead of PyTorch's CPU index (same version; unreachable
here), and pip may use its cache (``--no-cache-dir`` only keeps the image small). Then the add-on's own run
script (under the stand-in bashio, options from config.yaml) starts the server from that environment on a tiny
checkpoint placed in the add-on's model cache, the image's health check answers, and SIGTERM stops it with
exit code 0.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import InvalidRequirement, Requirement

from tests.fixtures.addon_bashio import STAND_IN_BASHIO, STAND_IN_CONFIG_READER
from tests.fixtures.deploy_files import ADDON, ROOT, S6, TORCH_VERSION, load_yaml, require_tool
from tests.fixtures.server_process import free_port

PACKAGE = "wyoming-qwen3tts"
# PyTorch's CPU wheel index: the only torch source the add-on image may use (PyPI's wheel carries CUDA).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


class SourceError(AssertionError):
    """The Dockerfile installs the server from a source that would not exist on the build machine."""


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    result = []
    for entry in joined:
        keyword, _, rest = entry.strip().partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def _expand(value: str, args: dict[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in args:
            raise SourceError(f"${name} is not an ARG with a default in addon/Dockerfile")
        return args[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", substitute, value)


def dockerfile_args(text: str) -> dict[str, str]:
    """The ARG defaults (and ENV values) as a build without --build-arg sees them."""
    args: dict[str, str] = {}
    for keyword, rest in _instructions(text):
        if keyword == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name.strip()] = _expand(default.strip().strip('"'), args)
    return args


def pip_installs(text: str) -> list[list[str]]:
    """Every `pip install ...` of the Dockerfile's RUN instructions, in order, ARGs expanded, as argv."""
    args = dockerfile_args(text)
    commands = []
    for keyword, rest in _instructions(text):
        if keyword != "RUN":
            continue
        for part in rest.split("&&"):
            argv = shlex.split(_expand(part, args))
            if argv[:2] == ["pip", "install"]:
                commands.append(argv)
    return commands


def release_archive_url(repository_url: str, version: str) -> str:
    """GitHub's source archive of the release tag v<version>."""
    return f"{repository_url.rstrip('/')}/archive/refs/tags/v{version}.tar.gz"


def _requirement(argument: str) -> Requirement | None:
    if argument.startswith("-"):
        return None
    try:
        return Requirement(argument)
    except InvalidRequirement:
        return None


def server_source(text: str, version: str, repository_url: str) -> str:
    """The URL the Dockerfile installs the server from; SourceError unless it is the release archive of
    the add-on's version in this repository."""
    expected = release_archive_url(repository_url, version)
    found = [
        requirement
        for argv in pip_installs(text)
        for requirement in map(_requirement, argv[2:])
        if requirement is not None and requirement.name.lower() == PACKAGE
    ]
    if len(found) != 1:
        raise SourceError(f"addon/Dockerfile must install {PACKAGE} exactly once, found {len(found)}")
    (requirement,) = found
    if requirement.url is None:
        raise SourceError(
            f"addon/Dockerfile installs {requirement} from the package index, where {PACKAGE} is not "
            f"published: install the release archive {expected}"
        )
    if requirement.url != expected:
        raise SourceError(
            f"addon/Dockerfile installs {PACKAGE} from {requirement.url}; for add-on version {version} it "
            f"must be the release archive {expected}"
        )
    return requirement.url


@pytest.fixture(scope="module")
def addon() -> dict[str, Any]:
    manifest = load_yaml(ADDON / "config.yaml")
    return {
        "manifest": manifest,
        "version": str(manifest["version"]),
        "repository": load_yaml(ROOT / "repository.yaml")["url"],
        "dockerfile": (ADDON / "Dockerfile").read_text(encoding="utf-8"),
    }


# ---------------------------------------------------------------------------------------------------------
# The install source


def test_dockerfile_installs_torch_then_the_release_archive_of_the_addon_version(addon):
    source = server_source(addon["dockerfile"], addon["version"], addon["repository"])
    assert source == release_archive_url(addon["repository"], addon["version"])
    installs = pip_installs(addon["dockerfile"])
    assert len(installs) == 2, installs
    torch, server = installs
    assert f"torch=={TORCH_VERSION}" in torch and torch[torch.index("--index-url") + 1] == TORCH_CPU_INDEX
    assert "-c" in server, "the server's dependencies are pinned by the add-on's constraints"
    # onnxruntime's 8-bit MatMulNBits is `auto` on AVX2 where installed (engine/policy.py, issue 24).
    assert any(r is not None and "cpu4bit" in r.extras for r in map(_requirement, server)), server
    assert dockerfile_args(addon["dockerfile"])["WYOMING_QWEN3TTS_VERSION"] == addon["version"]


_REPOSITORY = "https://github.com/wyoming-qwen3tts/wyoming-qwen3tts"


@pytest.mark.parametrize(
    "install, problem",
    [
        ('"wyoming-qwen3tts==${WYOMING_QWEN3TTS_VERSION}"', "package index"),
        ("wyoming-qwen3tts", "package index"),
        (f'"wyoming-qwen3tts @ {_REPOSITORY}/archive/refs/tags/v9.9.9.tar.gz"', "v0.1.0"),
        (f'"wyoming-qwen3tts @ {_REPOSITORY}/archive/refs/heads/main.tar.gz"', "v0.1.0"),
        ('"wyoming-qwen3tts @ https://github.com/someone/fork/archive/refs/tags/v0.1.0.tar.gz"', "v0.1.0"),
        ('"wyoming-qwen3tts @ ${UNDEFINED_SOURCE}"', "UNDEFINED_SOURCE"),
    ],
)
def test_a_source_that_would_not_exist_fails(addon, install, problem):
    """An unpublished index pin, another version's tag, a moving branch, a fork or an undefined ARG."""
    dockerfile = re.sub(r'"wyoming-qwen3tts(\[[^\]]*\])? @ [^"]+"', lambda _: install, addon["dockerfile"])
    assert dockerfile != addon["dockerfile"]
    with pytest.raises(SourceError, match=re.escape(problem)):
        server_source(dockerfile, "0.1.0", _REPOSITORY)


# ---------------------------------------------------------------------------------------------------------
# The install itself, and the server it gives


def _working_tree_archive(path: Path, top: str) -> Path:
    """What GitHub's release archive will hold: the files git tracks or would track, as they are now."""
    git = require_tool("git")
    if not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout to know which files a release archive holds")
    listed = subprocess.run(
        [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    with tarfile.open(path, "w:gz") as archive:
        for name in sorted(set(filter(None, listed.split("\0")))):
            if (ROOT / name).is_file():  # deleted but not yet committed: not in the release
                archive.add(ROOT / name, arcname=f"{top}/{name}", recursive=False)
    return path


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def _run(argv: list[Any], **kwargs: Any) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)
    assert (
        result.returncode == 0
    ), f"{argv}: exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr}"
    return result


def _pin(line: str) -> tuple[str, str]:
    name, _, version = line.strip().partition("==")
    return re.sub(r"[-_.]+", "-", name).lower(), version


def _local_install(argv: list[str], venv: Path, archive: Path, source: str, copies: dict[str, Path]) -> list:
    """One of the Dockerfile's pip commands, run with the fresh environment's pip on this machine."""
    command: list[Any] = [venv / "bin" / "python", "-m", "pip", "install"]
    rest = iter(argv[2:])
    for argument in rest:
        if argument == "--no-cache-dir":
            continue  # only keeps the image small; pip's cache makes repeated test runs fast
        if argument == "--index-url":
            index = next(rest)
            assert index == TORCH_CPU_INDEX, f"torch from {index}"
            continue  # PyTorch's index is unreachable here; this machine's index has the same torch build
        if argument in ("-c", "--constraint"):
            command += [argument, copies[next(rest)]]
            continue
        requirement = _requirement(argument)
        if requirement is not None and requirement.url is not None:
            assert requirement.url == source
            extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
            argument = f"{requirement.name}{extras} @ {archive.as_uri()}"
        command.append(argument)
    return command


@pytest.fixture(scope="module")
def addon_venv(addon, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the add-on's install, from an archive of the working tree."""
    work = tmp_path_factory.mktemp("addon_install")
    version = addon["version"]
    source = server_source(addon["dockerfile"], version, addon["repository"])
    top = f"{addon['repository'].rstrip('/').rsplit('/', 1)[1]}-{version}"
    archive = _working_tree_archive(work / f"v{version}.tar.gz", top)
    # COPY <file in addon/> <path in the image>: the constraints file the pip commands name.
    copies = {}
    for keyword, rest in _instructions(addon["dockerfile"]):
        if keyword == "COPY" and len(rest.split()) == 2:
            src, dest = rest.split()
            copies[dest] = ADDON / src
    venv = work / "venv"
    env = _clean_env()
    _run(
        [sys.executable, "-m", "venv", venv], timeout=300, env=env
    )  # like `python3 -m venv`: no site packages
    for argv in pip_installs(addon["dockerfile"]):
        _run(_local_install(argv, venv, archive, source, copies), timeout=900, cwd=work, env=env)
    return venv


@pytest.mark.timeout(1200)
def test_addon_install_serves_a_tiny_checkpoint_through_the_run_script(
    addon, addon_venv, tiny_custom_voice, tmp_path
):
    venv, version = addon_venv, addon["version"]
    env = _clean_env()
    python = venv / "bin" / "python"
    # The environment is consistent, holds the archive's version and exactly the constrained pins.
    _run([python, "-m", "pip", "check"], env=env, cwd=tmp_path)
    frozen = _run([python, "-m", "pip", "freeze", "--all"], env=env, cwd=tmp_path).stdout
    installed = dict(_pin(line) for line in frozen.splitlines() if "==" in line)
    constraints = (ADDON / "constraints.txt").read_text(encoding="utf-8").splitlines()
    for name, pinned in (_pin(line) for line in constraints if "==" in line and not line.startswith("#")):
        # Every constrained package that got installed has the constraint's version (zeroconf's need not be).
        assert installed.get(name, pinned) == pinned, (name, installed[name], pinned)
    found = _run(
        [
            python,
            "-c",
            "import torch, wyoming_qwen3tts as w; print(w.__version__, w.__file__, torch.__version__)",
        ],
        env=env,
        cwd=tmp_path,
    ).stdout.split()
    assert found[0] == version and Path(found[1]).is_relative_to(venv), "the archive's copy, not the checkout"
    assert found[2].split("+")[0] == TORCH_VERSION

    # The add-on's model cache (/data/models) holds the model the run script names, as after a first start.
    data, config = tmp_path / "data", tmp_path / "config"
    model = f"Qwen/Qwen3-TTS-12Hz-{addon['manifest']['options']['model_size']}-CustomVoice"
    storage = data / "models" / ("models--" + model.replace("/", "--"))
    commit = "0" * 40
    shutil.copytree(tiny_custom_voice, storage / "snapshots" / commit)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(commit)

    # The run script under the stand-in bashio, with the image's PATH (the environment's bin first). A
    # container has its own network namespace, so the script's fixed ports are safe there; on a test machine a
    # shim moves them to free loopback ports (appended: later flags win). Nothing else is changed.
    fake = tmp_path / "fake"
    (fake / "bin").mkdir(parents=True)
    (fake / "bashio.sh").write_text(STAND_IN_BASHIO)
    (fake / "config.py").write_text(STAND_IN_CONFIG_READER)
    (fake / "options.json").write_text(json.dumps(addon["manifest"]["options"]))
    port, http_port = free_port(), free_port()
    shim = fake / "bin" / "python3"
    shim.write_text(
        "#!/bin/bash\n"
        'if [[ "${1:-}" == "-m" && "${2:-}" == "wyoming_qwen3tts" ]]; then\n'
        f'    exec "{venv}/bin/python3" "$@" --uri tcp://127.0.0.1:{port}'
        f" --http-host 127.0.0.1 --http-port {http_port}\n"
        "fi\n"
        f'exec "{venv}/bin/python3" "$@"\n'
    )
    shim.chmod(0o755)
    server_env = _clean_env(
        PATH=f"{fake / 'bin'}:{venv / 'bin'}:{os.environ['PATH']}",
        FAKE_DIR=str(fake),
        FAKE_PYTHON=sys.executable,
        FAKE_OPTIONS=str(fake / "options.json"),
        QWEN3TTS_ADDON_DATA=str(data),
        QWEN3TTS_ADDON_CONFIG=str(config),
        # The image's ENV (addon/Dockerfile), with its paths moved into the test's folders.
        WYOMING_QWEN3TTS_CONFIG=str(ADDON / "rootfs" / "etc" / "wyoming-qwen3tts" / "settings.yaml"),
        HF_HOME=str(data / "models"),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONUNBUFFERED="1",
    )
    # The image's health check, as the Supervisor runs it (python3 is the environment's), on the moved port.
    healthcheck = addon["dockerfile"].split("HEALTHCHECK", 1)[1]
    probe = json.loads(re.search(r"CMD (\[.*\])", healthcheck).group(1))
    assert probe[:3] == ["python3", "-m", "wyoming_qwen3tts.health_check"]
    probe = [str(python) if a == "python3" else a.replace(":10200", f":{port}") for a in probe]

    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["bash", "-c", 'source "$FAKE_DIR/bashio.sh"; source "$1"', "run", str(S6 / "qwen3tts" / "run")],
            cwd=tmp_path,
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                check = subprocess.run(probe, cwd=tmp_path, env=env, capture_output=True, text=True)
                if check.returncode == 0:
                    break
                assert proc.poll() is None, f"server exited with {proc.returncode}: {log_path.read_text()}"
                assert time.monotonic() < deadline, f"not healthy after 180 s: {log_path.read_text()}"
                time.sleep(0.5)
            # Healthy (describe answers) comes before ready: the weights load after the ports open (issue 28),
            # so /readyz is 503 until then; wait for it within the same bound.
            while True:
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{http_port}/readyz", timeout=10
                    ) as response:
                        assert response.status == 200
                        break
                except urllib.error.HTTPError as exc:
                    assert exc.code == 503, exc
                assert proc.poll() is None, f"server exited with {proc.returncode}: {log_path.read_text()}"
                assert time.monotonic() < deadline, f"not ready after 180 s: {log_path.read_text()}"
                time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log_path.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    text = log_path.read_text()
    assert "Starting Qwen3-TTS: --uri tcp://0.0.0.0:10200" in text, "the run script's own flags"
    assert "Ready" in text, text
    assert "incorrect regex pattern" not in text, "no misleading tokenizer warning at start"
