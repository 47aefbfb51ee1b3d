"""`Engine`: load a checkpoint once, submit requests, stream PCM chunks (see engine/__init__.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import torch

from ..core.audio import SAMPLE_RATE
from .audio import load_audio, resample
from .checkpoint import load_into, load_state_dict
from .codec.decoder import SpeechDecoder
from .config import ModelConfig
from .loading import load_engine
from .options import LoadOptions
from .policy import ComputePlan
from .prompt import PromptBuilder, VoicePrompt
from .request import ChunkPolicy, SpeechRequest
from .runner import ModelRunner, RunawayGuard
from .sampling import SamplingParams
from .scheduler import Scheduler
from .sequence import Sequence
from .stream import SpeechResult, SpeechStream
from .talker import Talker
from .text import TextTokenizer
from .threads import ThreadGovernor


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
        adaptive_threads: bool = False,
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
        cpu = self.device.type == "cpu"
        governor = ThreadGovernor() if adaptive_threads and cpu else None
        self.scheduler = Scheduler(self.runner, self.builder, decoder, governor)

    # -- loading ---------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, model: str | Path, options: Optional[LoadOptions] = None, **kwargs: Any) -> "Engine":
        """Loads a Qwen3-TTS 12 Hz checkpoint (local directory or Hugging Face id). Options: a `LoadOptions`
        and/or its fields as keywords (device, dtype, slots, max_len, cache_dir, local_files_only, revision,
        guard, chunk_policy, quantize, trace); keywords win."""
        return load_engine(cls, model, LoadOptions.of(options, **kwargs))

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
    def submit(self, request: SpeechRequest, keep: bool = False) -> SpeechStream:
        """Queues a request; validation errors (unknown speaker/language, bad sampling values, a voice the
        model cannot use) raise ValueError here, before anything runs. `keep`: also keep the whole
        utterance (audio and codes) for `stream.result()`; a streaming caller leaves it off."""
        if not isinstance(request.text, str) or not request.text.strip():
            raise ValueError("text is empty")
        self.builder.check(request.speaker, request.instruct, request.voice)
        self.builder.language_id(request.language, request.speaker)
        params = request.sampling.resolve(self.config.generation)
        if request.max_frames is not None and request.max_frames < 1:
            raise ValueError("max_frames must be >= 1")
        keep = keep or request.record
        seq = Sequence(
            request=request,
            params=params,
            policy=request.chunk_policy or self.chunk_policy,
            stream=SpeechStream(keep=keep),
            keep=keep,
        )
        return self.scheduler.submit(seq)

    def synthesize(self, request: SpeechRequest, timeout: Optional[float] = None) -> SpeechResult:
        """Blocking convenience: the whole utterance at once."""
        return self.submit(request, keep=True).result(timeout)

    def warm_up(self, speaker: Optional[str] = None) -> float:
        """One short synthesis, so the first real request meets warm kernels and caches; returns seconds."""
        started = time.monotonic()
        kwargs: dict[str, Any] = {}
        if self.model_type == "custom_voice":
            kwargs["speaker"] = speaker or self.speakers[0]
        elif self.model_type == "voice_design":
            kwargs["instruct"] = "A calm, clear voice."
        else:  # Base: a neutral x-vector-only prompt
            size = self.talker.hidden_size
            kwargs["voice"] = VoicePrompt(
                speaker_embedding=torch.zeros(size, dtype=self.dtype, device=self.device)
            )
        request = SpeechRequest("Ready.", sampling=SamplingParams(max_new_tokens=4, seed=0), **kwargs)
        self.synthesize(request, timeout=600)
        return time.monotonic() - started

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
