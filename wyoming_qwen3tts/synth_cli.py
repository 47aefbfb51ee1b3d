"""`python -m wyoming_qwen3tts synth ...`: one WAV file from the engine (for users and debugging)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from .core.audio import wav_header
from .core.files import atomic_write_bytes
from .core.vocab import QUANTIZE_CHOICES

_LOGGER = logging.getLogger("wyoming_qwen3tts.synth")


def build_parser(parser: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="python -m wyoming_qwen3tts synth")
    p.add_argument("--model", required=True, help="checkpoint directory or Hugging Face id")
    p.add_argument("--text", required=True, help="text to speak ('-' reads standard input)")
    voice = p.add_argument_group("voice")
    voice.add_argument("--speaker", help="built-in speaker (CustomVoice models)")
    voice.add_argument(
        "--instruct", help="voice description (VoiceDesign) or style instruction (CustomVoice 1.7B)"
    )
    voice.add_argument("--ref-audio", help="reference clip to clone (Base models)")
    voice.add_argument("--ref-text", help="transcript of the reference clip (in-context cloning)")
    voice.add_argument("--xvector-only", action="store_true", help="clone from the speaker embedding alone")
    p.add_argument("--language", default="auto", help="language name or 'auto' (default)")
    sampling = p.add_argument_group("sampling (defaults: the model's generation_config.json)")
    sampling.add_argument("--greedy", action="store_true", help="deterministic argmax decoding")
    sampling.add_argument("--seed", type=int, help="random seed for reproducible sampling")
    sampling.add_argument("--temperature", type=float)
    sampling.add_argument("--top-k", type=int)
    sampling.add_argument("--top-p", type=float)
    sampling.add_argument("--repetition-penalty", type=float)
    sampling.add_argument("--max-new-tokens", type=int, help="codebook-0 tokens to generate at most")
    p.add_argument("--max-frames", type=int, help="stop after this many 80 ms frames")
    text_mode = p.add_mutually_exclusive_group()
    text_mode.add_argument(
        "--streaming-text",
        dest="non_streaming",
        action="store_false",
        default=None,
        help="feed the text one token per frame",
    )
    text_mode.add_argument(
        "--non-streaming-text",
        dest="non_streaming",
        action="store_true",
        help="put the whole text in the prompt",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (ROCm GPUs are 'cuda' too)")
    p.add_argument(
        "--dtype",
        default="auto",
        help="auto (bf16 on GPUs and CPUs with native bf16, else fp32), float32, bfloat16, float16",
    )
    p.add_argument(
        "--quantize",
        default="auto",
        choices=QUANTIZE_CHOICES,
        help="weights of the talker and code predictor (CPU): auto (int8 where the CPU has a fast int8 "
        "kernel), none, int8, int4 (experimental, AVX-512 only)",
    )
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--cache-dir", help="Hugging Face cache directory for downloads")
    p.add_argument("--local-files-only", action="store_true", help="never download; use the local cache only")
    p.add_argument("--out", required=True, help="output WAV file (24 kHz mono 16-bit)")
    p.add_argument("--codes-out", help="also save the codes as an int64 .npy array of shape frames x 16")
    p.add_argument("--debug", action="store_true", help="debug logging")
    return p


def write_wav(path: Path, pcm: bytes, sample_rate: int) -> None:
    """Atomic: a half-written WAV never replaces a good one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, wav_header(len(pcm), rate=sample_rate) + pcm, mode=None)


def run(args: argparse.Namespace) -> int:
    import torch

    from .engine import Engine, SamplingParams, SpeechRequest

    if args.threads:
        torch.set_num_threads(args.threads)
    text = sys.stdin.read() if args.text == "-" else args.text
    sampling = SamplingParams(
        do_sample=False if args.greedy else None,
        subtalker_do_sample=False if args.greedy else None,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    engine = Engine.load(
        args.model,
        device=args.device,
        dtype=args.dtype,
        slots=1,
        cache_dir=args.cache_dir,
        local_files_only=args.local_files_only,
        quantize=args.quantize,
    )
    try:
        voice = None
        if args.ref_audio:
            voice = engine.create_voice_prompt(args.ref_audio, args.ref_text, x_vector_only=args.xvector_only)
        request = SpeechRequest(
            text=text,
            language=args.language,
            speaker=args.speaker,
            instruct=args.instruct,
            voice=voice,
            sampling=sampling,
            non_streaming_text=args.non_streaming,
            max_frames=args.max_frames,
        )
        started = time.monotonic()
        result = engine.synthesize(request)
        elapsed = time.monotonic() - started
    finally:
        engine.close()
    write_wav(Path(args.out), result.pcm, result.sample_rate)
    if args.codes_out:
        np.save(args.codes_out, result.codes.astype(np.int64))
    frames = len(result.codes)
    _LOGGER.info(
        "%s: %.2f s of audio (%d frames) in %.2f s, %.2fx real time, first audio after %.2f s%s",
        args.out,
        result.seconds,
        frames,
        elapsed,
        result.seconds / elapsed if elapsed > 0 else 0.0,
        result.time_to_first_audio or 0.0,
        " (TRUNCATED: hit the length bound)" if result.truncated else "",
    )
    return 0
