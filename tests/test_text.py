"""Tokenisation identical to the reference processor (including its transformers-version-dependent split
regex) on tricky texts, for the three prompt templates."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.fixtures.tokenizer_cases import TEMPLATES, TEXTS, VERSIONS, make_tokenizer_dir
from wyoming_qwen3tts.engine import text as text_module
from wyoming_qwen3tts.engine.text import TextTokenizer, reference_swaps_split

GOLDEN = json.loads((Path(__file__).parent / "goldens" / "tokenizer_ids.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=VERSIONS)
def tokenizer(request, tmp_path_factory):
    version = request.param
    path = make_tokenizer_dir(tmp_path_factory.mktemp("tok") / version, version)
    return version, TextTokenizer(path)


@pytest.mark.parametrize("version", VERSIONS)
def test_without_tokenizer_json_ids_match_reference_processor(version, tmp_path):
    """The released snapshots ship vocab.json + merges.txt only: the engine builds the tokenizer as
    transformers' Qwen2 converter does, without importing transformers (issue 24: ~1.9 s of the load)."""
    path = make_tokenizer_dir(tmp_path / version, version)
    (path / "tokenizer.json").unlink()
    assert text_module._backend(path) is not None, "built without transformers"
    tok = TextTokenizer(path)
    for text in TEXTS:
        assert tok.target_ids(text).tolist() == GOLDEN[version][text]["assistant"], text
        assert tok.reference_ids(text).tolist() == GOLDEN[version][text]["reference"], text
        assert tok.instruct_ids(text).tolist() == GOLDEN[version][text]["instruct"], text


def test_the_transformers_fallback_gives_the_same_ids(tmp_path, monkeypatch):
    path = make_tokenizer_dir(tmp_path / "4.57.3", "4.57.3")
    assert text_module._backend(path) is not None
    ours = TextTokenizer(path)
    monkeypatch.setattr(text_module, "_backend", lambda _: None)
    theirs = TextTokenizer(path)
    for text in TEXTS:
        assert ours.target_ids(text).tolist() == theirs.target_ids(text).tolist(), text


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


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_loading_logs_no_misleading_regex_warning(tmp_path, monkeypatch):
    """transformers warns of an 'incorrect regex pattern' for these checkpoints; the engine applies the right
    split itself, so the warning is dropped, and only that one: other warnings of that logger still show.
    (Only where transformers loads the tokenizer: checkpoints that the engine's own builder does not take.)"""
    from transformers import Qwen2TokenizerFast

    monkeypatch.setattr(text_module, "_backend", lambda _: None)
    path = make_tokenizer_dir(tmp_path / "4.57.3", "4.57.3")
    logger = logging.getLogger(text_module._TRANSFORMERS_TOKENIZER_LOGGER)
    records = _Records()
    ours = [f for f in logger.filters if isinstance(f, text_module._DropRegexWarning)]
    logger.addHandler(records)
    try:
        for existing in ours:  # an earlier test may have loaded a tokenizer already
            logger.removeFilter(existing)
        Qwen2TokenizerFast.from_pretrained(str(path))
        assert any(text_module._REGEX_WARNING in m for m in records.messages), "transformers no longer warns"
        records.messages.clear()
        tok = TextTokenizer(path)
        assert tok.reference_split, "the engine applies the reference's split rule itself"
        assert not any(text_module._REGEX_WARNING in m for m in records.messages), records.messages
        TextTokenizer(path)  # a second load adds no second filter
        assert sum(isinstance(f, text_module._DropRegexWarning) for f in logger.filters) == 1
        logger.warning("another tokenizer warning")
        assert records.messages == ["another tokenizer warning"]
    finally:
        logger.removeHandler(records)
