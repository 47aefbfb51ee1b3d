"""Reference side of bench_engine.py and bench_cpu.py; runs inside the qwen-tts 0.1.1 environment only.

    .venv-ref/bin/python bench/reference_bench.py MODEL_DIR DTYPE FRAMES THREADS TEXT
    .venv-ref/bin/python bench/reference_bench.py --worker MODEL_DIR DTYPE FRAMES THREADS TEXT

The first form prints one JSON line: ms/frame is the talker + code-predictor time (the model's `generate`)
per frame; the reference cannot stream, so its time to first audio is the whole request.

`--worker` (bench_cpu.py) loads once, prints one JSON line, then answers each `run` line on stdin with one
JSON line: the same request with EOS masked (exactly FRAMES frames) and timers on the talker transformer
(first call = prefill, the others = one step each), the code predictor's `generate` (one frame each) and the
speech decoder. `quit` ends it.
"""

import json
import resource
import statistics
import sys
import time

import numpy as np
import torch
from qwen_tts import Qwen3TTSModel


def _peak_rss_mb():
    """VmHWM of this process (ru_maxrss would include the parent's peak: Linux keeps it over fork/exec)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load(model_dir, dtype, threads):
    torch.set_num_threads(threads)
    t0 = time.monotonic()
    tts = Qwen3TTSModel.from_pretrained(
        model_dir, dtype=getattr(torch, dtype), device_map="cpu", attn_implementation="sdpa"
    )
    return tts, time.monotonic() - t0


def main() -> None:
    model_dir, dtype, frames, threads, text = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        int(sys.argv[4]),
        sys.argv[5],
    )
    tts, load = _load(model_dir, dtype, threads)
    timing = {}
    inner = tts.model.generate

    def timed_generate(*a, **kw):
        start = time.monotonic()
        out = inner(*a, **kw)
        timing["generate"] = time.monotonic() - start
        timing["frames"] = int(out[0][0].shape[0])
        return out

    tts.model.generate = timed_generate
    kwargs = dict(speaker="Ryan", language="English", do_sample=False, subtalker_dosample=False)
    tts.generate_custom_voice(text=text, max_new_tokens=3, **kwargs)  # warm-up
    start = time.monotonic()
    wavs, sr = tts.generate_custom_voice(text=text, max_new_tokens=frames + 1, **kwargs)
    total = time.monotonic() - start
    made = timing["frames"]
    print(
        json.dumps(
            {
                "engine": "reference",
                "dtype": dtype,
                "frames": made,
                "load_s": load,
                "ms_per_frame": 1000 * timing["generate"] / made,
                "x_real_time": (len(wavs[0]) / sr) / total,
                "ttfa_s": total,
                "total_s": total,
            }
        )
    )


class _Timed:
    """Wraps a bound method, recording wall times (and a per-call frame count) in `log`."""

    def __init__(self, log, key, fn, frames=None):
        self.log, self.key, self.fn, self.frames = log, key, fn, frames

    def __call__(self, *a, **kw):
        start = time.perf_counter()
        out = self.fn(*a, **kw)
        n = self.frames(*a, **kw) if self.frames else 1
        self.log.setdefault(self.key, []).append((time.perf_counter() - start, n))
        return out


def _median_ms(log, key, skip=0):
    values = [1000 * t / max(n, 1) for t, n in log.get(key, [])[skip:]]
    return statistics.median(values) if values else float("nan")


def worker() -> None:
    model_dir, dtype, frames, threads, text = (
        sys.argv[2],
        sys.argv[3],
        int(sys.argv[4]),
        int(sys.argv[5]),
        sys.argv[6],
    )
    tts, load = _load(model_dir, dtype, threads)
    model = tts.model
    talker = model.talker
    eos = model.config.talker_config.codec_eos_token_id
    never = model.config.talker_config.vocab_size - 1  # a suppressed control id: generation never stops
    log = {}
    talker.model.forward = _Timed(log, "talker", talker.model.forward)
    talker.code_predictor.generate = _Timed(log, "predictor", talker.code_predictor.generate)
    tok = model.speech_tokenizer
    tok.decode = _Timed(log, "decode", tok.decode, frames=lambda items, *a, **k: len(items[0]["audio_codes"]))
    inner_generate = talker.generate

    def generate_without_eos(*a, **kw):
        kw["suppress_tokens"] = list(kw.get("suppress_tokens") or []) + [eos]
        return inner_generate(*a, **kw)

    talker.generate = generate_without_eos
    if model.tts_model_type == "base":
        clip = np.random.default_rng(0).normal(0, 0.1, 48000).astype(np.float32)
        prompt = tts.create_voice_clone_prompt(ref_audio=(clip, 24000), x_vector_only_mode=True)

        def say(n):
            return tts.generate_voice_clone(
                text=text, language="English", voice_clone_prompt=prompt, max_new_tokens=n, **kw
            )

    else:

        def say(n):
            return tts.generate_custom_voice(
                text=text, speaker=tts.get_supported_speakers()[0], language="English", max_new_tokens=n, **kw
            )

    kw = dict(do_sample=False, subtalker_dosample=False, eos_token_id=never)
    say(3)  # warm-up
    print(json.dumps({"load_s": load}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        log.clear()
        start = time.perf_counter()
        wavs, sr = say(frames + 1)
        total = time.perf_counter() - start
        made = len(wavs[0]) // 1920
        talker_calls = log.get("talker", [])
        lm = sum(t for t, _ in talker_calls) + sum(t for t, _ in log.get("predictor", []))
        peak = _peak_rss_mb()
        out = {
            "frames": made,
            "prefill_ms": 1000 * talker_calls[0][0] if talker_calls else float("nan"),
            "talker_ms": _median_ms(log, "talker", skip=1),
            "predictor_ms": _median_ms(log, "predictor"),
            "decoder_ms": _median_ms(log, "decode"),
            "lm_ms": _median_ms(log, "talker", skip=1) + _median_ms(log, "predictor"),
            "generate_ms_per_frame": 1000 * lm / max(made, 1),
            "frame_ms": 1000 * total / max(made, 1),
            "x_real_time": (len(wavs[0]) / sr) / total,
            "ttfa_ms": 1000 * total,
            "total_s": total,
            "peak_rss_mb": peak,
        }
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--worker":
        worker()
    else:
        main()
