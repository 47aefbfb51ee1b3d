"""Locate Qwen3-TTS checkpoints and load their safetensors weights into plain ``nn.Module``s.

A model is either a local directory in the layout of a Hugging Face snapshot or a hub id such as
``Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice`` that is fetched into the Hugging Face cache. Every problem a user can
cause (typo in the id, offline without a cached copy, a half-downloaded snapshot, a file that does not fit the
model) becomes a :class:`CheckpointError` whose message names the file and says what to do.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.vocab import MODEL_TYPES

_LOGGER = logging.getLogger(__name__)

MODEL_TYPE = "qwen3_tts"
SPEECH_TOKENIZER_MODEL_TYPE = "qwen3_tts_tokenizer_12hz"

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
SPEECH_TOKENIZER_DIR = "speech_tokenizer"
REQUIRED_FILES = (
    "config.json",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
    f"{SPEECH_TOKENIZER_DIR}/config.json",
)
# Only what the engine reads: skips README images, ONNX exports and the like if a repo ever ships them.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", f"{SPEECH_TOKENIZER_DIR}/*"]
# The configs alone (a few kB): what the server reads before the weights, to answer describe while loading.
CONFIG_PATTERNS = ["*.json", f"{SPEECH_TOKENIZER_DIR}/*.json"]

_PREVIEW = 5


class CheckpointError(ValueError):
    """A model directory, config or weight file that cannot be used, with a message meant for the user."""


def _preview(names: Iterable[str], limit: int = _PREVIEW) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


# --------------------------------------------------------------------------------------------------------------
# Locating a model


def _env_offline() -> bool:
    # Read the environment at call time: huggingface_hub reads HF_HUB_OFFLINE only once, at import.
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.HF_HUB_OFFLINE or value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~", ".\\", "..\\")) or "\\" in model or model in {".", ".."}


def missing_model_files(directory: Path) -> list[str]:
    """The required files that ``directory`` lacks, as paths relative to it (empty when complete)."""
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    for weights_dir, label in (
        (directory, ""),
        (directory / SPEECH_TOKENIZER_DIR, f"{SPEECH_TOKENIZER_DIR}/"),
    ):
        if not (weights_dir / WEIGHTS_NAME).is_file() and not (weights_dir / WEIGHTS_INDEX_NAME).is_file():
            missing.append(f"{label}{WEIGHTS_NAME} (or {label}{WEIGHTS_INDEX_NAME})")
    return missing


def check_model_dir(directory: Path, what: str | None = None) -> None:
    """Raise :class:`CheckpointError` listing the missing files when ``directory`` is not a complete model."""
    missing = missing_model_files(directory)
    if missing:
        raise CheckpointError(
            f"{what or directory} is not a complete Qwen3-TTS model directory ({directory}); "
            f"missing: {', '.join(missing)}"
        )


def resolve_model_dir(
    model: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    revision: str | None = None,
    token: str | bool | None = None,
    configs_only: bool = False,
) -> Path:
    """Return the directory of ``model``: a local directory as is, or a hub id fetched into the HF cache.
    ``configs_only``: a hub id's JSON configs only (no weights, not checked for them).

    Hub ids are downloaded with ``huggingface_hub.snapshot_download`` (its progress bars show), restricted to
    :data:`ALLOW_PATTERNS`. ``local_files_only=True`` or ``HF_HUB_OFFLINE=1`` use the cache only.
    The result is checked for :data:`REQUIRED_FILES` and the two weight files.
    """
    text = os.fspath(model).strip()
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(
                f"{path} is a directory but has no config.json, so it is not a model directory"
            )
        check_model_dir(path)
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; give a model directory or a Hugging Face hub id")

    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.utils import validate_repo_id

    not_found = f"{text!r} is neither a local directory nor a valid Hugging Face hub id (like 'Org/name')"
    if not text or _looks_like_path(text):
        raise CheckpointError(not_found)
    try:
        validate_repo_id(text)
    except HFValidationError as exc:
        raise CheckpointError(not_found) from exc

    offline = local_files_only or _env_offline()
    cache = Path(cache_dir).expanduser() if cache_dir is not None else Path(constants.HF_HUB_CACHE)
    if offline:
        _LOGGER.info("Looking up %s in the Hugging Face cache %s (offline)", text, cache)
    else:
        _LOGGER.info(
            "Fetching %s from the Hugging Face hub into %s (downloads only what is missing)", text, cache
        )
    try:
        folder = snapshot_download(
            text,
            revision=revision,
            cache_dir=cache,
            local_files_only=offline,
            allow_patterns=CONFIG_PATTERNS if configs_only else ALLOW_PATTERNS,
            token=token,
        )
    except GatedRepoError as exc:
        raise CheckpointError(
            f"{text} is gated on the Hugging Face hub: accept its terms and pass a token ({exc})"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise CheckpointError(
            f"{text} is not a local directory and no such model exists on the Hugging Face hub "
            "(or it is private and needs a token)"
        ) from exc
    except RevisionNotFoundError as exc:
        raise CheckpointError(f"{text} has no revision {revision!r} on the Hugging Face hub") from exc
    except LocalEntryNotFoundError as exc:
        get = f"hf download {text}" + (f" --revision {revision}" if revision else "")
        get += f" --cache-dir {cache}" if cache_dir is not None else ""
        if offline:
            switch = "local_files_only" if local_files_only else "HF_HUB_OFFLINE"
            reason = f"downloads are disabled ({switch})"
        else:
            reason = "the Hugging Face hub could not be reached"
        raise CheckpointError(
            f"{text} is not in the Hugging Face cache {cache} and {reason}. Download it once with network "
            f"access (run without HF_HUB_OFFLINE/local_files_only, or `{get}`), "
            "or give a local model directory."
        ) from exc
    except OSError as exc:  # connection, proxy, disk full, ...
        raise CheckpointError(f"Could not fetch {text} from the Hugging Face hub: {exc}") from exc

    directory = Path(folder)
    if configs_only:
        return directory
    check_model_dir(directory, what=f"{text} (revision {revision or 'main'})")
    _LOGGER.info("Model %s is at %s", text, directory)
    return directory


# --------------------------------------------------------------------------------------------------------------
# Configs


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON object from ``path``; missing files and invalid JSON raise :class:`CheckpointError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"Cannot read {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must contain a JSON object, not {type(data).__name__}")
    return data


def validate_model_config(cfg: Mapping[str, Any], source: str | os.PathLike[str]) -> str:
    """Check ``model_type`` and ``tts_model_type`` of a model ``config.json``; return the tts_model_type."""
    model_type = cfg.get("model_type")
    if model_type != MODEL_TYPE:
        raise CheckpointError(
            f"{source}: model_type is {model_type!r}, expected {MODEL_TYPE!r} (a Qwen3-TTS 12 Hz model)"
        )
    tts_model_type = cfg.get("tts_model_type")
    if tts_model_type not in MODEL_TYPES:
        raise CheckpointError(
            f"{source}: tts_model_type is {tts_model_type!r}, expected one of {', '.join(MODEL_TYPES)}"
        )
    return tts_model_type


def validate_speech_tokenizer_config(cfg: Mapping[str, Any], source: str | os.PathLike[str]) -> None:
    """Check that ``speech_tokenizer/config.json`` describes the 12 Hz codec (the only one we implement)."""
    model_type = cfg.get("model_type")
    if model_type != SPEECH_TOKENIZER_MODEL_TYPE:
        raise CheckpointError(
            f"{source}: model_type is {model_type!r}, expected {SPEECH_TOKENIZER_MODEL_TYPE!r} (12 Hz codec)"
        )


# --------------------------------------------------------------------------------------------------------------
# Weights


def weights_file(directory: Path) -> Path:
    """The file to name in messages about ``directory``'s weights: the index when sharded, else the file."""
    index = directory / WEIGHTS_INDEX_NAME
    return index if index.is_file() and not (directory / WEIGHTS_NAME).is_file() else directory / WEIGHTS_NAME


