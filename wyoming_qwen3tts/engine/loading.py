"""Loading a checkpoint into an engine: weights, fusion and quantization, the codec decoder, the tokenizer."""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar

import torch
from torch.overrides import TorchFunctionMode

from .checkpoint import load_into, load_state_dict, resolve_model_dir
from .codec.decoder import SpeechDecoder
from .config import ModelConfig
from .memory import drop_file_pages, file_storages, release_file_pages, trim_heap
from .options import LoadOptions, resolve_device
from .policy import ComputePlan, log_plan
from .policy import plan as compute_plan
from .quant import prepare_talker
from .talker import Talker
from .text import TextTokenizer

E = TypeVar("E")

_LOGGER = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """The loaded parts of one checkpoint an engine is built from."""

    config: ModelConfig
    talker: Talker
    decoder: SpeechDecoder
    tokenizer: TextTokenizer
    codec_state: Optional[dict] = None  # Base models: the speech encoder's weights, loaded on first use


def load_engine(
    cls: Callable[[LoadedModel, ComputePlan, LoadOptions], E], model: str | Path, options: LoadOptions
) -> E:
    """Loads a Qwen3-TTS 12 Hz checkpoint (local directory or Hugging Face id) into a new `cls` engine,
    on a thread of its own, which ends afterwards: loading runs multi-threaded CPU ops, and a caller thread
    that did so would keep an OpenMP pool for good, halving decode speed (see scheduler.py)."""
    return _on_fresh_thread(lambda: _load(cls, model, options))


def _load(cls: Callable[[LoadedModel, ComputePlan, LoadOptions], E], model: str | Path, o: LoadOptions) -> E:
    started = time.monotonic()
    dev = resolve_device(o.device)
    plan = compute_plan(dev, o.dtype, o.quantize, trace=o.trace)
    dt = plan.dtype
    if o.slots < 1 or o.max_len < 16:
        raise ValueError("slots must be >= 1 and max_len >= 16")
    model_dir = resolve_model_dir(
        model, cache_dir=o.cache_dir, local_files_only=o.local_files_only, revision=o.revision
    )
    cfg = ModelConfig.load(model_dir)
    _LOGGER.info("Loading %s (%s, %s)", model_dir.name, cfg.tts_model_type, cfg.tts_model_size)
    log_plan(plan)
    state = load_state_dict(model_dir)
    source = model_dir / "model.safetensors"
    with on_meta():
        talker = Talker(cfg.talker)
    talker = talker.to_empty(device=dev)
    load_into(talker, state, "talker.", source, dtype=dt, device=dev, keep_dtype=_stored_dtype_keys(plan))
    _reset_rotary(talker)
    talker.eval()
    # Fused, then quantized (or packed), layer by layer, dropping the file pages already rewritten.
    prepare_talker(
        talker,
        plan.quantize,
        file_storages(state.values()),
        int8_kernel=plan.int8_kernel,
        int4_kernel=plan.int4_kernel,
    )
    # Rewritten weights no longer need the file's pages; the text embedding is re-mapped lazily.
    release_file_pages(talker, state, "talker.", model_dir, remap=_looked_up(state))
    del state
    trim_heap()  # the quantization temporaries (~250 MB on 0.6B) go back before the decoder comes in
    codec_dir = model_dir / "speech_tokenizer"
    codec_state = load_state_dict(codec_dir)
    decoder = _load_decoder(cfg, codec_state, codec_dir / "model.safetensors", plan.codec_dtype, dev)
    codec = codec_state if cfg.tts_model_type == "base" else None
    engine = cls(LoadedModel(cfg, talker, decoder, TextTokenizer(model_dir), codec), plan, o)
    trim_heap()
    _LOGGER.info(
        "Model ready in %.1f s (%d KV slots x %d tokens)", time.monotonic() - started, o.slots, o.max_len
    )
    return engine


def _looked_up(state: dict[str, torch.Tensor]) -> tuple[str, ...]:
    """Talker tables that are only looked up (text embedding, codec tables; keys relative to ``talker.``):
    re-mapped from the file instead of copied, so only the rows in use become resident (the codec tables:
    69 MB of bf16 that a copy held, read twice at the load peak). release_file_pages copies any of them
    whose dtype was changed on loading."""
    tables = (
        "model.text_embedding.weight",
        "model.codec_embedding.weight",
        "code_predictor.model.codec_embedding.*",
    )
    keys = (k.removeprefix("talker.") for k in state if k.startswith("talker."))
    return tuple(k for k in keys if any(fnmatch.fnmatchcase(k, t) for t in tables))


