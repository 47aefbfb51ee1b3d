"""The standalone images, Compose and Kubernetes, checked without Docker or a cluster.

* Every Dockerfile (standalone and add-on) through hadolint, the shell scripts through shellcheck and
  ``bash -n`` (hadolint and shellcheck come from PyPI with the test extra).
* The standalone images: pinned base and torch, non-root user, volume, port, health check, a runtime stage
  that builds nothing; the dependency pins against setup.cfg; the entry script's dispatch.
* ``docker-compose.yml`` and ``deploy/k8s``: structure, GPU requests, volumes, probes that run the health
  check, settings that the real settings parser accepts, and the Kubernetes objects against the Kubernetes
  OpenAPI schemas (kubernetes-validate, strict), the ROCm overlay's patch included.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.deploy_files import ADDON, DOCKERFILES, HEALTH_CHECK, ROOT, SHELL_SCRIPTS, TORCH_VERSION
from tests.fixtures.deploy_files import load_yaml as _load
from tests.fixtures.deploy_files import package_version as _package_version
from tests.fixtures.deploy_files import require_module, require_tool, setup_cfg
from wyoming_qwen3tts.settings import Settings, load_settings, read_config_file

# ---------------------------------------------------------------------------------------------------------
# Linters: hadolint for Dockerfiles, shellcheck and bash -n for scripts.


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shell_scripts_parse(script):
    shell = "sh" if script.suffix == ".sh" else "bash"
    result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_shellcheck_is_clean():
    shellcheck = require_tool("shellcheck")
    result = subprocess.run([shellcheck, "-s", "bash", *map(str, SHELL_SCRIPTS[:-1])], capture_output=True)
    assert result.returncode == 0, result.stdout.decode()
    result = subprocess.run([shellcheck, str(SHELL_SCRIPTS[-1])], capture_output=True)
    assert result.returncode == 0, result.stdout.decode()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_hadolint_is_clean(dockerfile):
    hadolint = require_tool("hadolint")
    result = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------------------
# Standalone images


@pytest.mark.parametrize("dockerfile", DOCKERFILES[:2], ids=lambda p: p.name)
def test_standalone_dockerfile_conventions(dockerfile):
    text = dockerfile.read_text(encoding="utf-8")
    assert re.search(r"^ARG PYTHON_IMAGE=python:\d+\.\d+\.\d+-slim-\w+$", text, re.M), "pinned base image"
    assert re.search(rf"^ARG TORCH_VERSION={re.escape(TORCH_VERSION)}(\+rocm[\d.]+)?$", text, re.M)
    assert "-c docker/constraints.txt" in text
    assert "USER 1000:1000" in text and 'VOLUME ["/data"]' in text and "EXPOSE 10200" in text
    assert re.search(
        r"^HEALTHCHECK .*\n\s+CMD \[\"python\", \"-m\", \"wyoming_qwen3tts\.health_check\"", text, re.M
    )
    assert 'ENTRYPOINT ["/usr/local/bin/wyoming-qwen3tts-entrypoint"]' in text
    assert f'org.opencontainers.image.version="{_package_version()}"' in text
    assert text.count("\nFROM ") == 2, "a build stage and a runtime stage"
    runtime = text.rsplit("\nFROM ", 1)[1]
    assert "pip install" not in runtime and "apt-get" not in runtime, "nothing is built in the runtime stage"


def test_rocm_image_sets_the_rocm_environment():
    text = (ROOT / "Dockerfile.rocm").read_text(encoding="utf-8")
    for assignment in (
        "GPU_MAX_HW_QUEUES=1",
        "MIOPEN_FIND_MODE=FAST",
        "TORCH_ROCM_AOTRITON_ENABLE_EXPERIMENTAL=1",
    ):
        assert assignment in text
    assert "https://download.pytorch.org/whl/rocm" in text


def test_constraints_pin_every_runtime_dependency():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    text = (ROOT / "docker" / "constraints.txt").read_text(encoding="utf-8")
    assert (ADDON / "constraints.txt").read_text(encoding="utf-8") == text, "addon/constraints.txt is a copy"
    pins = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", line
            pins[canonicalize_name(requirement.name)] = specifier.version
    assert "torch" not in pins, "torch comes from each image's own index"
    parser = setup_cfg()
    wanted = [line for line in parser["options"]["install_requires"].splitlines() if line.strip()]
    for extra in ("zeroconf", "cpu4bit"):  # cpu4bit: the add-on installs it (issue 24)
        wanted += [line for line in parser["options.extras_require"][extra].splitlines() if line.strip()]
    for line in wanted:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name == "torch":
            assert requirement.specifier.contains(TORCH_VERSION)
            continue
        assert name in pins, f"{name} is not pinned in docker/constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} vs {line}"


def test_image_defaults_and_entrypoint_dispatch(tmp_path):
    defaults = read_config_file(ROOT / "docker" / "defaults.yaml")
    assert defaults == {"uri": "tcp://0.0.0.0:10200", "data_dir": Path("/data"), "cache_dir": "/data/models"}
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text('#!/bin/sh\necho "python $*"\n')
    (fake / "python").chmod(0o755)
    env = {"PATH": f"{fake}:{os.environ['PATH']}"}
    entry = str(ROOT / "docker" / "entrypoint.sh")
    cases = {
        (): "python -m wyoming_qwen3tts",
        ("--voice", "ryan"): "python -m wyoming_qwen3tts --voice ryan",
        ("voices", "list"): "python -m wyoming_qwen3tts voices list",
        ("synth", "--help"): "python -m wyoming_qwen3tts synth --help",
        ("echo", "hello"): "hello",
    }
    for args, expected in cases.items():
        result = subprocess.run([entry, *args], env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0 and result.stdout.strip() == expected, (args, result)


def test_dockerignore_keeps_the_context_small():
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert lines[lines.index("*")] == "*", "whitelist: ignore everything, then re-include"
    for needed in (
        "!wyoming_qwen3tts/",
        "!docker/",
        "!setup.cfg",
        "!pyproject.toml",
        "!README.md",
        "!LICENSE",
    ):
        assert needed in lines


# ---------------------------------------------------------------------------------------------------------
# docker-compose.yml


def test_compose_profiles_gpus_volumes_and_settings():
    compose = _load(ROOT / "docker-compose.yml")
    services = compose["services"]
    assert set(services) == {"qwen3tts-cuda", "qwen3tts-rocm", "qwen3tts-cpu"}
    version = _package_version()
    for name, service in services.items():
        variant = name.rsplit("-", 1)[1]
        assert service["profiles"] == [variant]
        assert service["image"] == f"wyoming-qwen3tts:{version}-{variant}"
        assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert service["ports"] == ["10200:10200", "8880:8880"] and service["volumes"] == [
            "qwen3tts-data:/data"
        ]
        assert service["healthcheck"]["test"][1:6] == HEALTH_CHECK
        args = service["environment"]["WYOMING_QWEN3TTS_ARGS"]
        load_settings([], {"WYOMING_QWEN3TTS_ARGS": args})  # raises on a flag the server does not know
        assert shlex.split(args)
    cuda = services["qwen3tts-cuda"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert cuda["driver"] == "nvidia" and cuda["capabilities"] == ["gpu"]
    rocm = services["qwen3tts-rocm"]
    assert rocm["devices"] == ["/dev/kfd", "/dev/dri"] and len(rocm["group_add"]) == 2
    assert rocm["environment"]["GPU_MAX_HW_QUEUES"] == "1"
    assert services["qwen3tts-cpu"]["build"]["args"] == {"TORCH_VARIANT": "cpu"}
    assert "qwen3tts-data" in compose["volumes"]


# ---------------------------------------------------------------------------------------------------------
# Kubernetes


def _k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = _load(ROOT / "deploy" / "k8s" / "kustomization.yaml")
    objects = {}
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((ROOT / "deploy" / "k8s" / name).read_text(encoding="utf-8")):
            objects[(document["kind"], document["metadata"]["name"])] = document
    return objects


def _json_patch(document: Any, operations: list[dict[str, Any]]) -> Any:
    """Applies RFC 6902 add/remove/replace operations (what the ROCm overlay uses)."""
    for operation in operations:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in operation["path"].split("/")[1:]]
        target = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if operation["op"] == "remove":
            del target[int(last) if isinstance(target, list) else last]
        else:
            assert operation["op"] in ("add", "replace")
            target[last] = operation["value"]
    return document


def _validate_k8s(document: dict[str, Any]) -> None:
    kubernetes_validate = require_module("kubernetes_validate")
    kubernetes_validate.validate(document, "1.30.0", strict=True)


def test_k8s_objects_validate_against_the_kubernetes_schemas():
    objects = _k8s_objects()
    assert {kind for kind, _ in objects} == {"ConfigMap", "PersistentVolumeClaim", "Deployment", "Service"}
    for document in objects.values():
        _validate_k8s(document)


def test_k8s_deployment_gpu_probes_volumes_and_settings(tmp_path):
    objects = _k8s_objects()
    deployment = objects[("Deployment", "wyoming-qwen3tts")]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"][:5] == HEALTH_CHECK, probe
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 1800
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 1000
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {name for kind, name in objects if kind == "PersistentVolumeClaim"}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    config_map = objects[("ConfigMap", "wyoming-qwen3tts")]
    config_file = tmp_path / "config.yaml"
    config_file.write_text(config_map["data"]["config.yaml"])
    settings = {**Settings().__dict__, **read_config_file(config_file)}
    assert str(settings["voices_dir"]) in mounts and settings["cache_dir"] in mounts
    assert mounts["/etc/wyoming-qwen3tts"] == "config"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["WYOMING_QWEN3TTS_CONFIG"] == "/etc/wyoming-qwen3tts/config.yaml"
    load_settings([], {"WYOMING_QWEN3TTS_CONFIG": str(config_file)})  # preload vs max_loaded_models, etc.
    service = objects[("Service", "wyoming-qwen3tts")]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    assert service["spec"]["ports"][0]["port"] == container["ports"][0]["containerPort"] == 10200


def test_k8s_rocm_overlay_patches_a_valid_deployment():
    overlay = _load(ROOT / "deploy" / "k8s" / "rocm" / "kustomization.yaml")
    assert overlay["resources"] == [".."]
    (patch,) = overlay["patches"]
    deployment = _json_patch(
        _k8s_objects()[("Deployment", "wyoming-qwen3tts")], yaml.safe_load(patch["patch"])
    )
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits.get("amd.com/gpu") == 1 and "nvidia.com/gpu" not in limits
    _validate_k8s(deployment)
    assert overlay["images"][0]["newTag"] == f"{_package_version()}-rocm"
