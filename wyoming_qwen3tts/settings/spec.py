"""The declaration of one setting: everything the parser, the checks, the docs and the add-on need, once.

A setting is a field of the `Settings` dataclass declared with `setting(...)`: its name, Python type and
default are the field's; its check, flag spelling, help, README text and add-on option are the `Spec` in the
field's metadata. `build_parser`, the YAML/env checks, the README's configuration table and the add-on
consistency tests (tests/test_settings_schema.py) all read the fields, so a new setting is one declaration
plus its line in config.yaml (and, for an add-on option, the add-on's files, which the tests hold against it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

Check = Callable[[Any, bool], Any]

# How a setting is spelled on the command line.
VALUE = "value"  # --name VALUE
SWITCH = "switch"  # --name (store_true; default off)
NEGATE = "negate"  # --no-name only (store_false; default on)
BOTH = "both"  # --name / --no-name (BooleanOptionalAction; default on)
APPEND = "append"  # --name VALUE, repeatable
OPTIONAL = "optional"  # --name [VALUE] (nargs="?", const="")
FLAG_KINDS = (VALUE, SWITCH, NEGATE, BOTH, APPEND, OPTIONAL)

_META = "wyoming_qwen3tts.setting"
_SAME = object()


@dataclass(frozen=True)
class Addon:
    """How the Home Assistant add-on offers a setting: an option of addon/config.yaml the run script passes on
    as the setting's flag (or, with `env`, as that environment variable)."""

    schema: str  # the Supervisor's schema element, e.g. "int(1,16)"; a "?" suffix = optional (no default)
    name: str = ""  # the option's name; "" = the setting's
    default: Any = _SAME  # the option's default in addon/config.yaml; _SAME = the setting's
    env: Optional[str] = None  # passed in this environment variable instead of the flag (secrets)


@dataclass(frozen=True)
class AddonOnly:
    """An add-on option that is not one setting: the run script derives flags or variables from it."""

    name: str
    schema: str
    default: Any  # None for an optional ("?") element
    sets: tuple[str, ...]  # the flags and environment variables the run script derives from it
    doc: str = ""  # README configuration table row (meaning); "" = no row of its own


@dataclass(frozen=True)
class Spec:
    check: Check  # (value, from_text) -> normalised value, or ValueError with a short reason
    help: str  # argparse help; "{default}" is replaced by the default
    doc: str  # README configuration table: the meaning column
    flag: str = VALUE  # one of FLAG_KINDS
    metavar: Optional[str] = None
    doc_default: Optional[str] = None  # README default column; None = derived from the default
    doc_addon: str = ""  # README add-on column when the add-on sets it otherwise, e.g. "(fixed)"
    addon: Optional[Addon] = None
    secret: bool = False  # kept out of repr (logs)
    debug: bool = False  # testing only
    # Filled in by `declared()` from the dataclass field.
    name: str = ""
    default: Any = None

    @property
    def option(self) -> str:
        """The flag as the parser knows it, e.g. --max-concurrent."""
        return "--" + self.name.replace("_", "-")

    @property
    def error_flag(self) -> str:
        """The flag an error message names: the spelling a user types to change the default."""
        return "--no-" + self.name.replace("_", "-") if self.flag in (NEGATE, BOTH) else self.option

    @property
    def addon_name(self) -> Optional[str]:
        return None if self.addon is None else (self.addon.name or self.name)

    @property
    def addon_default(self) -> Any:
        if self.addon is None or self.addon.schema.endswith("?"):
            return None
        return self.default if self.addon.default is _SAME else self.addon.default


def setting(
    default: Any = None,
    *,
    check: Check,
    help: str,
    doc: str,
    factory: Optional[Callable[[], Any]] = None,
    **spec: Any,
) -> Any:
    """A `Settings` field with its declaration (typed Any so any default fits the field's annotation)."""
    meta = {_META: Spec(check=check, help=help, doc=doc, **spec)}
    shown = not spec.get("secret", False)
    if factory is not None:
        return field(default_factory=factory, metadata=meta, repr=shown)
    return field(default=default, metadata=meta, repr=shown)


def declared(cls: type) -> list[Spec]:
    """The specs of a settings dataclass, in field order, with their names and defaults filled in."""
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(_META)
        if spec is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with setting()")
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = f.default
        out.append(dataclasses.replace(spec, name=f.name, default=default))
    return out
