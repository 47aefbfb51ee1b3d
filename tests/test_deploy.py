"""The Home Assistant add-on, checked without Docker or Home Assistant.

* ``addon/config.yaml``, ``translations/en.yaml``, ``DOCS.md``, ``repository.yaml`` against the
  Supervisor's own manifest rules (``tests/fixtures/addon_rules.py``): keys, slug, version, arch, ports, map,
  schema grammar, option defaults, translations, and the s6 service layout; the prebuilt image against the
  release workflow (``.github/workflows/addon.yaml``); DOCS.md's options table against config.yaml and the
  run script.
* The s6 scripts executed under a stand-in bashio: the option -> flag mapping of the run script, with the
  resulting command line parsed by the real settings parser; the ROCm download service; the discovery service.

Dockerfile and shell linting, the standalone images, Compose and Kubernetes: test_deploy_images.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import addon_rules
from tests.fixtures.addon_bashio import STAND_IN_BASHIO, STAND_IN_CONFIG_READER
from tests.fixtures.deploy_files import ADDON, ROOT, S6, TORCH_VERSION
from tests.fixtures.deploy_files import load_yaml as _load
from tests.fixtures.deploy_files import package_version as _package_version
from wyoming_qwen3tts.service.roles import role_models
from wyoming_qwen3tts.settings import Settings, load_settings, read_config_file


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return _load(ADDON / "config.yaml")


# ---------------------------------------------------------------------------------------------------------
# Add-on manifest


def test_manifest_required_keys_slug_version_arch(manifest):
    for key in addon_rules.REQUIRED_KEYS:
        assert manifest.get(key), f"config.yaml lacks {key}"
    assert addon_rules.RE_SLUG.match(manifest["slug"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(manifest["version"]))
    assert str(manifest["version"]) == _package_version(), "add-on version must follow the package version"
    assert set(manifest["arch"]) <= addon_rules.SUPPORTED_ARCHES and "amd64" in manifest["arch"]
    assert manifest["init"] is False, "s6-overlay v3 images need init: false"
    assert manifest.get("startup", "application") in addon_rules.STARTUP
    assert manifest.get("boot", "auto") in addon_rules.BOOT
    assert 10 <= manifest.get("timeout", 10) <= 300
    # A 0.x release is marked experimental in the store.
    assert manifest.get("stage", "stable") in addon_rules.STAGES
    if int(str(manifest["version"]).split(".")[0]) == 0:
        assert manifest["stage"] == "experimental"
    for key, value in manifest.items():
        assert value is not None, f"{key}: an explicit null makes the Supervisor reject the manifest"


def test_manifest_ports_discovery_map_devices_backup(manifest):
    assert manifest["discovery"] == ["wyoming"]
    assert manifest["ports"] == {"10200/tcp": None, "8880/tcp": None}  # the HTTP port stays closed by default
    # The voice page as a sidebar panel: ingress to the HTTP port, whose ingress proxy needs no API key.
    assert manifest["ingress"] is True and manifest["ingress_port"] == 8880
    assert manifest["panel_icon"].startswith("mdi:") and manifest["panel_title"]
    for key in manifest["ports"]:
        assert addon_rules.RE_PORT_KEY.match(key)
    for entry in manifest["map"]:
        assert isinstance(entry, str) and addon_rules.RE_VOLUME.match(entry), entry
    assert "app_config:rw" in manifest["map"], "the voice library must be writable from Samba/File editor"
    legacy = {entry.split(":")[0] for entry in manifest["map"]} & addon_rules.LEGACY_MAP_TYPES
    assert not legacy, f"legacy map types the Supervisor warns about: {legacy}"
    assert manifest["devices"] == ["/dev/kfd"] and manifest["video"] is True  # ROCm: kfd + /dev/dri
    assert "models" in manifest["backup_exclude"] and "rocm" in manifest["backup_exclude"]
    assert re.fullmatch(r"\d{4}\.\d+\.\d+", str(manifest["homeassistant"]))


def test_minimum_home_assistant_gives_the_documented_voice_refresh(manifest):
    """DOCS.md promises new library voices in the picker within 30 s: Home Assistant 2026.9 re-reads a Wyoming
    server's info every 30 s; older versions need the integration reloaded."""
    minimum = tuple(int(part) for part in str(manifest["homeassistant"]).split("."))
    assert minimum >= (2026, 9, 0)
    docs = (ADDON / "DOCS.md").read_text(encoding="utf-8")
    assert "within 30" in docs and "2026.9" in docs


