"""Loading builds the codec decoder on the meta device and fills it from the checkpoint (engine/loading.py,
issue 24): no random init, no global patch of torch.nn.init, the same numbers as a decoder built as usual."""

from __future__ import annotations

import pytest
import torch

from wyoming_qwen3tts.engine.checkpoint import CheckpointError, load_into, load_state_dict
from wyoming_qwen3tts.engine.codec.decoder import SpeechDecoder
from wyoming_qwen3tts.engine.config import ModelConfig
from wyoming_qwen3tts.engine.loading import _load_decoder, on_meta


def test_on_meta_skips_random_init_without_touching_torch_nn_init():
    init = torch.nn.init.normal_
    probe = torch.zeros(8, 8)
    with on_meta():
        layer = torch.nn.Linear(8, 8)
        torch.nn.init.normal_(probe)  # a real tensor: left as it is
        assert torch.nn.init.normal_ is init
    assert layer.weight.is_meta and torch.count_nonzero(probe) == 0
    torch.nn.init.normal_(probe)  # outside: random init as usual
    assert torch.count_nonzero(probe) > 0 and not torch.nn.Linear(2, 2).weight.is_meta


def _reference(cfg: ModelConfig, state: dict, source) -> SpeechDecoder:
    decoder = SpeechDecoder.from_config(cfg.codec_decoder_config)  # random init, then overwritten
    load_into(decoder, state, "decoder.", source, dtype=torch.float32, device="cpu")
    return decoder.eval()


@pytest.mark.parametrize("stored", [torch.float32, torch.bfloat16])
def test_decoder_built_on_meta_decodes_exactly_as_one_built_as_usual(tiny_custom_voice, stored):
    cfg = ModelConfig.load(tiny_custom_voice)
    source = tiny_custom_voice / "speech_tokenizer" / "model.safetensors"
    state = {k: v.to(stored) for k, v in load_state_dict(tiny_custom_voice / "speech_tokenizer").items()}
    init = torch.nn.init.kaiming_uniform_
    ours = _load_decoder(cfg, state, source, torch.float32, torch.device("cpu"))
    assert torch.nn.init.kaiming_uniform_ is init  # nothing process-wide was touched
    reference = _reference(cfg, state, source)
    named = dict(ours.named_parameters()) | dict(ours.named_buffers())
    # The codebook sums stay as stored (only looked up); the packed transposed conv (the tiny config's first
    # upsample stage) holds no plain weight; everything else is fp32 on the CPU.
    sums = {k for k in named if k.endswith("embedding_sum")}
    assert sums and all(named[k].dtype == stored for k in sums)
    assert [k for k, t in named.items() if t.is_meta] == ["upsample.0.0.conv.weight"]
    rest = [t for k, t in named.items() if k not in sums and not t.is_meta]
    assert rest and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in rest)
    assert all(torch.equal(t.float(), reference.state_dict()[k]) for k, t in ours.state_dict().items())
    # The RoPE table the constructor computes is real (made on the CPU explicitly), and the right one.
    rope = ours.pre_transformer._inv_freq[torch.device("cpu")]
    assert not rope.is_meta
    assert torch.equal(rope, reference.pre_transformer._inv_freq[torch.device("cpu")])
    codes = torch.randint(
        0, cfg.codec_decoder_config["codebook_size"], (1, 16, 5), generator=torch.manual_seed(0)
    )
    assert torch.equal(ours.decode(codes), reference.decode(codes))


def test_a_missing_decoder_weight_is_an_error_not_a_meta_tensor(tiny_custom_voice):
    cfg = ModelConfig.load(tiny_custom_voice)
    state = dict(load_state_dict(tiny_custom_voice / "speech_tokenizer"))
    state.pop("decoder.pre_conv.conv.weight")
    with pytest.raises(CheckpointError, match="pre_conv.conv.weight"):
        _load_decoder(cfg, state, tiny_custom_voice / "x", torch.float32, torch.device("cpu"))


def test_only_file_backed_storages_count_as_file_pages(tiny_custom_voice):
    """drop_file_pages madvises what file_storages names: anonymous memory must never be among them (the
    kernel would zero it), the checkpoint's mapped tensors must (their pages can be read again)."""
    from wyoming_qwen3tts.engine.memory import drop_file_pages, file_storages

    mapped = load_state_dict(tiny_custom_voice / "speech_tokenizer")
    copies = {k: v.clone() for k, v in mapped.items()}
    assert len(file_storages(mapped.values())) == len(mapped)
    assert not file_storages(copies.values())
    drop_file_pages(copies.values(), file_storages(copies.values()))
    drop_file_pages(mapped.values(), file_storages(mapped.values()))
    assert all(torch.equal(mapped[k], copies[k]) for k in mapped)  # dropped pages come back from the file


def test_fp32_cpu_engine_keeps_the_codec_tables_bf16_with_the_same_output(tmp_path_factory):
    """The codec input tables of a bf16 checkpoint stay bf16 in an fp32 CPU engine (they are only looked
    up; 69 MB less on 0.6B); the rows are widened exactly, so the speech is the same as with fp32 tables."""
    import numpy as np

    from tests.fixtures.checkpoint_builder import build_checkpoint
    from wyoming_qwen3tts.engine import Engine, SamplingParams, SpeechRequest

    path = build_checkpoint(
        tmp_path_factory.mktemp("bf16") / "cv", "custom_voice", "tiny", seed=0, dtype="bfloat16"
    )
    request = SpeechRequest(
        "Hello there.", speaker="ryan", language="english", sampling=SamplingParams.greedy(max_new_tokens=4)
    )
    with Engine.load(path, device="cpu", dtype="float32", quantize="none", slots=1) as engine:
        talker = engine.talker
        tables = [talker.model.codec_embedding, *talker.code_predictor.model.codec_embedding]
        assert all(t.weight.dtype == torch.bfloat16 for t in tables)
        # Memory-mapped, not copied (only the rows looked up become resident), like the decoder's codebook
        # sums (widened per lookup in SpeechDecoder._forward).
        from wyoming_qwen3tts.engine.memory import file_storages

        sums = [p for k, p in engine.decoder.named_parameters() if k.endswith("embedding_sum")]
        assert sums and all(p.dtype == torch.bfloat16 for p in sums)
        looked_up = [t.weight for t in tables] + sums
        assert len(file_storages(looked_up)) == len({t.untyped_storage().data_ptr() for t in looked_up})
        assert talker.embed_codec(torch.tensor([[1, 2]])).dtype == torch.float32
        kept = engine.synthesize(request, timeout=300)
        for table in tables:
            table.weight = torch.nn.Parameter(table.weight.float(), requires_grad=False)
        widened = engine.synthesize(request, timeout=300)
    assert np.array_equal(kept.codes, widened.codes)
    assert np.array_equal(kept.audio, widened.audio)
