"""Parity with the reference package qwen-tts 0.1.1 on the same tiny random checkpoints.

The goldens in tests/goldens/ were produced by tests/reference/make_goldens.py through the reference's
public API; the fixtures rebuild byte-identical checkpoints (sha256 checked against the manifest).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import checkpoint_matches_manifest
from tests.fixtures.recorder import recording
from wyoming_qwen3tts.engine import Engine, RunawayGuard, SamplingParams, SpeechRequest, VoicePrompt

TEXT = "Hello world, this is a small test."
REF_TEXT = "This is the reference transcript of the voice, read slowly and clearly."
INSTRUCTS = {"cv_greedy_auto_dialect_instruct": "Speak warmly.", "vd_greedy": "A calm deep male voice."}
BATCH2_TEXTS = [TEXT, "See you."]  # the second row stops at EOS after 4 frames


def _engine(path: Path, kind: str, manifest: dict) -> Engine:
    drifted = checkpoint_matches_manifest(path, kind, manifest)
    assert not drifted, f"fixture files drifted from the goldens: {drifted}"
    torch.set_num_threads(2)
    return Engine.load(path, device="cpu", dtype="float32", slots=2, guard=RunawayGuard(enabled=False))


@pytest.fixture(scope="module")
def engines(tiny_custom_voice, tiny_base, tiny_voice_design, golden_manifest):
    made = {
        "custom_voice": _engine(tiny_custom_voice, "custom_voice", golden_manifest),
        "base": _engine(tiny_base, "base", golden_manifest),
        "voice_design": _engine(tiny_voice_design, "voice_design", golden_manifest),
    }
    yield made
    for engine in made.values():
        engine.close()


def _requests(case: str, g: dict) -> list[SpeechRequest]:
    kw = g["meta"]["model_generate_kwargs"]
    sampling = SamplingParams(
        do_sample=kw["do_sample"],
        temperature=kw["temperature"],
        top_k=kw["top_k"],
        top_p=kw["top_p"],
        repetition_penalty=kw["repetition_penalty"],
        subtalker_do_sample=kw["subtalker_dosample"],
        subtalker_temperature=kw["subtalker_temperature"],
        subtalker_top_k=kw["subtalker_top_k"],
        subtalker_top_p=kw["subtalker_top_p"],
        max_new_tokens=kw["max_new_tokens"],
        seed=g["case"].get("seed") if kw["do_sample"] else None,
    )
    speakers = kw.get("speakers") or [None] * len(kw["languages"])
    texts = BATCH2_TEXTS if case == "cv_greedy_batch2" else [TEXT]
    out = []
    for i, (text, language, speaker) in enumerate(zip(texts, kw["languages"], speakers)):
        voice = None
        if f"ref_spk_embedding_{i}" in g:
            codes = g.get(f"ref_code_{i}")
            voice = VoicePrompt(
                speaker_embedding=torch.from_numpy(g[f"ref_spk_embedding_{i}"]),
                ref_codes=None if codes is None else torch.from_numpy(codes.astype(np.int64)),
                ref_text=None if codes is None else REF_TEXT,
            )
        out.append(
            SpeechRequest(
                text,
                language=language,
                speaker=speaker,
                instruct=INSTRUCTS.get(case),
                voice=voice,
                sampling=sampling,
                non_streaming_text=kw["non_streaming_mode"],
            )
        )
    return out


CASES = [
    ("cv_greedy_lang_spk", "custom_voice"),
    ("cv_greedy_auto_dialect_instruct", "custom_voice"),
    ("cv_greedy_streaming_text", "custom_voice"),
    ("cv_greedy_batch2", "custom_voice"),
    ("cv_sampled_seed1234", "custom_voice"),
    ("cv_sampled_params_seed77", "custom_voice"),
    ("vd_greedy", "voice_design"),
    ("base_xvec_greedy", "base"),
    ("base_icl_greedy_streaming_text", "base"),
    ("base_icl_greedy_non_streaming", "base"),
]


@pytest.mark.parametrize("case, kind", CASES)
def test_matches_reference(engines, golden, case, kind):
    g = golden(case)
    engine = engines[kind]
    requests = _requests(case, g)
    with recording(engine) as recorder:
        streams = [engine.submit(r, keep=True) for r in requests]  # batch2: both rows decode together
        results = [s.result(120) for s in streams]
    prefill = g["prefill_inputs_embeds"]
    for i, res in enumerate(results):
        rec = recorder.of(requests[i])
        # Prefill embeddings (the reference left-pads batch rows with zeros).
        ours = rec["prefill"].numpy()
        assert ours.shape[0] == int(g["prefill_attention_mask"][i].sum())
        np.testing.assert_allclose(ours, prefill[i, -ours.shape[0] :], atol=1e-5, rtol=0)
        # Codes: identical, greedy and seeded sampling alike.
        expected = g[f"codes_{i}"].astype(np.int64)
        assert np.array_equal(res.codes, expected), f"row {i}: codes differ"
        # Talker logits of the prefill and every decode step; predictor logits of the first frames.
        talker = torch.stack(rec["talker_logits"]).numpy()
        np.testing.assert_allclose(talker, g["talker_logits"][: len(talker), i], atol=1e-4, rtol=0)
        cp = g["cp_logits"]
        for frame in range(cp.shape[0]):
            np.testing.assert_allclose(rec["cp_logits"][frame].numpy(), cp[frame, :, i], atol=1e-4, rtol=0)
        # Waveform (ICL: after the reference's cut of the prepended reference audio).
        wav = g[f"wav_{i}"]
        assert res.audio.shape == wav.shape
        np.testing.assert_allclose(res.audio, wav, atol=1e-4, rtol=0)


def test_voice_prompt_from_audio_matches_reference(engines, golden):
    g = golden("base_prompt")
    engine = engines["base"]
    clips = {}
    for rate, (sr, seed) in g["case"]["clips"].items():
        # The reference clip: 2 s of Gaussian noise (sigma 0.1), as tests/reference/make_goldens.py makes it.
        clips[rate] = (np.random.default_rng(seed).normal(0, 0.1, int(2 * sr)).astype(np.float32), sr)
    for rate, clip in clips.items():
        voice = engine.create_voice_prompt(clip, REF_TEXT)
        np.testing.assert_allclose(voice.speaker_embedding.numpy(), g[f"xvector_{rate}"], atol=1e-5, rtol=0)
        assert np.array_equal(voice.ref_codes.numpy(), g[f"ref_code_{rate}"].astype(np.int64))
        assert voice.icl
    xvec = engine.create_voice_prompt(clips["24k"], x_vector_only=True)
    assert xvec.ref_codes is None and not xvec.icl