def test_prebuilt_image_is_built_and_published_by_the_release_workflow(manifest):
    """config.yaml names a prebuilt multi-arch image, so the Supervisor pulls instead of building; the
    workflow with Home Assistant's builder actions builds addon/Dockerfile for the manifest's architectures
    and publishes exactly that image, under the manifest's version, for the matching release tag only."""
    image = manifest["image"]
    assert addon_rules.RE_DOCKER_IMAGE.match(image) and ":" not in image.rsplit("/", 1)[1], image
    owner = _load(ROOT / "repository.yaml")["url"].rstrip("/").split("/")[-2]
    workflow = _load(ROOT / ".github" / "workflows" / "addon.yaml")
    env = workflow["env"]
    assert (
        image == f"{env['REGISTRY_PREFIX']}/{env['IMAGE_NAME']}"
        and env["REGISTRY_PREFIX"] == f"ghcr.io/{owner}"
    )
    assert json.loads(env["ARCHITECTURES"]) == manifest["arch"]
    # `on:` is YAML 1.1's boolean true to a YAML loader.
    triggers = workflow.get("on", workflow.get(True))
    assert triggers["push"]["tags"] == ["v*"]
    assert "addon/**" in triggers["pull_request"]["paths"]
    jobs = workflow["jobs"]
    steps = [step for job in jobs.values() for step in job.get("steps", [])]
    uses = [step["uses"] for step in steps if "uses" in step]
    builder = [u for u in uses if u.startswith("home-assistant/builder/actions/")]
    assert {u.split("@")[0].rsplit("/", 1)[1] for u in builder} == {
        "prepare-multi-arch-matrix",
        "build-image",
        "publish-multi-arch-manifest",
    }
    assert all(re.fullmatch(r"[\w/-]+@\d{4}\.\d+\.\d+", u) for u in builder), "builder pinned to a release"
    (build,) = [
        step for step in steps if step.get("uses", "").startswith("home-assistant/builder/actions/build-")
    ]
    assert build["with"]["context"] == "./addon"
    assert build["with"]["push"] == "${{ needs.prepare.outputs.publish }}"
    assert jobs["manifest"]["if"] == "needs.prepare.outputs.publish == 'true'"
    release = next(step for step in jobs["prepare"]["steps"] if step.get("id") == "release")["run"]
    assert 'REF_NAME}" != "v${version}"' in release, "a tag that is not v<config.yaml version> fails"
    assert "publish=true" in release.split("else", 1)[0] and "publish=false" in release.split("else", 1)[1]
    assert "WYOMING_QWEN3TTS_SOURCE=" in release.split("else", 1)[1], "pull requests build their own commit"


def test_schema_grammar_and_option_defaults(manifest):
    schema, options = manifest["schema"], manifest["options"]
    for key, element in schema.items():
        addon_rules.schema_element(element)  # raises on anything the Supervisor cannot parse
    assert set(options) <= set(schema), f"options without schema: {set(options) - set(schema)}"
    required = {key for key, element in schema.items() if not addon_rules.is_optional(element)}
    assert required <= set(options), f"required options without a default: {required - set(options)}"
    for key, value in options.items():
        addon_rules.check_option(value, schema[key])
    # The options the issue asks for, with the types it names.
    assert schema["model_size"] == "list(0.6B|1.7B)"
    assert schema["device"] == "list(cpu|rocm)"
    assert schema["dtype"] == "list(auto|float32|bfloat16)"
    assert schema["max_concurrent"] == "int(1,16)"
    for key in ("streaming", "clone_voices", "debug", "preload"):
        assert schema[key] == "bool"
    assert schema["voice"] == "str?"
    assert schema["quantize"] == "list(auto|none|int8|int4)" and options["quantize"] == "auto"
    assert schema["api_key"] == "password?"
    assert options["language"] == "auto" and options["device"] == "cpu"


