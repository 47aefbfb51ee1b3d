"""Typed model configuration read from a checkpoint's json files.

Defaults mirror the reference config classes of qwen-tts 0.1.1, so a config.json that omits a key behaves
exactly as it does upstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .checkpoint import CheckpointError, read_json, resolve_model_dir, validate_model_config


@dataclass(frozen=True)
class TransformerConfig:
    """Geometry of one Qwen3-style decoder stack (talker or code predictor)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    rope_theta: float
    rms_norm_eps: float

    @classmethod
    def from_dict(cls, raw: dict[str, Any], defaults: dict[str, Any]) -> "TransformerConfig":
        merged = {**defaults, **{k: v for k, v in raw.items() if v is not None}}
        heads = int(merged["num_attention_heads"])
        kv_heads = merged.get("num_key_value_heads") or heads
        head_dim = merged.get("head_dim") or int(merged["hidden_size"]) // heads
        return cls(
            hidden_size=int(merged["hidden_size"]),
            intermediate_size=int(merged["intermediate_size"]),
            num_hidden_layers=int(merged["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(kv_heads),
            head_dim=int(head_dim),
            vocab_size=int(merged["vocab_size"]),
            rope_theta=float(merged["rope_theta"]),
            rms_norm_eps=float(merged["rms_norm_eps"]),
        )


# Reference class defaults (configuration_qwen3_tts.py).
_PREDICTOR_DEFAULTS = dict(
    vocab_size=2048,
    hidden_size=1024,
    intermediate_size=3072,
    num_hidden_layers=5,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    rope_theta=10000,
    rms_norm_eps=1e-6,
)
_TALKER_DEFAULTS = dict(
    vocab_size=3072,
    hidden_size=1024,
    intermediate_size=2048,
    num_hidden_layers=20,
    num_attention_heads=16,
    num_key_value_heads=2,
    head_dim=None,
    rope_theta=10000,
    rms_norm_eps=1e-6,
)


@dataclass(frozen=True)
class CodecIds:
    """Control ids in the talker's codec vocabulary."""

    pad: int
    bos: int
    eos: int
    think: int
    nothink: int
    think_bos: int
    think_eos: int


@dataclass(frozen=True)
class TalkerConfig:
    transformer: TransformerConfig
    predictor: TransformerConfig
    num_code_groups: int
    text_vocab_size: int
    text_hidden_size: int
    codec: CodecIds
    languages: dict[str, int]
    speakers: dict[str, int]
    speaker_dialects: dict[str, Any]


@dataclass(frozen=True)
class GenerationDefaults:
    """Sampling defaults from generation_config.json (caller > file > these hard defaults)."""

    do_sample: bool = True
    temperature: float = 0.9
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.05
    subtalker_dosample: bool = True
    subtalker_temperature: float = 0.9
    subtalker_top_k: int = 50
    subtalker_top_p: float = 1.0
    max_new_tokens: int = 2048

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "GenerationDefaults":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in known and v is not None})


