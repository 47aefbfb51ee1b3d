"""The model-role policy: which model speaks which kind of voice (built-in speakers: CustomVoice, ``clone:``
voices: Base, ``design:`` voices: VoiceDesign), worked out from the settings without loading anything."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

from ..core.vocab import AUTO, MODEL_TYPES, ModelRole
from ..settings import Settings, SettingsError

_HUB_RE = re.compile(r"(Qwen/Qwen3-TTS-12Hz-)(0\.6B|1\.7B)-(CustomVoice|Base|VoiceDesign)")
_HUB_TYPES = {role.label: role.value for role in ModelRole}  # the hub id's suffix -> the model type


def model_type_of(model: str) -> str:
    """custom_voice, base or voice_design, without loading anything: from an official hub id's suffix or a
    local checkpoint's config.json; an unknown hub id is assumed to be CustomVoice (checked at load)."""
    hub = _HUB_RE.fullmatch(model.strip())
    if hub is not None:
        return _HUB_TYPES[hub.group(3)]
    config = Path(model) / "config.json"
    if config.is_file():
        try:
            kind = json.loads(config.read_text(encoding="utf-8")).get("tts_model_type")
        except (OSError, ValueError, AttributeError):
            kind = None
        if kind in MODEL_TYPES:
            return kind
    return ModelRole.CUSTOM_VOICE.value


def role_models(settings: Settings) -> dict[str, Optional[str]]:
    """Model id/path per model type (custom_voice, base, voice_design); None = that role is off.

    The main ``model`` fills the role of its own type; ``auto`` picks the official sibling of a hub
    main model (the Base model of the same size; the only VoiceDesign model, 1.7B) and means "off"
    when the main model is a local directory (we cannot guess where its siblings are)."""
    main_type = model_type_of(settings.model)
    roles: dict[str, Optional[str]] = {role: None for role in MODEL_TYPES}
    hub = _HUB_RE.fullmatch(settings.model.strip())
    clone, design = ModelRole.BASE.value, ModelRole.VOICE_DESIGN.value
    for role, value in ((clone, settings.clone_model), (design, settings.design_model)):
        if value == AUTO:
            if hub is None:
                value = None
            elif role == clone:
                value = f"{hub.group(1)}{hub.group(2)}-Base"
            else:
                value = f"{hub.group(1)}1.7B-VoiceDesign"
        roles[role] = value
    roles[main_type] = settings.model
    return roles


def check_preload(settings: Settings) -> None:
    """--preload needs room for every configured model; raises SettingsError otherwise."""
    if settings.preload:
        wanted = [m for m in role_models(settings).values() if m]
        if len(wanted) > settings.max_loaded_models:
            raise SettingsError(
                f"--preload loads {len(wanted)} models ({', '.join(wanted)}) but --max-loaded-models is "
                f"{settings.max_loaded_models}; raise it, or turn a model off (--clone-model none, "
                "--design-model none)"
            )