@pytest.mark.parametrize(
    "element, good, bad",
    [
        ("int(1,16)", [1, 16], [0, 17, "3", True]),
        ("list(0.6B|1.7B)", ["0.6B"], ["3B", 0.6]),
        (r"match(^[0-9]+\.[0-9]+\.[0-9]+$)?", ["11.0.0"], ["gfx1103", "11.0"]),
        ("bool", [True], ["true", 1]),
        ("port", [10200], [0, 70000]),
        ("url", ["https://example.com/x"], ["example.com"]),
    ],
)
def test_option_checker_follows_the_supervisor_rules(element, good, bad):
    for value in good:
        addon_rules.check_option(value, element)
    for value in bad:
        with pytest.raises(ValueError):
            addon_rules.check_option(value, element)


@pytest.mark.parametrize("element", ["string", "int(5,1)", "list()", "str=x", "match(("])
def test_schema_grammar_rejects_what_the_supervisor_rejects(element):
    with pytest.raises((ValueError, re.error)):
        addon_rules.schema_element(element)


def test_translations_cover_every_port(manifest):
    # Options: tests/test_settings_schema.py (one name and description per declared add-on option).
    translations = _load(ADDON / "translations" / "en.yaml")
    assert set(translations["network"]) == set(manifest["ports"])