def _on_fresh_thread(fn: Callable[[], Any]) -> Any:
    """fn() on a new, short-lived thread; its result or exception comes back to the caller."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=run, name="qwen3tts-load")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _stored_dtype_keys(plan: ComputePlan) -> tuple[str, ...]:
    """Talker tensors an fp32 CPU engine keeps in the checkpoint's dtype (bf16 for the released models).

    The text embedding (151,936 x 2048) is only looked up: an fp32 copy would hold 1.2 GB resident, the
    memory map only the rows in use (widened exactly in Talker.embed_text). The matrices that quantization
    rewrites are read from the file as stored: converting the whole talker to fp32 first would raise the
    load peak by ~1.4 GB (0.6B) for numbers that are the same (bf16 -> fp32 is lossless)."""
    if plan.device.type != "cpu" or plan.dtype != torch.float32:
        return ()
    # The codec input tables are only looked up too (Talker.embed_codec, CodePredictor.embed): 69 MB less.
    keys: tuple[str, ...] = (
        "model.text_embedding.weight",
        "model.codec_embedding.weight",
        "code_predictor.model.codec_embedding.*.weight",
    )
    if plan.quantize != "none":
        keys += (
            "model.layers.*_proj.weight",
            "code_predictor.model.layers.*_proj.weight",
            "codec_head.weight",
            "code_predictor.lm_head.*",
        )
    return keys


class _SkipInit(TorchFunctionMode):
    """Inside: torch.nn.init's initialisers return their tensor untouched (thread-local, like every torch
    function mode; nothing process-wide changes)."""

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: Optional[dict] = None
    ) -> Any:
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else (kwargs or {}).get("tensor")
        return func(*args, **(kwargs or {}))


@contextmanager
def on_meta() -> Iterator[None]:
    """Modules built inside live on the meta device and skip their random init, for modules whose every
    parameter then comes from the checkpoint (load_into raises on a missing one). Skipping the init matters
    even on meta: PyTorch's meta kernels for normal_/uniform_ import torch._dynamo on first use (~1.1 s of
    a 2-core load). Tables a constructor computes are made on the CPU explicitly (Rotary, the codec's
    RoPE), so the meta device does not reach them."""
    with torch.device("meta"), _SkipInit():
        yield


def _load_decoder(
    cfg: ModelConfig, state: dict[str, torch.Tensor], source: Path, dtype: torch.dtype, dev: torch.device
) -> SpeechDecoder:
    """The codec decoder, built on the meta device (no random init, no memory: every parameter comes from
    the checkpoint, strictly) and filled tensor by tensor.

    A weight converted on the way in (bf16 file -> float32 decoder) is a copy: its file pages are dropped
    right after, so the load peak holds one tensor twice instead of the whole decoder (issue 24: the load
    peak was when the decoder arrived, +230 MB of file pages beside its 460 MB). Same-dtype CPU weights stay
    views of the mapping."""
    with on_meta():
        decoder = SpeechDecoder.from_config(cfg.codec_decoder_config)
    mapped = file_storages(state.values())
    # The codebook sums are only looked up (SpeechDecoder._forward widens the rows it reads): on CPU they stay
    # in the file's dtype, memory-mapped, instead of an fp32 copy (17 MB on 0.6B; only rows in use resident).
    # (fp32 decoders only: a narrower decoder rounds the sums to its dtype before dividing, as it always did.)
    keep = ("quantizer.*.embedding_sum",) if dev.type == "cpu" and dtype == torch.float32 else ()
    ours: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if not key.startswith("decoder."):
            continue
        kept = keep and key.endswith(".embedding_sum")
        if tensor.is_floating_point() and not kept and (tensor.dtype != dtype or dev.type != "cpu"):
            ours[key] = tensor.to(device=dev, dtype=dtype)
            drop_file_pages([tensor], mapped)
        else:
            ours[key] = tensor
    load_into(decoder, ours, "decoder.", source, dtype=dtype, device=dev, keep_dtype=keep)
    del ours
    # CPU fp32: the transposed convs that stream as packed GEMMs keep only the packed copy (no plain weight
    # beside it; packed now rather than in the first request, which raised its peak as well).
    freed = decoder.keep_packed_only()
    if freed:
        _LOGGER.debug(
            "Codec decoder: %.0f MB of plain weights replaced by their packed copies", freed / 2**20
        )
    return decoder.eval()


def _reset_rotary(module: torch.nn.Module) -> None:
    """Non-persistent RoPE buffers are not in the checkpoint; recompute them after meta-device init."""
    from .layers import Rotary

    for sub in module.modules():
        if isinstance(sub, Rotary):
            inv_freq: torch.Tensor = sub.inv_freq
            fresh = Rotary(inv_freq.shape[0] * 2, sub.theta)
            sub.inv_freq = fresh.inv_freq.to(inv_freq.device)
            sub.reset()
