"""Tests for engine/checkpoint.py with real safetensors files and a real Hugging Face cache layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from wyoming_qwen3tts.engine import checkpoint
from wyoming_qwen3tts.engine.checkpoint import (
    CheckpointError,
    load_into,
    load_state_dict,
    read_json,
    resolve_model_dir,
    validate_model_config,
    validate_speech_tokenizer_config,
)

REPO_ID = "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)
        self.register_buffer("counter", torch.zeros(2, dtype=torch.int64))
        self.register_buffer("flag", torch.tensor([True]))
        self.register_buffer("inv_freq", torch.arange(3, dtype=torch.float32), persistent=False)


def block_state(prefix: str = "decoder.", dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        f"{prefix}proj.weight": torch.randn(3, 4, generator=gen).to(dtype),
        f"{prefix}proj.bias": torch.randn(3, generator=gen).to(dtype),
        f"{prefix}norm.weight": torch.randn(3, generator=gen).to(dtype),
        f"{prefix}norm.bias": torch.randn(3, generator=gen).to(dtype),
        f"{prefix}counter": torch.tensor([7, 9], dtype=torch.int64),
        f"{prefix}flag": torch.tensor([False]),
    }


def write_model_dir(root: Path, *, skip: tuple[str, ...] = ()) -> Path:
    """A minimal directory with every file resolve_model_dir requires (weights tiny, configs minimal)."""
    (root / "speech_tokenizer").mkdir(parents=True, exist_ok=True)
    files = {
        "config.json": json.dumps({"model_type": "qwen3_tts", "tts_model_type": "custom_voice"}),
        "generation_config.json": json.dumps({"do_sample": True}),
        "vocab.json": "{}",
        "merges.txt": "#version: 0.2\n",
        "speech_tokenizer/config.json": json.dumps({"model_type": "qwen3_tts_tokenizer_12hz"}),
    }
    for name, text in files.items():
        if name not in skip:
            (root / name).write_text(text)
    for name, key in (("model.safetensors", "talker.w"), ("speech_tokenizer/model.safetensors", "decoder.w")):
        if name not in skip:
            save_file({key: torch.zeros(2)}, str(root / name))
    return root


def write_sharded(directory: Path, state: dict[str, torch.Tensor], n_shards: int = 2) -> None:
    """Shard ``state`` and write the index exactly like huggingface does."""
    keys = sorted(state)
    weight_map, total = {}, 0
    for i in range(n_shards):
        name = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        part = {k: state[k].contiguous() for k in keys[i::n_shards]}
        save_file(part, str(directory / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
        total += sum(t.numel() * t.element_size() for t in part.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


# ------------------------------------------------------------------------------------------- load_state_dict


def test_load_single_file(tmp_path: Path) -> None:
    state = block_state()
    save_file(state, str(tmp_path / "model.safetensors"))
    loaded = load_state_dict(tmp_path)
    assert loaded.keys() == state.keys()
    for key, tensor in state.items():
        assert torch.equal(loaded[key], tensor) and loaded[key].dtype == tensor.dtype


def test_load_sharded(tmp_path: Path) -> None:
    state = block_state()
    write_sharded(tmp_path, state, n_shards=3)
    loaded = load_state_dict(tmp_path)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert checkpoint.weights_file(tmp_path).name == "model.safetensors.index.json"


def test_missing_shard_is_named(tmp_path: Path) -> None:
    write_sharded(tmp_path, block_state(), n_shards=2)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model-00002-of-00002\.safetensors"):
        load_state_dict(tmp_path)


def test_shard_lacking_indexed_tensor(tmp_path: Path) -> None:
    write_sharded(tmp_path, block_state(), n_shards=2)
    index = read_json(tmp_path / "model.safetensors.index.json")
    index["weight_map"]["decoder.ghost"] = "model-00001-of-00002.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"decoder\.ghost"):
        load_state_dict(tmp_path)


def test_no_weights(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="neither model.safetensors nor model.safetensors.index.json"):
        load_state_dict(tmp_path)


def test_corrupt_file(tmp_path: Path) -> None:
    # What a git-lfs pointer or a truncated download looks like.
    (tmp_path / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_state_dict(tmp_path)


# ---------------------------------------------------------------------------------------------- load_into


def test_load_into_exact(tmp_path: Path) -> None:
    state = block_state()
    state["talker.other"] = torch.ones(1)  # other prefixes are not ours
    block = Block()
    load_into(block, state, "decoder.", "x/model.safetensors")
    assert torch.equal(block.proj.weight, state["decoder.proj.weight"])
    assert torch.equal(block.counter, torch.tensor([7, 9]))
    assert block.flag.item() is False
    assert isinstance(block.proj.weight, nn.Parameter) and block.proj.weight.requires_grad
    assert torch.equal(block.inv_freq, torch.arange(3, dtype=torch.float32))


def test_load_into_prefix_without_dot() -> None:
    state = block_state()
    state["decoder_extra.proj.weight"] = torch.ones(3, 4)  # must not be caught by prefix "decoder"
    load_into(Block(), state, "decoder", "model.safetensors")


def test_dtype_cast_fp32_to_bf16(tmp_path: Path) -> None:
    save_file(block_state(dtype=torch.float32), str(tmp_path / "model.safetensors"))
    state = load_state_dict(tmp_path)
    block = Block()
    load_into(block, state, "decoder.", "model.safetensors", dtype=torch.bfloat16, device="cpu")
    assert block.proj.weight.dtype == torch.bfloat16 and block.norm.bias.dtype == torch.bfloat16
    assert torch.equal(block.proj.weight, state["decoder.proj.weight"].to(torch.bfloat16))
    assert block.counter.dtype == torch.int64 and block.flag.dtype == torch.bool
    assert block.inv_freq.dtype == torch.float32  # computed table, not in the file: keeps its dtype


def test_dtype_none_keeps_module_dtype() -> None:
    block = Block()
    load_into(block, block_state(dtype=torch.bfloat16), "decoder.", "model.safetensors")
    assert block.proj.weight.dtype == torch.float32


def test_meta_module_is_materialised() -> None:
    with torch.device("meta"):
        proj = nn.Linear(4, 3)
    state = {k.removeprefix("decoder."): v for k, v in block_state().items() if "proj" in k}
    load_into(proj, state, "proj.", "model.safetensors", dtype=torch.bfloat16)
    assert proj.weight.device.type == "cpu" and proj.weight.dtype == torch.bfloat16
    assert torch.equal(proj.bias, state["proj.bias"].to(torch.bfloat16))


def test_meta_module_missing_optional_fails_clearly() -> None:
    with torch.device("meta"):
        proj = nn.Linear(4, 3)
    state = {"proj.weight": torch.zeros(3, 4)}
    with pytest.raises(CheckpointError, match=r"meta device.*proj\.bias"):
        load_into(proj, state, "proj.", "model.safetensors", optional=("bias",))


def test_missing_keys_listed() -> None:
    state = block_state()
    del state["decoder.proj.bias"], state["decoder.counter"]
    with pytest.raises(CheckpointError) as info:
        load_into(Block(), state, "decoder.", "speech_tokenizer/model.safetensors")
    message = str(info.value)
    assert "speech_tokenizer/model.safetensors" in message and "Block" in message
    assert "missing tensors: decoder.counter, decoder.proj.bias" in message


def test_optional_keys_may_be_absent() -> None:
    state = block_state()
    del state["decoder.counter"], state["decoder.norm.bias"]
    block = Block()
    load_into(block, state, "decoder.", "model.safetensors", optional=("counter", "norm.*"))
    assert torch.equal(block.counter, torch.zeros(2, dtype=torch.int64))


def test_unexpected_keys_listed_and_truncated() -> None:
    state = block_state()
    for i in range(8):
        state[f"decoder.extra.{i}"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"unexpected tensors: decoder\.extra\.0, .* and 3 more"):
        load_into(Block(), state, "decoder.", "model.safetensors")
    load_into(Block(), state, "decoder.", "model.safetensors", ignore=("extra.*",))


def test_shape_mismatch() -> None:
    state = block_state()
    state["decoder.proj.weight"] = torch.zeros(3, 5)
    with pytest.raises(CheckpointError, match=r"decoder\.proj\.weight \(file \(3, 5\), model \(3, 4\)\)"):
        load_into(Block(), state, "decoder.", "model.safetensors")


# ---------------------------------------------------------------------------------------------- configs


def test_read_json_errors(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text('{"model_type": "qwen3_tts",}')
    with pytest.raises(CheckpointError, match=r"config\.json is not valid JSON"):
        read_json(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_json(tmp_path / "nope.json")
    bad.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="JSON object"):
        read_json(bad)


def test_validate_model_config() -> None:
    assert validate_model_config({"model_type": "qwen3_tts", "tts_model_type": "base"}, "c.json") == "base"
    with pytest.raises(CheckpointError, match=r"c\.json: model_type is 'llama'"):
        validate_model_config({"model_type": "llama", "tts_model_type": "base"}, "c.json")
    with pytest.raises(CheckpointError, match=r"c\.json: tts_model_type is 'opera'"):
        validate_model_config({"model_type": "qwen3_tts", "tts_model_type": "opera"}, "c.json")
    validate_speech_tokenizer_config({"model_type": "qwen3_tts_tokenizer_12hz"}, "s.json")
    with pytest.raises(CheckpointError, match="12 Hz"):
        validate_speech_tokenizer_config({"model_type": "qwen3_tts_tokenizer_25hz"}, "s.json")


# ----------------------------------------------------------------------------------------- resolve_model_dir


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guarantee no test reaches the network, whatever huggingface_hub read at import time."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def make_hub_cache(cache: Path, repo_id: str = REPO_ID, **kwargs) -> Path:
    """The huggingface_hub cache layout: models--Org--name/{refs/main, snapshots/<commit>/...}."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(COMMIT)
    return write_model_dir(storage / "snapshots" / COMMIT, **kwargs)


