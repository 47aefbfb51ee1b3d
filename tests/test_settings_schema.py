"""The settings' declarations (wyoming_qwen3tts/settings/spec.py, options_*.py) against every file that
repeats them: the add-on's config.yaml (options and schema), its run script, translations/en.yaml, DOCS.md.

The parser, the YAML/env checks and the README's table are generated from the declarations (tested in
tests/test_settings.py and tests/test_readme.py); the repository's config.yaml is held by
tests/test_settings.py::test_shipped_config_yaml_is_exactly_the_defaults (every key; loading it changes
nothing).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.fixtures import addon_rules
from tests.fixtures.deploy_files import ADDON, S6, load_yaml
from tests.test_deploy import AddonScripts
from wyoming_qwen3tts.settings import SPECS, Settings, load_settings
from wyoming_qwen3tts.settings.addon import ADDON_ONLY, addon_options, addon_schema
from wyoming_qwen3tts.settings.spec import BOTH, FLAG_KINDS, NEGATE, SWITCH, Spec

RUN = S6 / "qwen3tts" / "run"
TIED = [spec for spec in SPECS if spec.addon is not None]  # add-on options that are one setting each


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return load_yaml(ADDON / "config.yaml")


def test_every_declaration_is_complete_and_its_default_passes_its_check():
    assert [spec.name for spec in SPECS] == list(Settings.__dataclass_fields__)
    for spec in SPECS:
        assert spec.flag in FLAG_KINDS, spec.name
        assert spec.help and spec.doc and "\n" not in spec.doc, spec.name
        if isinstance(spec.default, bool):
            # A switch turns an off default on; --no-x turns an on default off.
            assert spec.flag == (SWITCH if spec.default is False else spec.flag), spec.name
            assert spec.default is False or spec.flag in (NEGATE, BOTH), spec.name
        assert spec.check(spec.default, False) == spec.default, f"{spec.name}: the default fails its check"
        assert not (spec.debug and spec.addon), f"{spec.name}: a testing-only setting is no add-on option"
    assert repr(Settings(http_api_key="s3cret")).count("s3cret") == 0, "secrets stay out of logs"


def test_addon_manifest_has_exactly_the_declared_options_and_schema(manifest):
    assert manifest["schema"] == addon_schema(SPECS)
    assert manifest["options"] == addon_options(SPECS)
    assert not {option.name for option in ADDON_ONLY} & {spec.addon_name for spec in TIED}


def _samples(spec: Spec) -> list[Any]:
    """Values the add-on's schema element admits at its edges: each choice, both bounds, both booleans."""
    assert spec.addon is not None
    element = spec.addon.schema
    match = addon_rules.schema_element(element)
    kind = element.rstrip("?").split("(", 1)[0]
    if kind == "bool":
        return [True, False]
    if kind == "list":
        return match.group("list").split("|")
    if kind == "int":
        return [int(match.group("i_min")), int(match.group("i_max"))]
    if kind == "float":
        return [float(match.group("f_min")), float(match.group("f_max"))]
    if kind == "match":
        return [value for value in ("auto", "off", "0", "2.5", "30") if re.match(match.group("match"), value)]
    assert kind in ("str", "password"), f"{spec.name}: no samples for {element!r}"
    return []


@pytest.mark.parametrize("spec", TIED, ids=[spec.name for spec in TIED])
def test_addon_option_type_and_bounds_fit_the_setting(spec):
    """Every value the Supervisor lets through is one the server accepts from the run script's flag."""
    assert spec.addon is not None
    kind = spec.addon.schema.rstrip("?").split("(", 1)[0]
    if isinstance(spec.default, bool):
        assert kind == "bool", spec.name
    if kind == "bool":
        assert isinstance(spec.default, bool), spec.name
    samples = _samples(spec)
    assert samples or kind in ("str", "password"), spec.name
    for value in samples:
        if not isinstance(value, bool):
            spec.check(str(value), True)  # raises ValueError on a value the setting refuses
    if spec.addon.schema.endswith("?"):
        assert spec.default is None, f"{spec.name}: an optional option means the setting's default"
    else:
        addon_rules.check_option(spec.addon_default, spec.addon.schema)


def _changed(spec: Spec) -> Any:
    """A value of the option other than its add-on default (the highest bound, another choice, ...)."""
    samples = _samples(spec)
    if not samples:
        return {"voice": "ryan", "http_host_names": "tts.lan"}.get(str(spec.addon_name), "s3cret key")
    return next(value for value in reversed(samples) if value != spec.addon_default)


def test_run_script_passes_every_option_on_as_its_flag(tmp_path, manifest):
    """All options changed at once: the server parses each one's value into its setting."""
    text = RUN.read_text(encoding="utf-8")
    for option in ADDON_ONLY:
        assert f"'{option.name}'" in text, option.name
        for target in option.sets:
            assert f"'{target}'" in text or target in text, (option.name, target)
    scripts = AddonScripts(tmp_path)
    options = {**manifest["options"], **{spec.addon_name: _changed(spec) for spec in TIED}}
    result = scripts.run(RUN, options)
    assert result.returncode == 0, result.stderr
    server = scripts.server()
    keep = ("WYOMING_QWEN3TTS_ARGS", "WYOMING_QWEN3TTS_HTTP_API_KEY")
    settings = load_settings(server["argv"], {k: v for k, v in server["env"].items() if k in keep})
    for spec in TIED:
        assert spec.addon is not None
        value = options[spec.addon_name]
        expected = value if isinstance(value, bool) else spec.check(str(value), True)
        assert getattr(settings, spec.name) == expected, (spec.addon_name, value)
        if spec.addon.env is not None:
            assert str(value) not in " ".join(server["argv"]), f"{spec.addon_name} stays off the command line"
        else:
            assert f"'{spec.error_flag}'" in text, f"{spec.addon_name}: the run script does not name its flag"


def test_translations_name_and_describe_every_option():
    configuration = load_yaml(ADDON / "translations" / "en.yaml")["configuration"]
    assert set(configuration) == set(addon_schema(SPECS)), "one translation per option, no strays"
    for key, entry in configuration.items():
        assert isinstance(entry.get("name"), str) and entry["name"], key
        assert isinstance(entry.get("description"), str) and entry["description"], key


def test_docs_have_a_section_per_option():
    docs = (ADDON / "DOCS.md").read_text(encoding="utf-8")
    sections = re.findall(r"^### Option: `([a-z_0-9]+)`$", docs, re.M)
    assert sorted(sections) == sorted(addon_schema(SPECS)), "one section per option, no strays"
