"""Our Qwen3-TTS inference engine: load a checkpoint once, submit requests, stream PCM chunks.

    engine = Engine.load("Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice")
    stream = engine.submit(SpeechRequest("Hello!", speaker="ryan", language="english"))
    for chunk in stream:          # or: async for chunk in stream
        play(chunk.pcm)           # 24 kHz mono int16
    stream.cancel()               # any time

This module is the engine's whole public face; the server never reaches past it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from .audio import AudioError, load_audio, resample
from .checkpoint import CheckpointError, load_into, load_state_dict, resolve_model_dir
from .codec.decoder import SpeechDecoder
from .config import ModelConfig
from .jit import tracing_default
from .memory import file_storages, release_file_pages, trim_heap
from .policy import QUANT_CHOICES as QUANT_MODES
from .policy import ComputePlan, log_plan, parse_dtype_name
from .policy import plan as compute_plan
from .prompt import PromptBuilder, VoicePrompt
from .quant import prepare_talker
from .runner import SAMPLE_RATE, ModelRunner, RunawayGuard
from .sampling import SamplingParams
from .scheduler import ChunkPolicy, Scheduler, _Job
from .stream import AudioChunk, Cancelled, EngineClosed, SpeechResult, SpeechStream
from .talker import Talker
from .text import TextTokenizer

__all__ = [
    "AudioChunk",
    "AudioError",
    "Cancelled",
    "ComputePlan",
    "CheckpointError",
    "ChunkPolicy",
    "Engine",
    "EngineClosed",
    "RunawayGuard",
    "SAMPLE_RATE",
    "SamplingParams",
    "SpeechRequest",
    "SpeechResult",
    "SpeechStream",
    "VoicePrompt",
    "QUANT_MODES",
    "compute_plan",
    "parse_dtype",
]

_LOGGER = logging.getLogger(__name__)


def parse_dtype(name: str | torch.dtype, device: str | torch.device) -> torch.dtype:
    """The talker dtype `name` means on `device` without quantization ('auto': bf16 on GPUs and on CPUs
    with native bf16, fp32 on other CPUs; see policy.py)."""
    explicit = parse_dtype_name(name)
    if explicit is not None:
        return explicit
    return compute_plan(torch.device(device), "auto", "none").dtype


def resolve_device(name: Optional[str]) -> torch.device:
    """'auto' picks CUDA (NVIDIA, or AMD through ROCm's CUDA API) when present, else CPU."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but no CUDA/ROCm GPU is available")
    return device


@dataclass
class SpeechRequest:
    """One utterance. Voice: `speaker` (CustomVoice), `instruct` (VoiceDesign, or CustomVoice 1.7B style
    control) or `voice` (Base, a cloned voice from `Engine.create_voice_prompt`)."""

    text: str
    language: Optional[str] = None  # None/"auto" lets the model decide
    speaker: Optional[str] = None
    instruct: Optional[str] = None
    voice: Optional[VoicePrompt] = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    non_streaming_text: Optional[bool] = None  # None = the reference's default for the model type
    chunk_policy: Optional[ChunkPolicy] = None
    max_frames: Optional[int] = None
    record: bool = False  # keep prefill embeddings and logits in the result (debugging, parity tests)


class Engine:
    def __init__(
        self,
        cfg: ModelConfig,
        talker: Talker,
        decoder: SpeechDecoder,
        tokenizer: TextTokenizer,
        state: Optional[dict] = None,
        codec_state: Optional[dict] = None,
        slots: int = 2,
        max_len: int = 2048,
        guard: RunawayGuard = RunawayGuard(),
        chunk_policy: ChunkPolicy = ChunkPolicy(),
        quantize: str = "none",
        trace: bool = False,
        trace_predictor: Optional[bool] = None,
        plan: Optional[ComputePlan] = None,
    ) -> None:
        self.config = cfg
        self.quantize = quantize  # weight format of the talker and code predictor (see quant.py)
        self.plan = plan  # what load() chose for this hardware (policy.py); None when built by hand
        self.codec_dtype = plan.codec_dtype if plan is not None else talker.dtype
        self.talker = talker
        self.decoder = decoder
        self.device = talker.device
        self.dtype = talker.dtype
        self.chunk_policy = chunk_policy
        self._state = state  # Base-model encoders load lazily, from here or from a fresh map of the file
        self._codec_state = codec_state
        self._speaker_encoder = None
        self._speech_encoder = None
        self.builder = PromptBuilder(cfg, talker, tokenizer)
        self.runner = ModelRunner(cfg, talker, slots, max_len, guard, trace=trace)
        if trace_predictor is not None:
            talker.code_predictor.trace = trace_predictor
        self.scheduler = Scheduler(self.runner, self.builder, decoder)

    # -- loading ---------------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        model: str | Path,
        *,
        device: Optional[str] = "auto",
        dtype: str | torch.dtype = "auto",
        slots: int = 2,
        max_len: int = 2048,
        cache_dir: Optional[str | Path] = None,
        local_files_only: bool = False,
        revision: Optional[str] = None,
        guard: RunawayGuard = RunawayGuard(),
        chunk_policy: ChunkPolicy = ChunkPolicy(),
        quantize: str = "none",
        trace: Optional[bool] = None,
    ) -> "Engine":
        """Loads a Qwen3-TTS 12 Hz checkpoint (local directory or Hugging Face id).

        `dtype` and `quantize` ("auto": the fastest mode that passes the quality gates on this hardware, the
        server's default; none (this method's default: unquantized, exact), int8 or int4 for the talker and
        code predictor, computed here from the loaded weights, CPU only) are resolved by engine/policy.py,
        which logs its choice once. `trace`: TorchScript-traced
        decode steps (engine/jit.py): True = talker and code predictor, False = none, None = the code
        predictor on CPU only (tracing the talker costs 10-20 s per new batch size, the predictor ~0.5 s)."""
        kwargs = dict(
            device=device,
            dtype=dtype,
            slots=slots,
            max_len=max_len,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            revision=revision,
            guard=guard,
            chunk_policy=chunk_policy,
            quantize=quantize,
            trace=trace,
        )
        # On a thread of its own, which ends afterwards: loading runs multi-threaded CPU ops, and a caller
        # thread that did so would keep an OpenMP pool for good, halving decode speed (see scheduler.py).
        return _on_fresh_thread(lambda: cls._load(model, **kwargs))

    @classmethod
    def _load(
        cls,
        model: str | Path,
        *,
        device: Optional[str],
        dtype: str | torch.dtype,
        slots: int,
        max_len: int,
        cache_dir: Optional[str | Path],
        local_files_only: bool,
        revision: Optional[str],
        guard: RunawayGuard,
        chunk_policy: ChunkPolicy,
        quantize: str,
        trace: Optional[bool],
    ) -> "Engine":
        started = time.monotonic()
        dev = resolve_device(device)
        plan = compute_plan(dev, dtype, quantize)
        dt, quantize = plan.dtype, plan.quantize
        if slots < 1 or max_len < 16:
            raise ValueError("slots must be >= 1 and max_len >= 16")
        model_dir = resolve_model_dir(
            model, cache_dir=cache_dir, local_files_only=local_files_only, revision=revision
        )
        cfg = ModelConfig.load(model_dir)
        _LOGGER.info("Loading %s (%s, %s)", model_dir.name, cfg.tts_model_type, cfg.tts_model_size)
        log_plan(plan)
        state = load_state_dict(model_dir)
        source = model_dir / "model.safetensors"
        with torch.device("meta"):
            talker = Talker(cfg.talker)
        talker = talker.to_empty(device=dev)
        load_into(talker, state, "talker.", source, dtype=dt, device=dev, keep_dtype=_stored_dtype_keys(plan))
        _reset_rotary(talker)
        talker.eval()
        # Fused, then quantized (or packed), layer by layer, dropping the file pages already rewritten.
        prepare_talker(talker, quantize, file_storages(state.values()), int8_kernel=plan.int8_kernel)
        # Rewritten weights no longer need the file's pages; the text embedding is re-mapped lazily.
        release_file_pages(talker, state, "talker.", model_dir, remap=("model.text_embedding.weight",))
        del state
        codec_dir = model_dir / "speech_tokenizer"
        codec_state = load_state_dict(codec_dir)
        decoder = SpeechDecoder.from_config(cfg.codec_decoder_config)
        load_into(
            decoder,
            codec_state,
            "decoder.",
            codec_dir / "model.safetensors",
            dtype=plan.codec_dtype,
            device=dev,
        )
        decoder.eval()
        tokenizer = TextTokenizer(model_dir)
        engine = cls(
            cfg,
            talker,
            decoder,
            tokenizer,
            codec_state=codec_state if cfg.tts_model_type == "base" else None,
            slots=slots,
            max_len=max_len,
            guard=guard,
            chunk_policy=chunk_policy,
            quantize=quantize,
            trace=bool(trace),
            trace_predictor=tracing_default(dev) if trace is None else trace,
            plan=plan,
        )
        trim_heap()
        _LOGGER.info(
            "Model ready in %.1f s (%d KV slots x %d tokens)", time.monotonic() - started, slots, max_len
        )
        return engine

    # -- facts ------------------------------------------------------------------------------------------
    @property
    def model_type(self) -> str:
        return self.config.tts_model_type

    @property
    def languages(self) -> list[str]:
        return self.config.supported_languages

    @property
    def speakers(self) -> list[str]:
        return self.config.supported_speakers

    sample_rate = SAMPLE_RATE

    # -- speech -----------------------------------------------------------------------------------------
    def submit(self, request: SpeechRequest) -> SpeechStream:
        """Queues a request; validation errors (unknown speaker/language, bad sampling values, a voice the
        model cannot use) raise ValueError here, before anything runs."""
        if not isinstance(request.text, str) or not request.text.strip():
            raise ValueError("text is empty")
        self.builder.check(request.speaker, request.instruct, request.voice)
        self.builder.language_id(request.language, request.speaker)
        params = request.sampling.resolve(self.config.generation)
        if request.max_frames is not None and request.max_frames < 1:
            raise ValueError("max_frames must be >= 1")
        job = _Job(
            stream=SpeechStream(),
            text=request.text,
            language=request.language,
            speaker=request.speaker,
            instruct=request.instruct,
            voice=request.voice,
            non_streaming=request.non_streaming_text,
            params=params,
            policy=request.chunk_policy or self.chunk_policy,
            max_frames=request.max_frames,
            record=request.record,
        )
        return self.scheduler.submit(job)

    def synthesize(self, request: SpeechRequest, timeout: Optional[float] = None) -> SpeechResult:
        """Blocking convenience: the whole utterance at once."""
        return self.submit(request).result(timeout)

    # -- voice cloning (Base models) ------------------------------------------------------------------------
    def create_voice_prompt(
        self, audio: Any, ref_text: Optional[str] = None, x_vector_only: bool = False
    ) -> VoicePrompt:
        """x-vector (and, unless x_vector_only, reference codes for in-context cloning) from a reference clip:
        a path, file bytes, base64 or (array, sample_rate). ICL needs the clip's transcript `ref_text`."""
        if self.model_type != "base":
            raise ValueError(f"voice cloning needs a Base model; this one is {self.model_type}")
        if not x_vector_only and not (ref_text and ref_text.strip()):
            raise ValueError(
                "ref_text (the transcript of the reference audio) is required unless x_vector_only"
            )
        wave, sr = load_audio(audio)
        wave = resample(wave, sr, SAMPLE_RATE) if sr != SAMPLE_RATE else wave

        def extract() -> VoicePrompt:
            spk = self._speaker().embed(wave)
            codes = None if x_vector_only else self._encoder().encode(wave).to(torch.long)
            return VoicePrompt(
                speaker_embedding=spk, ref_codes=codes, ref_text=None if x_vector_only else ref_text
            )

        return self.scheduler.call(extract).result()

    def _speaker(self):
        if self._speaker_encoder is None:
            from .speaker import SpeakerEncoder

            enc = SpeakerEncoder.from_config(self.config.speaker_encoder)
            state = self._state if self._state is not None else load_state_dict(self.config.model_dir)
            load_into(
                enc,
                state,
                "speaker_encoder.",
                self.config.model_dir / "model.safetensors",
                dtype=self.codec_dtype,
                device=self.device,
            )
            self._speaker_encoder = enc.eval()
        return self._speaker_encoder

    def _encoder(self):
        if self._speech_encoder is None:
            from .codec.encoder import SpeechEncoder

            codec = self.config.codec
            enc = SpeechEncoder.from_config(
                self.config.codec_encoder_config,
                valid_num_quantizers=int(codec.get("encoder_valid_num_quantizers", 16)),
                downsample_rate=int(codec.get("encode_downsample_rate", 1920)),
            )
            load_into(
                enc,
                self._codec_state,
                "encoder.",
                self.config.model_dir / "speech_tokenizer" / "model.safetensors",
                device=self.device,
            )
            self._speech_encoder = enc.eval()
        return self._speech_encoder

    def close(self) -> None:
        self.scheduler.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


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
    load peak by ~2 GB (0.6B) for numbers that are the same (bf16 -> fp32 is lossless)."""
    if plan.device.type != "cpu" or plan.dtype != torch.float32:
        return ()
    keys = ("model.text_embedding.weight",)
    if plan.quantize != "none":
        keys += (
            "model.layers.*_proj.weight",
            "code_predictor.model.layers.*_proj.weight",
            "codec_head.weight",
            "code_predictor.lm_head.*",
        )
    return keys


def _reset_rotary(module: torch.nn.Module) -> None:
    """Non-persistent RoPE buffers are not in the checkpoint; recompute them after meta-device init."""
    from .layers import Rotary

    for sub in module.modules():
        if isinstance(sub, Rotary):
            head_dim = sub.inv_freq.shape[0] * 2
            fresh = Rotary(head_dim, sub.theta)
            sub.inv_freq = fresh.inv_freq.to(sub.inv_freq.device)
            sub.reset()
