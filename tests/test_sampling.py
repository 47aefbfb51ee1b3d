"""Our vectorised processors against the transformers 4.57.3 LogitsProcessors the reference runs."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from tests.fixtures.configs import GENERATION_CONFIG
from wyoming_qwen3tts.engine.config import GenerationDefaults
from wyoming_qwen3tts.engine.sampling import SamplingParams, TalkerSampler, choose, warp

VOCAB, EOS = 3072, 2150


def _reference(logits, history, temperature, top_k, top_p, penalty):
    suppress = [i for i in range(VOCAB - 1024, VOCAB) if i != EOS]
    procs = LogitsProcessorList()
    if penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(penalty))
    procs.append(MinNewTokensLengthLogitsProcessor(0, 2, torch.tensor([EOS])))
    procs.append(SuppressTokensLogitsProcessor(suppress))
    if temperature != 1.0:
        procs.append(TemperatureLogitsWarper(temperature))
    if top_k:
        procs.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        procs.append(TopPLogitsWarper(top_p))
    ids = torch.tensor([history], dtype=torch.long) if history else torch.zeros(1, 0, dtype=torch.long)
    return procs(ids, logits.clone())


@pytest.mark.parametrize(
    "temperature, top_k, top_p, penalty",
    [
        (0.9, 50, 1.0, 1.05),
        (0.7, 20, 0.8, 1.2),
        (1.0, 0, 0.5, 1.0),
        (1.3, 3072, 0.95, 2.0),
        (0.5, 1, 1.0, 1.05),
    ],
)
@pytest.mark.parametrize("history", [[], [5], [5, 17, 17, 2049, 300, 5]])
def test_talker_processing_matches_transformers(temperature, top_k, top_p, penalty, history):
    gen = torch.Generator().manual_seed(len(history) * 31 + top_k)
    logits = torch.randn(1, VOCAB, generator=gen) * 4
    logits[0, 5] = -3.0  # a negative logit in the history: multiplied, not divided
    ref = _reference(logits, history, temperature, top_k, top_p, penalty)

    sampler = TalkerSampler(VOCAB, EOS, "cpu")
    seen = torch.zeros(1, VOCAB, dtype=torch.bool)
    seen[0, history] = True
    ours = sampler.process(logits, seen, [len(history)], [penalty], [0.0])
    ours = warp(ours, [temperature], [top_k], [top_p])
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))
    finite = torch.isfinite(ref)
    assert torch.allclose(ours[finite], ref[finite], atol=0, rtol=0)  # bit-identical
    assert torch.allclose(ours.softmax(-1), ref.softmax(-1), atol=1e-6)


def test_rows_with_different_parameters_are_independent():
    logits = torch.randn(3, 2048, generator=torch.Generator().manual_seed(3)) * 3
    params = [(0.9, 50, 1.0), (0.6, 10, 0.7), (1.0, 0, 1.0)]
    batched = warp(logits, *zip(*params))
    for i, (t, k, p) in enumerate(params):
        alone = warp(logits[i : i + 1], [t], [k], [p])
        assert torch.equal(batched[i : i + 1], alone)


def test_eos_banned_for_first_two_tokens_and_control_ids_suppressed():
    sampler = TalkerSampler(VOCAB, EOS, "cpu")
    logits = torch.zeros(2, VOCAB)
    logits[:, EOS] = 100.0
    seen = torch.zeros(2, VOCAB, dtype=torch.bool)
    out = sampler.process(logits, seen, [1, 2], [1.0, 1.0], [0.0, 0.0])
    assert math.isinf(out[0, EOS]) and out[1, EOS] == 100.0
    assert torch.isinf(out[:, 2048:EOS]).all() and torch.isinf(out[:, EOS + 1 :]).all()
    assert torch.isfinite(out[:, :2048]).all()


def test_greedy_and_seeded_choice():
    logits = torch.randn(2, 100, generator=torch.Generator().manual_seed(0))
    assert torch.equal(choose(logits, [False, False], [None, None]), logits.argmax(-1))
    probs = logits.softmax(-1)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    picked = choose(logits, [True, False], [g1, None])
    assert picked[0] == torch.multinomial(probs[0:1], 1, generator=g2)[0, 0]
    assert picked[1] == logits[1].argmax()


def test_params_resolve_from_generation_config_and_validate():
    defaults = GenerationDefaults.from_dict(GENERATION_CONFIG)  # the released generation_config.json values
    r = SamplingParams(temperature=0.5).resolve(defaults)
    assert (r.temperature, r.top_k, r.repetition_penalty, r.max_new_tokens, r.subtalker_do_sample) == (
        0.5,
        50,
        1.05,
        8192,
        True,
    )
    g = SamplingParams.greedy().resolve(defaults)
    assert g.do_sample is False and g.subtalker_do_sample is False
    for bad in (dict(temperature=-1), dict(top_p=1.5), dict(top_k=-2), dict(repetition_penalty=0)):
        with pytest.raises(ValueError):
            SamplingParams(**bad).resolve(defaults)
