"""The Home Assistant add-on's options, generated from the settings' declarations.

Most options are one setting each (`Spec.addon`); the options below are not: the run script
(addon/rootfs/etc/s6-overlay/s6-rc.d/qwen3tts/run) derives flags or environment variables from them.
tests/test_settings_schema.py holds addon/config.yaml, the run script, translations/en.yaml and DOCS.md
against `addon_schema()` and `addon_options()`.
"""

from __future__ import annotations

from typing import Any, Iterable

from .constants import ENV_ARGS
from .spec import AddonOnly, Spec

ADDON_ONLY: tuple[AddonOnly, ...] = (
    AddonOnly("model_size", "list(0.6B|1.7B)", "0.6B", ("--model",)),
    AddonOnly("device", "list(cpu|rocm)", "cpu", ("--device",)),
    AddonOnly("clone_voices", "bool", True, ("--clone-model", "--design-model")),
    AddonOnly(
        "rocm_gfx_version",
        r"match(^[0-9]+\.[0-9]+\.[0-9]+$)?",
        None,
        ("HSA_OVERRIDE_GFX_VERSION",),
        doc="sets `HSA_OVERRIDE_GFX_VERSION` for AMD GPUs ROCm does not list",
    ),
    AddonOnly("extra_args", "str?", None, (ENV_ARGS,)),
)


def addon_schema(specs: Iterable[Spec]) -> dict[str, str]:
    """Option name -> the Supervisor's schema element, as addon/config.yaml's `schema` must read."""
    schema = {spec.addon_name: spec.addon.schema for spec in specs if spec.addon is not None}
    schema.update({option.name: option.schema for option in ADDON_ONLY})
    return {str(name): element for name, element in schema.items()}


def addon_options(specs: Iterable[Spec]) -> dict[str, Any]:
    """Option name -> default, as addon/config.yaml's `options` must read (optional options have none)."""
    options = {
        str(spec.addon_name): spec.addon_default
        for spec in specs
        if spec.addon is not None and not spec.addon.schema.endswith("?")
    }
    options.update({option.name: option.default for option in ADDON_ONLY if not option.schema.endswith("?")})
    return options
