"""Reference side of bench_engine.py; runs inside the qwen-tts 0.1.1 environment only.

    .venv-ref/bin/python bench/reference_bench.py MODEL_DIR DTYPE FRAMES THREADS TEXT

Prints one JSON line. ms/frame is the talker + code-predictor time (the model's `generate`) per frame;
the reference cannot stream, so its time to first audio is the whole request.
"""

import json
import sys
import time

import torch
from qwen_tts import Qwen3TTSModel


def main() -> None:
    model_dir, dtype, frames, threads, text = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        int(sys.argv[4]),
        sys.argv[5],
    )
    torch.set_num_threads(threads)
    t0 = time.monotonic()
    tts = Qwen3TTSModel.from_pretrained(
        model_dir, dtype=getattr(torch, dtype), device_map="cpu", attn_implementation="sdpa"
    )
    load = time.monotonic() - t0
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


if __name__ == "__main__":
    main()