@dataclass(frozen=True)
class ModelConfig:
    """What the engine needs from config.json, generation_config.json and speech_tokenizer/config.json."""

    model_dir: Path
    tts_model_type: str
    tts_model_size: str
    talker: TalkerConfig
    speaker_encoder: Optional[dict[str, Any]]
    im_start_token_id: int
    im_end_token_id: int
    tts_pad_token_id: int
    tts_bos_token_id: int
    tts_eos_token_id: int
    generation: GenerationDefaults
    codec: dict[str, Any] = field(default_factory=dict)

    @property
    def supported_languages(self) -> list[str]:
        """`auto` plus every language that is not a dialect (the reference's rule)."""
        return ["auto"] + [name for name in self.talker.languages if "dialect" not in name]

    @property
    def supported_speakers(self) -> list[str]:
        return list(self.talker.speakers)

    @property
    def is_small(self) -> bool:
        # The reference tests `tts_model_size in "0b6"`, a substring test; keep its exact semantics.
        return self.tts_model_size in "0b6"

    @property
    def codec_decoder_config(self) -> dict[str, Any]:
        return dict(self.codec.get("decoder_config") or {})

    @property
    def codec_encoder_config(self) -> dict[str, Any]:
        return dict(self.codec.get("encoder_config") or {})

    @classmethod
    def load(cls, model_dir: Path) -> "ModelConfig":
        model_dir = Path(model_dir)
        config_path = model_dir / "config.json"
        raw = read_json(config_path)
        validate_model_config(raw, str(config_path))
        talker_raw = raw.get("talker_config") or {}
        predictor_raw = talker_raw.get("code_predictor_config") or {}
        talker = TalkerConfig(
            transformer=TransformerConfig.from_dict(talker_raw, _TALKER_DEFAULTS),
            predictor=TransformerConfig.from_dict(predictor_raw, _PREDICTOR_DEFAULTS),
            num_code_groups=int(talker_raw.get("num_code_groups", 32)),
            text_vocab_size=int(talker_raw.get("text_vocab_size", 151936)),
            text_hidden_size=int(talker_raw.get("text_hidden_size", 2048)),
            codec=CodecIds(
                pad=int(talker_raw.get("codec_pad_id", 4196)),
                bos=int(talker_raw.get("codec_bos_id", 4197)),
                eos=int(talker_raw.get("codec_eos_token_id", 4198)),
                think=int(talker_raw.get("codec_think_id", 4202)),
                nothink=int(talker_raw.get("codec_nothink_id", 4203)),
                think_bos=int(talker_raw.get("codec_think_bos_id", 4204)),
                think_eos=int(talker_raw.get("codec_think_eos_id", 4205)),
            ),
            languages={k.lower(): int(v) for k, v in (talker_raw.get("codec_language_id") or {}).items()},
            speakers={k.lower(): int(v) for k, v in (talker_raw.get("spk_id") or {}).items()},
            speaker_dialects={k.lower(): v for k, v in (talker_raw.get("spk_is_dialect") or {}).items()},
        )
        if talker.num_code_groups != 16:
            raise CheckpointError(
                f"{config_path}: num_code_groups={talker.num_code_groups}; "
                "only the 12 Hz models (16) are supported"
            )
        gen_path = model_dir / "generation_config.json"
        generation = (
            GenerationDefaults.from_dict(read_json(gen_path)) if gen_path.exists() else GenerationDefaults()
        )
        codec_path = model_dir / "speech_tokenizer" / "config.json"
        codec = read_json(codec_path)
        codec_type = codec.get("model_type")
        if codec_type not in (None, "qwen3_tts_tokenizer_12hz"):
            raise CheckpointError(f"{codec_path}: unsupported speech tokenizer model_type {codec_type!r}")
        model_type = raw["tts_model_type"]
        return cls(
            model_dir=model_dir,
            tts_model_type=model_type,
            tts_model_size=str(raw.get("tts_model_size") or ""),
            talker=talker,
            speaker_encoder=(raw.get("speaker_encoder_config") or {}) if model_type == "base" else None,
            im_start_token_id=int(raw.get("im_start_token_id", 151644)),
            im_end_token_id=int(raw.get("im_end_token_id", 151645)),
            tts_pad_token_id=int(raw.get("tts_pad_token_id", 151671)),
            tts_bos_token_id=int(raw.get("tts_bos_token_id", 151672)),
            tts_eos_token_id=int(raw.get("tts_eos_token_id", 151673)),
            generation=generation,
            codec=codec,
        )


def peek_config(
    model: str | Path, cache_dir: Optional[str] = None, local_files_only: bool = False
) -> ModelConfig:
    """A model's configs without its weights (type, speakers, languages), fast: a local directory is checked
    complete; a hub id fetches only its JSON files (the weights follow when the engine loads)."""
    directory = resolve_model_dir(
        model, cache_dir=cache_dir, local_files_only=local_files_only, configs_only=True
    )
    return ModelConfig.load(directory)
