"""Produce the golden tensors in tests/goldens/ with the official qwen-tts 0.1.1 package.

Run ONLY in the isolated reference environment, from the repository root:

    /work/refvenv/bin/python tests/reference/make_goldens.py [--out tests/goldens]

It builds the three tiny checkpoints with tests/fixtures/checkpoint_builder.py (seed 0, float32, exactly
what the test-suite fixtures build; their sha256 go to goldens/manifest.json), loads them with
``Qwen3TTSModel.from_pretrained(dtype=float32, device_map="cpu", attn_implementation="sdpa")`` and calls the
PUBLIC API while forward hooks record the intermediate tensors. See tests/goldens/README.md for the keys.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.fixtures.checkpoint_builder import build_checkpoint  # noqa: E402

_LOGGER = logging.getLogger(__name__)

TEXT = "Hello world, this is a small test."
REF_TEXT = "This is the reference transcript of the voice, read slowly and clearly."
GREEDY = dict(do_sample=False, subtalker_dosample=False, max_new_tokens=16)
REF_CLIP_24K = [24000, 0]  # [sample rate, numpy seed] of reference_audio(2.0, sr, seed)
# "See you." (Sohee, Korean) is the second batch row because it hits EOS after 4 frames on the tiny seed-0
# checkpoint ("Short." never stops within 15 frames), so the early-stop truncation is exercised.
BATCH_SECOND_TEXT = "See you."


def reference_audio(seconds: float, sr: int, seed: int) -> np.ndarray:
    """Gaussian noise, sigma 0.1, float32 (numpy default_rng(seed))."""
    return np.random.default_rng(seed).normal(0.0, 0.1, int(seconds * sr)).astype(np.float32)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _np(x: torch.Tensor) -> np.ndarray:
    x = x.detach().cpu()
    return x.numpy().astype(np.int32) if not x.is_floating_point() else x.float().numpy()


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return f"<tensor {tuple(v.shape)}>"
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


class Recorder:
    """Hooks on one loaded Qwen3TTSModel; `run(fn)` returns the tensors captured during fn()."""

    def __init__(self, tts: Any) -> None:
        self.tts = tts
        self.model = tts.model
        self.rec: dict[str, Any] = {}
        self.cp_frames = 2  # code-predictor logits are kept for the first frames only (size)
        talker = self.model.talker
        talker.model.register_forward_pre_hook(self._talker_model_pre, with_kwargs=True)
        talker.codec_head.register_forward_hook(self._codec_head)
        for j, head in enumerate(talker.code_predictor.lm_head):
            head.register_forward_hook(self._make_cp_hook(j))
        if self.model.speaker_encoder is not None:
            self.model.speaker_encoder.register_forward_pre_hook(self._speaker_pre)
        self._wrap(self.model, "generate", self._model_generate)
        self._wrap(talker, "generate", self._talker_generate)
        if self.model.speaker_encoder is not None:
            self._wrap(self.model, "extract_speaker_embedding", self._extract_spk)
        self._wrap(self.model.speech_tokenizer.model, "encode", self._codec_encode)

    @staticmethod
    def _wrap(obj: Any, name: str, hook: Callable) -> None:
        original = getattr(obj, name)
        setattr(obj, name, lambda *a, **kw: hook(original, *a, **kw))

    # --- hooks -------------------------------------------------------------------------------------
    def _talker_model_pre(self, module: Any, args: tuple, kwargs: dict) -> None:
        emb, mask, pos = kwargs.get("inputs_embeds"), kwargs.get("attention_mask"), kwargs.get("position_ids")
        if emb.shape[1] > 1 and "prefill_inputs_embeds" not in self.rec:
            self.rec["prefill_inputs_embeds"] = _np(emb)
            self.rec["prefill_attention_mask"] = _np(mask)
            assert all(torch.equal(pos[0], pos[i]) for i in range(pos.shape[0])), "MRoPE rows differ"
            self.rec["prefill_position_ids"] = _np(pos[0])
        elif emb.shape[1] == 1:
            assert all(torch.equal(pos[0], pos[i]) for i in range(pos.shape[0])), "MRoPE rows differ"
            self.rec.setdefault("_decode_pos", []).append(_np(pos[0][:, 0]))
            self.rec.setdefault("_decode_inputs", []).append(_np(emb[:, 0]))

    def _codec_head(self, module: Any, inputs: tuple, output: torch.Tensor) -> None:
        hidden = inputs[0]
        if hidden.shape[1] > 1:
            self.rec["prefill_hidden"] = _np(hidden)
        self.rec.setdefault("_logits", []).append(_np(output[:, -1]))
        self.rec.setdefault("_hidden", []).append(_np(hidden[:, -1]))

    def _make_cp_hook(self, j: int) -> Callable:
        def hook(module: Any, inputs: tuple, output: torch.Tensor) -> None:
            frames = self.rec.setdefault("_cp", [])
            if j == 0:
                frames.append([])
            if len(frames) <= self.cp_frames:
                frames[-1].append(_np(output[:, -1]))

        return hook

    def _speaker_pre(self, module: Any, args: tuple) -> None:
        self.rec.setdefault("_mels", []).append(_np(args[0]))

    def _extract_spk(self, original: Callable, audio: np.ndarray, sr: int) -> torch.Tensor:
        self.rec.setdefault("_spk_audio", []).append(np.asarray(audio, dtype=np.float32))
        return original(audio=audio, sr=sr)

    def _codec_encode(self, original: Callable, input_values: torch.Tensor, padding_mask: torch.Tensor, **kw):
        self.rec.setdefault("_codec_inputs", []).append((_np(input_values), _np(padding_mask)))
        return original(input_values, padding_mask, **kw)

    def _model_generate(self, original: Callable, **kwargs: Any):
        for key in ("input_ids", "instruct_ids", "ref_ids"):
            for i, ids in enumerate(kwargs.get(key) or []):
                if ids is not None:
                    self.rec[f"{key}_{i}"] = _np(ids[0])
        prompt = kwargs.get("voice_clone_prompt")
        if prompt is not None:
            for i, code in enumerate(prompt.get("ref_code") or []):
                if code is not None:
                    self.rec[f"ref_code_{i}"] = _np(code)
            for i, emb in enumerate(prompt.get("ref_spk_embedding") or []):
                self.rec[f"ref_spk_embedding_{i}"] = _np(emb)
        self.rec["model_generate_kwargs"] = {
            k: _jsonable(v) for k, v in kwargs.items() if k not in ("input_ids", "instruct_ids", "ref_ids")
        }
        codes, hiddens = original(**kwargs)
        for i, c in enumerate(codes):
            self.rec[f"codes_{i}"] = _np(c)
        return codes, hiddens

    def _talker_generate(self, original: Callable, **kwargs: Any):
        self.rec["talker_generate_kwargs"] = {
            k: _jsonable(v) for k, v in kwargs.items() if not isinstance(v, torch.Tensor)
        }
        self.rec["trailing_text_hidden"] = _np(kwargs["trailing_text_hidden"])
        self.rec["tts_pad_embed"] = _np(kwargs["tts_pad_embed"].reshape(-1))
        result = original(**kwargs)
        self.rec["talker_sequences"] = _np(result.sequences)
        raw = [hid[-1] for hid in result.hidden_states if hid[-1] is not None]
        self.rec["codes_raw"] = _np(torch.stack(raw, dim=1))
        return result

    # --- driver ------------------------------------------------------------------------------------
    def run(self, fn: Callable[[], Any], cp_frames: int = 2) -> tuple[dict[str, Any], dict[str, Any], Any]:
        self.rec, self.cp_frames = {}, cp_frames
        out = fn()
        rec, arrays = self.rec, {}
        for key, value in list(rec.items()):
            if not key.startswith("_") and isinstance(value, np.ndarray):
                arrays[key] = value
        if "_logits" in rec:
            arrays["talker_logits"] = np.stack(rec["_logits"])  # (steps, B, vocab); step 0 = prefill
            arrays["talker_hidden"] = np.stack(rec["_hidden"])  # (steps, B, H) codec_head input
        if "_decode_pos" in rec:
            arrays["decode_position_ids"] = np.stack(rec["_decode_pos"])  # (steps-1, B)
            arrays["decode_inputs_embeds"] = np.stack(rec["_decode_inputs"])  # (steps-1, B, H)
        if rec.get("_cp"):
            arrays["cp_logits"] = np.stack([np.stack(f) for f in rec["_cp"][:cp_frames]])  # (F, 15, B, 2048)
        meta = {k: rec[k] for k in ("model_generate_kwargs", "talker_generate_kwargs") if k in rec}
        arrays["meta_json"] = np.array(json.dumps(meta, sort_keys=True))
        return arrays, rec, out


def _put_wavs(arrays: dict[str, Any], out: tuple) -> None:
    wavs, sr = out
    for i, w in enumerate(wavs):
        arrays[f"wav_{i}"] = np.asarray(w, dtype=np.float32)
    arrays["sample_rate"] = np.array(sr, dtype=np.int32)


# name -> (model type, public API method, call kwargs, seed, code-predictor frames kept). The kwargs are
# stored in case_json (the reference clip as "ref_audio": [sr, seed]) so tests need not repeat them.
_SAMPLED_PARAMS = dict(
    temperature=0.7,
    top_k=20,
    top_p=0.8,
    repetition_penalty=1.2,
    subtalker_temperature=0.6,
    subtalker_top_k=10,
    subtalker_top_p=0.9,
)
CASES: dict[str, tuple[str, str, dict[str, Any], int, int]] = {
    "cv_greedy_lang_spk": (
        "custom_voice",
        "generate_custom_voice",
        dict(text=TEXT, speaker="Ryan", language="English", **GREEDY),
        0,
        2,
    ),
    "cv_greedy_auto_dialect_instruct": (
        "custom_voice",
        "generate_custom_voice",
        dict(text=TEXT, speaker="Dylan", language="Auto", instruct="Speak warmly.", **GREEDY),
        0,
        1,
    ),
    "cv_greedy_streaming_text": (
        "custom_voice",
        "generate_custom_voice",
        dict(text=TEXT, speaker="Vivian", language="Chinese", non_streaming_mode=False, **GREEDY),
        0,
        1,
    ),
    "cv_greedy_batch2": (
        "custom_voice",
        "generate_custom_voice",
        dict(
            text=[TEXT, BATCH_SECOND_TEXT],
            speaker=["Ryan", "Sohee"],
            language=["English", "Korean"],
            **GREEDY,
        ),
        0,
        1,
    ),
    "cv_sampled_seed1234": (
        "custom_voice",
        "generate_custom_voice",
        dict(text=TEXT, speaker="Ryan", language="English", max_new_tokens=16),
        1234,
        1,
    ),
    "cv_sampled_params_seed77": (
        "custom_voice",
        "generate_custom_voice",
        dict(
            text=TEXT,
            speaker="Ryan",
            language="English",
            max_new_tokens=16,
            do_sample=True,
            subtalker_dosample=True,
            **_SAMPLED_PARAMS,
        ),
        77,
        1,
    ),
    "vd_greedy": (
        "voice_design",
        "generate_voice_design",
        dict(text=TEXT, instruct="A calm deep male voice.", language="English", **GREEDY),
        0,
        2,
    ),
    "base_xvec_greedy": (
        "base",
        "generate_voice_clone",
        dict(text=TEXT, language="English", ref_audio=REF_CLIP_24K, x_vector_only_mode=True, **GREEDY),
        0,
        1,
    ),
    "base_icl_greedy_streaming_text": (
        "base",
        "generate_voice_clone",
        dict(text=TEXT, language="English", ref_audio=REF_CLIP_24K, ref_text=REF_TEXT, **GREEDY),
        0,
        2,
    ),
    "base_icl_greedy_non_streaming": (
        "base",
        "generate_voice_clone",
        dict(
            text=TEXT,
            language="English",
            ref_audio=REF_CLIP_24K,
            ref_text=REF_TEXT,
            non_streaming_mode=True,
            **GREEDY,
        ),
        0,
        1,
    ),
}


def _cases(tts: dict[str, Any], rec: dict[str, Recorder]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name, (model_type, method, kwargs, seed, cp_frames) in CASES.items():
        call_kwargs = dict(kwargs)
        if "ref_audio" in call_kwargs:
            sr, clip_seed = call_kwargs["ref_audio"]
            call_kwargs["ref_audio"] = (reference_audio(2.0, sr, clip_seed), sr)
        api = getattr(tts[model_type], method)

        def call(api: Callable = api, call_kwargs: dict = call_kwargs, seed: int = seed) -> Any:
            torch.manual_seed(seed)
            return api(**call_kwargs)

        arrays, _, out = rec[model_type].run(call, cp_frames)
        _put_wavs(arrays, out)
        case = {"model": model_type, "api": method, "kwargs": kwargs, "seed": seed}
        arrays["case_json"] = np.array(json.dumps(case, sort_keys=True))
        results[name] = arrays
        _LOGGER.info("%s: %s", name, {k: v.shape for k, v in arrays.items() if k.startswith("codes")})
    results["base_prompt"] = _base_prompt(tts["base"], rec["base"])
    return results


def _base_prompt(base: Any, recorder: Recorder) -> dict[str, Any]:
    """create_voice_clone_prompt on a 24 kHz clip and on a 16 kHz clip (resampling path)."""
    arrays: dict[str, Any] = {}
    for tag, sr, seed in (("24k", 24000, 0), ("16k", 16000, 1)):
        wav = reference_audio(2.0, sr, seed)
        _, rec, items = recorder.run(
            lambda: base.create_voice_clone_prompt(ref_audio=(wav, sr), ref_text=REF_TEXT)
        )
        # The raw clip is not stored: reference_audio(2.0, sr, seed) regenerates it exactly.
        arrays[f"ref_code_{tag}"] = _np(items[0].ref_code)
        arrays[f"xvector_{tag}"] = _np(items[0].ref_spk_embedding)
        arrays[f"mel_{tag}"] = rec["_mels"][0]  # (1, frames, 128): speaker-encoder input
        spk_audio = rec["_spk_audio"][0]
        codec_in, codec_mask = rec["_codec_inputs"][0]
        assert codec_mask.all(), "single clip: no padding expected"
        if sr != 24000:  # the librosa-resampled 24 kHz audio (identical for both encoders)
            arrays[f"resampled_{tag}"] = spk_audio
        ref = wav if sr == 24000 else spk_audio
        assert np.array_equal(spk_audio, ref) and np.array_equal(codec_in[0], ref), "encoder inputs differ"
    arrays["case_json"] = np.array(
        json.dumps(
            {"model": "base", "ref_text": REF_TEXT, "clips": {"24k": [24000, 0], "16k": [16000, 1]}},
            sort_keys=True,
        )
    )
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "goldens")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(2)

    from qwen_tts import Qwen3TTSModel  # only available in the reference environment

    args.out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "builder": {"preset": "tiny", "seed": 0, "dtype": "float32"},
        "checkpoints": {},
    }
    tts, rec = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for model_type in ("custom_voice", "base", "voice_design"):
            path = build_checkpoint(Path(tmp) / model_type, model_type, "tiny", seed=0, dtype="float32")
            manifest["checkpoints"][model_type] = {
                str(p.relative_to(path)): sha256(p) for p in sorted(path.rglob("*")) if p.is_file()
            }
            tts[model_type] = Qwen3TTSModel.from_pretrained(
                str(path), dtype=torch.float32, device_map="cpu", attn_implementation="sdpa"
            )
            rec[model_type] = Recorder(tts[model_type])
        results = _cases(tts, rec)

    for old in args.out.glob("*.npz"):
        old.unlink()
    for name, arrays in results.items():
        np.savez_compressed(args.out / f"{name}.npz", **arrays)
    manifest["cases"] = sorted(results)
    manifest["versions"] = {
        pkg: metadata.version(pkg)
        for pkg in ("qwen-tts", "torch", "transformers", "numpy", "librosa", "soxr")
    }
    manifest["command"] = "/work/refvenv/bin/python tests/reference/make_goldens.py"
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    _LOGGER.info("wrote %d cases to %s", len(results), args.out)


if __name__ == "__main__":
    main()