def test_docs_topics_and_changelog(manifest):
    # One section per option: tests/test_settings_schema.py.
    docs = (ADDON / "DOCS.md").read_text(encoding="utf-8")
    for topic in ("## Cloning a voice", "## GPUs", "NVIDIA", "ROCm", "Wyoming Protocol"):
        assert topic in docs
    changelog = (ADDON / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## {manifest['version']}" in changelog


def test_repository_yaml_and_urls(manifest):
    repository = _load(ROOT / "repository.yaml")
    assert repository["name"] and repository["url"].startswith("https://")
    assert manifest["url"].startswith(repository["url"]), "the add-on lives in this repository"


@pytest.mark.parametrize("name, size", [("icon.png", (128, 128)), ("logo.png", (250, 100))])
def test_icon_and_logo_are_pngs_of_the_documented_size(name, size):
    data = (ADDON / name).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == size


def test_no_other_file_looks_like_an_add_on_to_the_supervisor():
    """The store treats every **/config.{json,yaml,yml} outside dot folders and rootfs as a manifest."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout (the store sees the repository's files, not build leftovers)")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    found = {
        name
        for name in listed
        if re.search(r"(^|/)config\.(json|yaml|yml)$", name)
        and not any(part.startswith(".") or part == "rootfs" for part in name.split("/"))
    }
    # The root config.yaml (server settings) has no `name`, so the store skips it with a log line.
    assert found <= {"addon/config.yaml", "config.yaml"}, found
    if "config.yaml" in found:
        assert "name" not in (_load(ROOT / "config.yaml") or {})


def test_s6_service_layout():
    services = {path.name for path in S6.iterdir() if path.is_dir() and path.name != "user"}
    assert services == {"qwen3tts", "discovery", "torch-rocm"}
    assert {p.name for p in (S6 / "user" / "contents.d").iterdir()} == services
    for service in services:
        kind = (S6 / service / "type").read_text().strip()
        run = S6 / service / "run"
        assert run.read_text().startswith("#!/command/with-contenv bashio\n")
        assert os.access(run, os.X_OK), f"{run} must be executable"
        if kind == "longrun":
            assert os.access(S6 / service / "finish", os.X_OK)
        else:
            assert kind == "oneshot"
            assert (S6 / service / "up").read_text().strip() == f"/etc/s6-overlay/s6-rc.d/{service}/run"
        for dependency in (S6 / service / "dependencies.d").iterdir():
            assert dependency.name == "base" or dependency.name in services
    assert (S6 / "discovery" / "dependencies.d" / "qwen3tts").exists()
    assert (S6 / "qwen3tts" / "dependencies.d" / "torch-rocm").exists()


def test_addon_dockerfile_pins_and_health_check(manifest):
    text = (ADDON / "Dockerfile").read_text(encoding="utf-8")
    # The base image pinned to a dated release of Home Assistant's multi-arch Debian base, not a moving tag.
    pinned = r"ghcr\.io/home-assistant/base-debian:trixie-\d{4}\.\d{2}\.\d+(@sha256:[0-9a-f]{64})?"
    assert re.search(rf"^ARG BUILD_FROM={pinned}$", text, re.M), "a pinned default base image"
    assert f"ARG WYOMING_QWEN3TTS_VERSION={manifest['version']}" in text
    assert f"ARG BUILD_VERSION={manifest['version']}" in text
    assert f"ARG TORCH_VERSION={TORCH_VERSION}\n" in text
    assert f"ARG TORCH_ROCM_VERSION={TORCH_VERSION}+rocm" in text
    assert "io.hass.type=" in text and "io.hass.version=" in text and "io.hass.arch=" in text
    assert "wyoming_qwen3tts.health_check" in text.split("HEALTHCHECK", 1)[1]
    settings = read_config_file(ADDON / "rootfs" / "etc" / "wyoming-qwen3tts" / "settings.yaml")
    assert settings["voices_dir"] == Path("/config/voices") and settings["cache_dir"] == "/data/models"


# ---------------------------------------------------------------------------------------------------------
# The s6 scripts, run under a stand-in bashio. `python3 -m wyoming_qwen3tts ...` is intercepted and its argv
# and environment recorded; anything else python3 is asked goes to the real interpreter.

_FAKE_PYTHON3 = r"""#!/bin/bash
if [[ "${1:-}" == "-m" && "${2:-}" == "wyoming_qwen3tts" ]]; then
    shift 2
    exec "$FAKE_PYTHON" -c 'import json, os, sys
out = open(os.environ["FAKE_DIR"] + "/server.json", "w")
json.dump({"argv": sys.argv[1:], "env": dict(os.environ)}, out)' "$@"
fi
if [[ "${1:-}" == "-m" && "${2:-}" == "wyoming_qwen3tts.health_check" ]]; then
    echo "$*" >> "$FAKE_DIR/health.log"
    exit 0
fi
if [[ "${1:-}" == "-m" && "${2:-}" == "pip" ]]; then
    echo "$*" >> "$FAKE_DIR/pip.log"
    while [[ $# -gt 0 ]]; do
        if [[ "$1" == "--target" ]]; then mkdir -p "$2/torch"; fi
        shift
    done
    exit 0
fi
exec "$FAKE_PYTHON" "$@"
"""


class AddonScripts:
    """Runs an s6 script of the add-on with the given options; results land in `dir`."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "fake"
        (self.dir / "bin").mkdir(parents=True)
        (self.dir / "bashio.sh").write_text(STAND_IN_BASHIO)
        (self.dir / "config.py").write_text(STAND_IN_CONFIG_READER)
        python3 = self.dir / "bin" / "python3"
        python3.write_text(_FAKE_PYTHON3)
        python3.chmod(0o755)
        self.data = tmp_path / "data"
        self.config = tmp_path / "config"
        self.kfd = tmp_path / "kfd"

    def run(self, script: Path, options: dict[str, Any], **env: str) -> subprocess.CompletedProcess:
        (self.dir / "options.json").write_text(json.dumps(options))
        environ = {
            "PATH": f"{self.dir / 'bin'}:{os.environ['PATH']}",
            "HOME": str(self.dir),
            "FAKE_DIR": str(self.dir),
            "FAKE_PYTHON": sys.executable,
            "FAKE_OPTIONS": str(self.dir / "options.json"),
            "QWEN3TTS_ADDON_DATA": str(self.data),
            "QWEN3TTS_ADDON_CONFIG": str(self.config),
            "QWEN3TTS_ADDON_KFD": str(self.kfd),
            "QWEN3TTS_ROCM_TORCH_DIR": str(self.data / "rocm" / "torch-2.13.0+rocm7.2"),
            "TORCH_ROCM_VERSION": "2.13.0+rocm7.2",
            "TORCH_ROCM_INDEX_URL": "https://download.pytorch.org/whl/rocm7.2",
            **env,
        }
        command = 'source "$FAKE_DIR/bashio.sh"; source "$1"'
        return subprocess.run(
            ["bash", "-c", command, "run", str(script)],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def server(self) -> dict[str, Any]:
        return json.loads((self.dir / "server.json").read_text())


@pytest.fixture()
def scripts(tmp_path) -> AddonScripts:
    return AddonScripts(tmp_path)


def _options(manifest: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**manifest["options"], **changes}


def _settings(argv: list[str], env: dict[str, str]) -> Settings:
    """What the server makes of that command line: the real parser, the env passthrough included."""
    keep = {k: v for k, v in env.items() if k in ("WYOMING_QWEN3TTS_ARGS", "WYOMING_QWEN3TTS_HTTP_API_KEY")}
    return load_settings(argv, keep)


def test_run_maps_default_options_to_flags(scripts, manifest):
    result = scripts.run(S6 / "qwen3tts" / "run", _options(manifest))
    assert result.returncode == 0, result.stderr
    server = scripts.server()
    settings = _settings(server["argv"], server["env"])
    assert settings.uri == "tcp://0.0.0.0:10200" and settings.zeroconf is None
    assert settings.model == "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"
    assert settings.data_dir == scripts.data and settings.cache_dir == str(scripts.data / "models")
    assert settings.voices_dir == scripts.config / "voices" and settings.voices_dir.is_dir()
    assert settings.device == "cpu" and settings.dtype == "auto" and settings.language == "auto"
    assert settings.max_concurrent == settings.slots == 2
    assert settings.clone_model == "auto" and settings.design_model == "auto" and not settings.preload
    assert settings.streaming and not settings.debug and settings.voice is None and settings.threads is None
    assert "GPU_MAX_HW_QUEUES" not in server["env"] and "WYOMING_QWEN3TTS_ARGS" not in server["env"]
    assert settings.quantize == "auto"
    # HTTP on the ingress port; the Supervisor's ingress proxy needs no key, and no key is set.
    assert settings.http and settings.http_port == 8880 and settings.http_trusted == ["172.30.32.2/32"]
    assert settings.http_api_key is None and "WYOMING_QWEN3TTS_HTTP_API_KEY" not in server["env"]


def test_run_maps_every_option(scripts, manifest):
    options = _options(
        manifest,
        model_size="1.7B",
        voice="clone:anna",
        language="de",
        dtype="bfloat16",
        max_concurrent=6,
        streaming=False,
        clone_voices=False,
        preload=True,
        threads=3,
        debug=True,
        quantize="int8",
        api_key="s3cret key",
        extra_args="--samples-per-chunk 2048 --max-text-chars 800 --model ignored/by-precedence",
    )
    result = scripts.run(S6 / "qwen3tts" / "run", options)
    assert result.returncode == 0, result.stderr
    server = scripts.server()
    settings = _settings(server["argv"], server["env"])
    assert settings.model == "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice", "option flags win over extra_args"
    assert settings.voice == "clone:anna" and settings.language == "german" and settings.dtype == "bfloat16"
    assert settings.max_concurrent == settings.slots == 6 and settings.threads == 3
    assert not settings.streaming and settings.debug and settings.preload
    assert settings.clone_model is None and settings.design_model is None and settings.max_loaded_models == 1
    assert settings.samples_per_chunk == 2048 and settings.max_text_chars == 800
    assert settings.quantize == "int8"
    # The key reaches the server through its environment variable, never the command line (`ps`).
    assert settings.http_api_key == "s3cret key" and "s3cret" not in " ".join(server["argv"])


def test_run_preload_with_clone_voices_loads_all_three_models(scripts, manifest):
    result = scripts.run(S6 / "qwen3tts" / "run", _options(manifest, preload=True))
    assert result.returncode == 0, result.stderr
    server = scripts.server()
    settings = _settings(server["argv"], server["env"])  # would raise if max_loaded_models were too small
    assert settings.preload and settings.max_loaded_models == 3
    assert role_models(settings)["base"] == "Qwen/Qwen3-TTS-12Hz-0.6B-Base"


def test_run_rocm_uses_the_downloaded_build_and_tunes_the_gpu(scripts, manifest):
    scripts.kfd.touch()
    rocm_torch = scripts.data / "rocm" / "torch-2.13.0+rocm7.2"
    rocm_torch.mkdir(parents=True)
    (rocm_torch / ".complete").touch()
    result = scripts.run(
        S6 / "qwen3tts" / "run", _options(manifest, device="rocm", rocm_gfx_version="11.0.0")
    )
    assert result.returncode == 0, result.stderr
    server = scripts.server()
    assert _settings(server["argv"], server["env"]).device == "cuda"
    env = server["env"]
    assert env["PYTHONPATH"].split(":")[0] == str(rocm_torch)
    assert env["GPU_MAX_HW_QUEUES"] == "1" and env["HSA_OVERRIDE_GFX_VERSION"] == "11.0.0"


def test_run_rocm_without_a_gpu_or_build_stops_with_a_clear_message(scripts, manifest):
    result = scripts.run(S6 / "qwen3tts" / "run", _options(manifest, device="rocm"))
    assert result.returncode == 1 and "does not exist on this host" in result.stderr
    scripts.kfd.touch()
    result = scripts.run(S6 / "qwen3tts" / "run", _options(manifest, device="rocm"))
    assert result.returncode == 1 and "ROCm build is missing" in result.stderr
    assert not (scripts.dir / "server.json").exists()


def test_torch_rocm_service_downloads_once_and_only_for_rocm(scripts, manifest):
    service = S6 / "torch-rocm" / "run"
    assert scripts.run(service, _options(manifest)).returncode == 0
    assert not (scripts.dir / "pip.log").exists(), "cpu: nothing to download"
    stale = scripts.data / "rocm" / "torch-2.12.0+rocm7.1"
    stale.mkdir(parents=True)
    result = scripts.run(service, _options(manifest, device="rocm"))
    assert result.returncode == 0, result.stderr
    pip = (scripts.dir / "pip.log").read_text()
    assert "torch==2.13.0+rocm7.2" in pip and "--index-url https://download.pytorch.org/whl/rocm7.2" in pip
    assert (scripts.data / "rocm" / "torch-2.13.0+rocm7.2" / ".complete").exists()
    assert not stale.exists(), "builds of other versions are removed"
    (scripts.dir / "pip.log").unlink()
    assert scripts.run(service, _options(manifest, device="rocm")).returncode == 0
    assert not (scripts.dir / "pip.log").exists(), "a restart downloads nothing"


def test_discovery_waits_for_describe_then_announces_wyoming(scripts, manifest):
    result = scripts.run(S6 / "discovery" / "run", _options(manifest))
    assert result.returncode == 0, result.stderr
    assert "--uri tcp://127.0.0.1:10200" in (scripts.dir / "health.log").read_text()
    service, config = (scripts.dir / "discovery.txt").read_text().splitlines()
    hostname = subprocess.run(["hostname"], capture_output=True, text=True, check=True).stdout.strip()
    assert service == "wyoming" and json.loads(config) == {"uri": f"tcp://{hostname}:10200"}


# ---------------------------------------------------------------------------------------------------------
# DOCS.md's options table against config.yaml and the run script


def _docs_options_table() -> list[list[str]]:
    docs = (ADDON / "DOCS.md").read_text(encoding="utf-8")
    section = docs[docs.index("\n## Options\n") : docs.index("\n### Option: ")]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]


def _changed_value(key: str, element: str, default: Any) -> Any:
    """A valid value other than the default, for the option `key` with schema `element`."""
    match = addon_rules.schema_element(element)
    if match.group("list") is not None:
        return next(value for value in match.group("list").split("|") if value != default)
    if element.rstrip("?") == "bool":
        return not default
    if match.group("i_max") is not None:
        low, high = int(match.group("i_min")), int(match.group("i_max"))
        return high if default != high else low
    if match.group("f_max") is not None:
        low_f, high_f = float(match.group("f_min")), float(match.group("f_max"))
        return high_f if default != high_f else low_f
    return {"rocm_gfx_version": "11.0.0", "extra_args": "--max-text-chars 800"}.get(key, "some value")


# Options that only act together with another one.
_TABLE_PREREQUISITES: dict[str, dict[str, Any]] = {"rocm_gfx_version": {"device": "rocm"}}


def test_docs_options_table_matches_config_and_run_script(scripts, manifest):
    """One row per option, in the schema's order, with config.yaml's default and values; changing the option
    alone changes what the run script starts, through the flags and variables the row names."""
    schema, options = manifest["schema"], manifest["options"]
    rows = _docs_options_table()
    assert [row[0].strip("`") for row in rows] == list(schema), "one row per schema key, in its order"
    scripts.kfd.touch()  # device: rocm needs the GPU node and PyTorch's ROCm build
    rocm_torch = scripts.data / "rocm" / "torch-2.13.0+rocm7.2"
    rocm_torch.mkdir(parents=True)
    (rocm_torch / ".complete").touch()

    def started(**changes: Any) -> tuple[list[str], dict[str, str]]:
        result = scripts.run(S6 / "qwen3tts" / "run", _options(manifest, **changes))
        assert result.returncode == 0, (changes, result.stderr)
        server = scripts.server()
        return server["argv"], server["env"]

    baselines: dict[str, tuple[list[str], dict[str, str]]] = {}  # one run per set of prerequisites

    for key, default_cell, values_cell, sets_cell in rows:
        key = key.strip("`")
        element = schema[key]
        default = options.get(key)
        if default is None:
            assert default_cell == "empty", key
        elif isinstance(default, bool):
            assert default_cell == ("on" if default else "off"), key
        else:
            assert default_cell == f"`{default}`", key
        match = addon_rules.schema_element(element)
        if match.group("list") is not None:
            assert re.findall(r"`([^`]+)`", values_cell) == match.group("list").split("|"), key
        elif element.rstrip("?") == "bool":
            assert values_cell == "on, off", key
        elif match.group("i_max") is not None:
            assert values_cell == f"{match.group('i_min')} to {match.group('i_max')}", key
        base = _TABLE_PREREQUISITES.get(key, {})
        if json.dumps(base) not in baselines:
            baselines[json.dumps(base)] = started(**base)
        before_argv, before_env = baselines[json.dumps(base)]
        argv, env = started(**base, **{key: _changed_value(key, element, default)})
        assert (argv, env) != (before_argv, before_env), f"{key}: changing it changes nothing"
        flags = re.findall(r"--[a-z-]+", sets_cell)
        variables = re.findall(r"`([A-Z][A-Z0-9_]{4,})`", sets_cell)
        assert flags or variables, key
        for flag in flags:
            assert flag in argv, f"{key}: DOCS.md names {flag}, the run script does not pass it"
        for variable in variables:
            assert variable in env and env.get(variable) != before_env.get(variable), (key, variable)
