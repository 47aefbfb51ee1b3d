"""Tokenisation identical to the reference processor (including its transformers-version-dependent split
regex) on tricky texts, for the three prompt templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.tokenizer_cases import TEMPLATES, TEXTS, VERSIONS, make_tokenizer_dir
from wyoming_qwen3tts.engine.text import TextTokenizer, reference_swaps_split

GOLDEN = json.loads((Path(__file__).parent / "goldens" / "tokenizer_ids.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=VERSIONS)
def tokenizer(request, tmp_path_factory):
    version = request.param
    path = make_tokenizer_dir(tmp_path_factory.mktemp("tok") / version, version)
    return version, TextTokenizer(path)


def test_ids_match_reference_processor(tokenizer):
    version, tok = tokenizer
    encode = {"assistant": tok.target_ids, "reference": tok.reference_ids, "instruct": tok.instruct_ids}
    assert set(TEMPLATES) == set(encode)
    for text in TEXTS:
        for name, fn in encode.items():
            assert fn(text).tolist() == GOLDEN[version][text][name], (version, name, text)


def test_the_two_regex_branches_really_differ():
    # Otherwise the test above would not tell them apart.
    assert any(GOLDEN["4.57.3"][t]["assistant"] != GOLDEN["4.50.0"][t]["assistant"] for t in TEXTS)


@pytest.mark.parametrize(
    "config, vocab, swapped",
    [
        ({"transformers_version": "4.57.3"}, 151936, True),
        ({}, 151936, True),
        ({"transformers_version": "4.57.2"}, 151936, False),
        ({"transformers_version": "5.1.0"}, 151936, False),
        ({"transformers_version": "4.57.3"}, 576, False),
        ({"transformers_version": "4.40.0", "model_type": "mistral"}, 151936, True),
    ],
)
def test_reference_rule(config, vocab, swapped):
    assert reference_swaps_split(config, vocab) is swapped


def test_slicing_of_templates(tokenizer):
    _, tok = tokenizer
    ids = tok.target_ids("Hello world, this is a small test.")
    assert ids[-5].item() == 151645 and ids[-3].item() == 151644 and ids[0].item() == 151644
    with pytest.raises(ValueError):
        tok.target_ids("")
