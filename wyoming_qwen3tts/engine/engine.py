"""`Engine`: load a checkpoint once, submit requests, stream PCM chunks (see engine/__init__.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import torch

from ..core.audio import SAMPLE_RATE
from .audio import load_audio, resample
from .checkpoint import load_into, load_state_dict
from .loading import LoadedModel, load_engine
from .options import LoadOptions
from .policy import ComputePlan
from .prompt import PromptBuilder, VoicePrompt
from .request import SpeechRequest
from .runner import ModelRunner
from .sampling import SamplingParams
from .scheduler import Scheduler
from .sequence import Sequence
from .stream import SpeechResult, SpeechStream
from .threads import ThreadGovernor


class Engine:
    """Built from the loaded model, its one `ComputePlan` (dtype, weight format, tracing: policy.py) and the
    `LoadOptions` that size it (slots, max_len, guard, chunk policy, adaptive threads); `Engine.load` makes
    all three."""

    def __init__(self, model: LoadedModel, plan: ComputePlan, options: LoadOptions = LoadOptions()) -> None:
        cfg, talker = model.config, model.talker
        self.config = cfg
        self.plan = plan  # what load() chose for this hardware
        self.talker = talker
        self.decoder = model.decoder
        self.device = talker.device
        self.dtype = talker.dtype
        self.chunk_policy = options.chunk_policy
        self._codec_state = model.codec_state  # Base: the speech encoder loads lazily from here
        self._speaker_encoder = None
        self._speech_encoder = None
        self.builder = PromptBuilder(cfg, talker, model.tokenizer)
        self.runner = ModelRunner(cfg, talker, plan, options.slots, options.max_len)
        governor = ThreadGovernor() if options.adaptive_threads and self.device.type == "cpu" else None
        self.scheduler = Scheduler(self.runner, self.builder, self.decoder, options.guard, governor)

    @property
    def quantize(self) -> str:
        """Weight format of the talker and code predictor (none, int8, int4; see quant.py)."""
        return self.plan.quantize

    @property
    def codec_dtype(self) -> torch.dtype:
        return self.plan.codec_dtype

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
            load_into(
                enc,
                load_state_dict(self.config.model_dir),
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
