"""Settings of the models and the engine: which checkpoints, on which device, in which precision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..core.vocab import DEFAULT_QUANTIZE, DEFAULT_SLOTS
from .checks import (
    _check_bool,
    _check_device,
    _check_dtype,
    _check_language,
    _check_model_choice,
    _check_positive_int,
    _check_quantize,
    _check_str,
    _optional,
)
from .constants import AUTO
from .spec import SWITCH, Addon, setting


@dataclass
class ModelSettings:
    model: str = setting(
        "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice",
        check=_check_str,
        help="Hugging Face id or local checkpoint directory (default: {default})",
        doc="hub id or local directory",
        doc_addon="`model_size`",
    )
    clone_model: Optional[str] = setting(  # Base model of clone: voices; None = clone voices off
        AUTO,
        check=_check_model_choice,
        metavar="MODEL",
        help="Base model for clone: voices: hub id, directory, auto (the Base model of the main model's "
        "size) or none (default: auto)",
        doc="Base model for `clone:` voices: hub id, directory, `auto` (the Base model of the main model's "
        "size; off when `--model` is a local directory) or `none`",
        doc_addon="`clone_voices`",
    )
    design_model: Optional[str] = setting(  # VoiceDesign model of design: voices; None = design voices off
        AUTO,
        check=_check_model_choice,
        metavar="MODEL",
        help="VoiceDesign model for design: voices: hub id, directory, auto (the official 1.7B one) or none "
        "(default: auto)",
        doc="VoiceDesign model for `design:` voices: hub id, directory, `auto` "
        "(`Qwen/Qwen3-TTS-12Hz-1.7B-VoiceDesign`; off when `--model` is a local directory) or `none`",
        doc_addon="`clone_voices`",
    )
    max_loaded_models: int = setting(
        2,
        check=_check_positive_int,
        metavar="N",
        help="models kept in memory at once; the least recently used idle one is unloaded to load another "
        "(default: {default})",
        doc="models kept in memory at once (see [Models in memory](#models-in-memory))",
        doc_addon="(from `preload`)",
    )
    preload: bool = setting(
        False,
        check=_check_bool,
        flag=SWITCH,
        help="load every configured model at start and keep them (no loading on demand)",
        doc="load every configured model at start and keep them all",
        addon=Addon("bool"),
    )
    device: str = setting(
        "auto",
        check=_check_device,
        help="auto, cpu, cuda or cuda:N; ROCm GPUs are cuda too (default: auto)",
        doc="`auto`, `cpu`, `cuda`, `cuda:N` (AMD GPUs under ROCm are `cuda` too)",
        doc_addon="`device`",
    )
    dtype: str = setting(
        "auto",
        check=_check_dtype,
        help="auto (bf16 on GPUs and on CPUs with native bf16, else fp32), float32, bfloat16, float16",
        doc="`auto` (bf16 on GPUs and CPUs with native bf16, fp32 on other CPUs and with int8), `float32`, "
        "`bfloat16`, `float16`",
        addon=Addon("list(auto|float32|bfloat16)"),
    )
    # int8/int4 weights of the talker and code predictor (CPU only); engine/policy.py
    quantize: str = setting(
        DEFAULT_QUANTIZE,
        check=_check_quantize,
        help="weights of the talker and code predictor on CPU: auto (int8 where this CPU has a fast int8 "
        "kernel: x86-64 AVX2 and up, ARM64), none, int8, int4 (experimental, AVX-512 only; elsewhere "
        "int8); ignored on a GPU (default: auto)",
        doc="CPU only: `auto`, `none`, `int8`, `int4`; `auto` quantizes only with `--dtype auto` (see "
        "[Which settings on which hardware](#which-settings-on-which-hardware))",
        addon=Addon("list(auto|none|int8|int4)"),
    )
    threads: Optional[int] = setting(
        None,
        check=_optional(_check_positive_int),
        metavar="N",
        help="CPU threads for torch (default: torch's choice)",
        doc="CPU threads",
        doc_default="PyTorch's",
        addon=Addon("int(1,256)?"),
    )
    slots: int = setting(  # KV-cache slots of the engine
        DEFAULT_SLOTS,
        check=_check_positive_int,
        metavar="N",
        help="engine KV-cache slots (default: {default})",
        doc="engine KV-cache slots (requests decoded together)",
        doc_addon="`max_concurrent`",
    )
    voice: Optional[str] = setting(
        None,
        check=_optional(_check_str),
        help="default voice when the client names none",
        doc="default voice when the client names none: a built-in speaker (`ryan`, or `ryan@de` bound to "
        "German) or a library voice (`clone:anna`, `design:narrator`, `style:night`)",
        doc_default="first voice",
        addon=Addon("str?"),
    )
    language: str = setting(
        "auto",
        check=_check_language,
        metavar="LANG",
        help="default language: auto, a language name or BCP-47 code (default: auto)",
        doc="default language: a name (`english`) or BCP-47 code (`en`, `zh-CN`)",
        addon=Addon("list(auto|en|zh|de|it|pt|es|ja|ko|fr|ru)"),
    )
