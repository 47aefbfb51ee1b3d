"""One onnxruntime graph per layer boundary for all-8-bit stacks (engine/ortblocks.py, issue 24).

Two engines from the same tiny checkpoint and the same 8-bit weights: one as `auto` loads it (graphs per
layer), one with the per-matrix sessions. Blocks of 32 so that the code predictor (width 32) qualifies too.
"""

from __future__ import annotations

import gc

import pytest
import torch

from wyoming_qwen3tts.engine import (
    Engine,
    RunawayGuard,
    SamplingParams,
    SpeechRequest,
    nbits,
    ortblocks,
    quant,
)

pytestmark = pytest.mark.skipif(not nbits.available(), reason="the cpu4bit extra (onnxruntime, onnx)")


@pytest.fixture(scope="module")
def engines(tiny_custom_voice):
    patch = pytest.MonkeyPatch()
    patch.setenv("WYOMING_QWEN3TTS_INT8_KERNEL", "onnxruntime")
    patch.setattr(nbits, "BLOCK_8BIT", 32)
    patch.setattr(quant, "BLOCK_8BIT", 32)
    kwargs = dict(device="cpu", dtype="float32", slots=2, guard=RunawayGuard(enabled=False), quantize="int8")
    fused = Engine.load(tiny_custom_voice, **kwargs)
    patch.setattr(ortblocks, "attach", lambda *a, **k: False)
    plain = Engine.load(tiny_custom_voice, **kwargs)
    patch.undo()
    yield fused, plain
    fused.close()
    plain.close()


def _stacks(engine: Engine):
    return engine.talker.model, engine.talker.code_predictor.model


def test_every_8bit_stack_runs_one_graph_per_layer(engines):
    fused, plain = engines
    for stack, other in zip(_stacks(fused), _stacks(plain)):
        assert stack.blocks is not None and other.blocks is None
        assert len(stack.blocks.blocks) == len(stack.layers)
        for layer in stack.layers:
            attn, mlp = layer.self_attn, layer.mlp
            for matrix in (attn.qkv_proj, attn.o_proj, mlp.gate_up_proj, mlp.down_proj):
                # each weight lives in exactly one session: the graph's, none of its own, no arrays kept
                assert matrix.taken and matrix._weights is None and matrix._handle is None
                with pytest.raises(RuntimeError, match="fused into an onnxruntime graph"):
                    matrix.mm(torch.zeros(1, matrix.in_features))
    # the heads keep their own sessions, made at load time
    assert fused.talker.codec_head._handle is not None and fused.talker.codec_head._weights is None


def test_the_graphs_compute_what_the_per_matrix_path_computes(engines):
    fused, plain = engines
    gen = torch.Generator().manual_seed(0)
    for stack, other in zip(_stacks(fused), _stacks(plain)):
        hidden = stack.cfg.hidden_size
        caches = [s.new_cache(2, 32, torch.float32, "cpu") for s in (stack, other)]
        x = torch.randn(2, 5, hidden, generator=gen)
        a, b = (s.prefill(x, c, 0) for s, c in zip((stack, other), caches))
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)  # the norms sum in another order
        y = torch.randn(2, hidden, generator=gen)
        a, b = (s.decode(y, c, 5) for s, c in zip((stack, other), caches))
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
        positions = torch.tensor([6, 6])
        a, b = (s.decode_rows(y, c, positions, c.span[:7]) for s, c in zip((stack, other), caches))
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
        # one graph call per row: a row decodes to the same bits alone or batched
        alone = stack.decode_rows(y[:1], caches[0], positions[:1], caches[0].span[:7])
        assert torch.equal(alone[0], a[0])


def test_fused_engine_speaks_with_traced_predictor_steps(engines):
    fused, _ = engines
    assert fused.talker.code_predictor.trace  # the CPU default: the graphs run inside the traces
    request = SpeechRequest("Hello there.", speaker="ryan", sampling=SamplingParams.greedy(max_new_tokens=8))
    result = fused.synthesize(request)
    assert len(result.codes) > 0 and result.audio.size > 0
    assert fused.talker.code_predictor._step is not None and fused.talker.code_predictor._step._traces


def test_the_graphs_go_with_their_stack(tiny_custom_voice, monkeypatch):
    """An engine unloaded by the model pool leaves no weights behind in onnxruntime."""
    monkeypatch.setenv("WYOMING_QWEN3TTS_INT8_KERNEL", "onnxruntime")
    engine = Engine.load(tiny_custom_voice, device="cpu", dtype="float32", slots=1, quantize="int8")
    blocks = engine.talker.model.blocks
    assert blocks is not None  # the talker (width 64) fits blocks of 64
    handles = [blocks.head, *blocks.blocks]
    assert all(nbits.session(h) is not None for h in handles)
    engine.close()
    del engine, blocks
    gc.collect()
    assert all(nbits.session(h) is None for h in handles)
