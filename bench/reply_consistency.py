"""Does one seed per reply keep the sentences of an answer together? (issue 18, "one voice per reply")

    python -m bench.reply_consistency --model Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice --speaker ryan \
        --replies 12 --device cuda

Synthesizes the same multi-sentence replies twice, sentence by sentence as the server does: once with one
seed for every sentence of a reply (what the server does), once with an independent seed per sentence (what
it did before). For every sentence it measures the median pitch (F0, in semitones, voiced frames only), the
loudness (RMS dBFS) and the pace (characters per second of audio); for every reply, the spread (standard
deviation) of each over its sentences. Prints the mean spread per strategy: the smaller, the more the
sentences of one answer sound like one voice.

Needs a trained checkpoint: random weights (the test fixtures, bench/checkpoints/) make noise whose pitch says
nothing. The seeds are fixed, so a rerun on the same machine repeats the numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

from bench.isa import add_isa_argument, apply_isa, isa_report

SAMPLE_RATE = 24000
REPLIES = {
    "english": [
        "The living room lights are off now.",
        "It is twenty-one degrees inside and the heating is running.",
        "Tomorrow will be cloudy with a chance of rain in the afternoon.",
        "I have added milk and bread to your shopping list.",
    ],
    "german": [
        "Das Licht im Wohnzimmer ist jetzt aus.",
        "Drinnen sind es einundzwanzig Grad und die Heizung läuft.",
        "Morgen wird es bewölkt, am Nachmittag kann es regnen.",
        "Ich habe Milch und Brot auf deine Einkaufsliste gesetzt.",
    ],
}


def median_f0(wave: np.ndarray, sr: int = SAMPLE_RATE, fmin: float = 60.0, fmax: float = 400.0) -> float:
    """Median F0 (Hz) of the voiced frames, by normalized autocorrelation (40 ms frames, 10 ms hop); NaN
    when no frame is voiced. Coarse, but the same estimator on both strategies."""
    frame, hop = int(0.04 * sr), int(0.01 * sr)
    lo, hi = int(sr / fmax), int(sr / fmin)
    if wave.shape[0] < frame:
        return float("nan")
    peak_level = float(np.max(np.abs(wave))) or 1.0
    pitches = []
    for start in range(0, wave.shape[0] - frame, hop):
        x = wave[start : start + frame].astype(np.float64)
        x = x - x.mean()
        if np.sqrt(np.mean(x * x)) < 0.05 * peak_level:  # silence or breath
            continue
        spectrum = np.fft.rfft(x, 2 * frame)
        ac = np.fft.irfft(spectrum * np.conj(spectrum))[:frame]
        if ac[0] <= 0:
            continue
        ac = ac / ac[0]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] >= 0.5:  # clearly periodic: voiced
            pitches.append(sr / lag)
    return float(np.median(pitches)) if pitches else float("nan")


def semitones(hz: float) -> float:
    return 12.0 * np.log2(hz / 100.0)


@dataclass
class Sentence:
    f0: float  # semitones re 100 Hz (NaN when unvoiced)
    rms_db: float
    chars_per_s: float


def measure(text: str, wave: np.ndarray) -> Sentence:
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if wave.size else 0.0
    seconds = wave.shape[0] / SAMPLE_RATE
    f0 = median_f0(wave)
    return Sentence(
        f0=semitones(f0) if f0 == f0 else float("nan"),
        rms_db=20 * np.log10(max(rms, 1e-9)),
        chars_per_s=len(text) / seconds if seconds else float("nan"),
    )


def spread(values: list[float]) -> float:
    finite = [v for v in values if v == v]
    return statistics.pstdev(finite) if len(finite) >= 2 else float("nan")


def run(
    engine, speaker: str, language: str, replies: int, seed0: int, sampling=None
) -> dict[str, dict[str, float]]:
    """Mean spread per strategy; ``sampling``: SamplingParams to start from (the model's defaults)."""
    from wyoming_qwen3tts.engine import SamplingParams, SpeechRequest

    base = sampling or SamplingParams()

    texts = REPLIES[language]
    spreads: dict[str, dict[str, list[float]]] = {
        name: {"f0": [], "rms_db": [], "chars_per_s": []} for name in ("per-reply seed", "per-sentence seeds")
    }
    for r in range(replies):
        for strategy in spreads:
            sentences = []
            for k, text in enumerate(texts):
                seed = seed0 + r if strategy == "per-reply seed" else seed0 + 1000 * (r + 1) + k
                params = dataclasses.replace(base, seed=seed)
                request = SpeechRequest(text, speaker=speaker, language=language, sampling=params)
                sentences.append(measure(text, engine.synthesize(request).audio))
            for key in spreads[strategy]:
                spreads[strategy][key].append(spread([getattr(s, key) for s in sentences]))
    return {
        strategy: {
            key: statistics.fmean([v for v in values if v == v] or [float("nan")])
            for key, values in d.items()
        }
        for strategy, d in spreads.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint directory or hub id (a CustomVoice model)")
    parser.add_argument("--speaker", default="ryan")
    parser.add_argument("--language", default="english", choices=sorted(REPLIES))
    parser.add_argument("--replies", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1234, help="first seed (the run repeats exactly)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    add_isa_argument(parser)
    args = parser.parse_args()
    apply_isa(args.isa)
    print(isa_report(args.isa), file=sys.stderr)

    from wyoming_qwen3tts.engine import Engine

    started = time.monotonic()
    engine = Engine.load(args.model, device=args.device, dtype=args.dtype, slots=1, quantize="none")
    try:
        results = run(engine, args.speaker, args.language, args.replies, args.seed)
    finally:
        engine.close()
    print(
        f"# reply consistency: {args.model}, {args.speaker}, {args.language}, {args.replies} replies of "
        f"{len(REPLIES[args.language])} sentences, {platform.machine()}, {time.monotonic() - started:.0f} s"
    )
    print("| strategy | F0 spread (semitones) | loudness spread (dB) | pace spread (chars/s) |")
    print("|---|---|---|---|")
    for strategy, r in results.items():
        print(f"| {strategy} | {r['f0']:.2f} | {r['rms_db']:.2f} | {r['chars_per_s']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