def test_local_directory(tmp_path: Path) -> None:
    model = write_model_dir(tmp_path / "m")
    assert resolve_model_dir(str(model)) == model
    assert resolve_model_dir(model) == model


def test_local_directory_missing_files(tmp_path: Path) -> None:
    model = write_model_dir(tmp_path / "m", skip=("merges.txt", "speech_tokenizer/model.safetensors"))
    with pytest.raises(CheckpointError) as info:
        resolve_model_dir(model)
    assert "merges.txt" in str(info.value)
    assert "speech_tokenizer/model.safetensors (or speech_tokenizer/model.safetensors.index.json)" in str(
        info.value
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        resolve_model_dir(tmp_path / "empty")


def test_not_a_directory_nor_hub_id(tmp_path: Path, offline: None) -> None:
    for bad in (str(tmp_path / "absent"), "./absent", "not a/valid/id", "bad id!"):
        with pytest.raises(
            CheckpointError, match="neither a local directory nor a valid Hugging Face hub id"
        ):
            resolve_model_dir(bad, cache_dir=tmp_path)
    (tmp_path / "file.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="is a file"):
        resolve_model_dir(tmp_path / "file.bin")


def test_hub_id_from_cache_local_files_only(tmp_path: Path, offline: None) -> None:
    snapshot = make_hub_cache(tmp_path / "hub")
    found = resolve_model_dir(REPO_ID, cache_dir=tmp_path / "hub", local_files_only=True)
    assert found == snapshot
    assert resolve_model_dir(REPO_ID, cache_dir=tmp_path / "hub", revision=COMMIT) == snapshot


def test_hub_id_from_cache_env_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    # Only the environment variable is set (after import): we must still stay offline.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("tried to reach the hub")

    monkeypatch.setattr("huggingface_hub.hf_api.HfApi.repo_info", no_network)
    snapshot = make_hub_cache(tmp_path / "hub")
    assert resolve_model_dir(REPO_ID, cache_dir=tmp_path / "hub") == snapshot


def test_hub_id_offline_not_cached(tmp_path: Path, offline: None) -> None:
    with pytest.raises(CheckpointError) as info:
        resolve_model_dir(REPO_ID, cache_dir=tmp_path / "hub", local_files_only=True)
    message = str(info.value)
    assert REPO_ID in message and "not in the Hugging Face cache" in message
    assert f"hf download {REPO_ID}" in message


def test_hub_snapshot_incomplete(tmp_path: Path, offline: None) -> None:
    make_hub_cache(tmp_path / "hub", skip=("speech_tokenizer/config.json",))
    with pytest.raises(CheckpointError, match=r"missing: speech_tokenizer/config\.json"):
        resolve_model_dir(REPO_ID, cache_dir=tmp_path / "hub")