def _read_safetensors(path: Path, into: dict[str, torch.Tensor], expect: Iterable[str] = ()) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            keys = list(handle.keys())
            absent = sorted(set(expect) - set(keys))
            if absent:
                raise CheckpointError(f"{path} lacks tensors its index assigns to it: {_preview(absent)}")
            for key in keys:
                if key in into:
                    raise CheckpointError(f"{path}: tensor {key} also appears in another shard")
                into[key] = handle.get_tensor(key)
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own SafetensorError (and OSError) for broken files
        raise CheckpointError(f"Cannot read {path} (corrupt or incomplete download?): {exc}") from exc


def load_state_dict(directory: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """All tensors of ``directory``'s ``model.safetensors`` (or its index + shards), on CPU.

    The tensors are memory-mapped views of the files, so this costs page cache rather than a copy; the
    bytes are read when first used.
    """
    directory = Path(directory)
    single, index_path = directory / WEIGHTS_NAME, directory / WEIGHTS_INDEX_NAME
    state: dict[str, torch.Tensor] = {}
    if single.is_file():
        _read_safetensors(single, state)
        return state
    if not index_path.is_file():
        raise CheckpointError(f"{directory} has neither {WEIGHTS_NAME} nor {WEIGHTS_INDEX_NAME}")

    weight_map = read_json(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index_path} has no valid 'weight_map' (tensor name -> shard file)")
    shards: dict[str, list[str]] = {}
    for key, shard in weight_map.items():
        shards.setdefault(shard, []).append(key)
    missing = [shard for shard in shards if not (directory / shard).is_file()]
    if missing:
        raise CheckpointError(f"{index_path} refers to missing shard file(s): {_preview(missing)}")
    for shard, keys in shards.items():
        _read_safetensors(directory / shard, state, expect=keys)
    return state


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(name == pattern or fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def load_into(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    prefix: str,
    source: str | os.PathLike[str],
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    optional: Iterable[str] = (),
    ignore: Iterable[str] = (),
    keep_dtype: Iterable[str] = (),
) -> None:
    """Load the tensors of ``state`` under ``prefix`` (stripped) into ``module``, strictly.

    Missing tensors (unless their module key matches ``optional``), unexpected ones (unless they match
    ``ignore``) and shape mismatches raise :class:`CheckpointError` naming ``source`` and the full tensor
    names. ``optional``/``ignore`` take exact keys or glob patterns, relative to ``prefix``.

    Tensors are *assigned* rather than copied into the existing storage, so the module may have been built on
    the ``meta`` device (no random init, no second copy) and CPU tensors whose dtype already fits stay
    memory-mapped. Floating tensors become ``dtype`` (default: the module tensor's dtype); integer and bool
    buffers keep the module's dtype. Everything lands on ``device`` (default: where the module tensor is,
    CPU for meta). Tensors not in the checkpoint (non-persistent buffers, absent optional keys) are moved to
    ``device``; non-persistent buffers keep their dtype because they are computed tables (RoPE frequencies,
    mel filters) that the reference keeps in fp32. Keys matching ``keep_dtype`` (relative; exact or glob)
    keep the file's dtype.
    """
    if prefix and not prefix.endswith("."):
        prefix += "."
    optional, ignore = tuple(optional), tuple(ignore)
    device = torch.device(device) if device is not None else None
    kind = type(module).__name__
    expected = module.state_dict(keep_vars=True)  # names -> live tensors, no copies
    ours = {key[len(prefix) :]: tensor for key, tensor in state.items() if key.startswith(prefix)}

    missing = [prefix + k for k in expected if k not in ours and not _matches(k, optional)]
    unexpected = [prefix + k for k in ours if k not in expected and not _matches(k, ignore)]
    mismatched = [
        f"{prefix}{k} (file {tuple(t.shape)}, model {tuple(expected[k].shape)})"
        for k, t in ours.items()
        if k in expected and t.shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors: {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {_preview(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {_preview(mismatched)}")
    if problems:
        raise CheckpointError(f"{source} does not fit {kind} (prefix {prefix!r}): " + "; ".join(problems))

    def target(current: torch.Tensor, cast: bool) -> tuple[torch.device, torch.dtype]:
        to_device = device or (current.device if current.device.type != "meta" else torch.device("cpu"))
        to_dtype = dtype if cast and dtype is not None and current.is_floating_point() else current.dtype
        return to_device, to_dtype

    keep = tuple(keep_dtype)
    new_state = {}
    for key, tensor in ours.items():
        if key in expected:
            kept = _matches(key, keep)
            to_device, to_dtype = target(expected[key], cast=not kept)
            if kept:
                to_dtype = tensor.dtype
            new_state[key] = tensor.to(device=to_device, dtype=to_dtype)
    module.load_state_dict(new_state, strict=False, assign=True)

    # Whatever the file did not provide still has to follow the module to `device` (or is unusable on meta).
    for mod_name, sub in module.named_modules():
        for table in (sub._parameters, sub._buffers):
            for name, current in list(table.items()):
                full = f"{mod_name}.{name}" if mod_name else name
                if current is None or full in new_state:
                    continue
                if current.is_meta:
                    raise CheckpointError(
                        f"{kind}.{full} is on the meta device and {source} does not provide it "
                        f"(tensor {prefix}{full}); build the module on a real device or fill it after loading"
                    )
                persistent = name not in sub._non_persistent_buffers_set
                to_device, to_dtype = target(current, cast=persistent)
                if (to_device, to_dtype) == (current.device, current.dtype):
                    continue
                moved = current.detach().to(device=to_device, dtype=to_dtype)
                if isinstance(current, nn.Parameter):
                    moved = nn.Parameter(moved, requires_grad=current.requires_grad)
                table[name] = moved
    _LOGGER.debug("Loaded %d tensors from %s into %s (prefix %r)", len(new_state), source, kind, prefix)
