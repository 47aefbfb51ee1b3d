"""Load-time optimisations and weight-only quantization (issue 6): exactness and error gates.

Random weights cannot judge audio quality, so the quantized modes are gated on numerical error, measured
teacher-forced over 100 frames on the tiny checkpoints (diagnostics/quant_check.py). The gates are the
documented ones of engine/quant.py; timings live in bench/, never here.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch
from torch import nn

from tests.fixtures.recorder import recording
from wyoming_qwen3tts.diagnostics.quant_check import measure
from wyoming_qwen3tts.engine import Engine, RunawayGuard, SamplingParams, SpeechRequest
from wyoming_qwen3tts.engine.layers import Rotary, as_projection, fast_rms_norm, rms_norm
from wyoming_qwen3tts.engine.quant import (
    Int4Linear,
    Int8Linear,
    check_mode,
    gate_misses,
    int4_fits,
    quantize_talker,
)

TEXT = "Hello world, this is a small test of the quantized engine."
FRAMES = 100


def _load(path, dtype="bfloat16", quantize="none") -> Engine:
    """int4 is built directly (its kernel runs everywhere, fast only on AVX-512), so that its structure and
    error are tested on every CPU; the load-time plan would turn it into int8 on AVX2 and ARM."""
    torch.set_num_threads(2)
    if quantize != "int4":
        return Engine.load(
            path, device="cpu", dtype=dtype, slots=1, guard=RunawayGuard(enabled=False), quantize=quantize
        )
    old = os.environ.get("WYOMING_QWEN3TTS_PACKED_BF16")
    os.environ["WYOMING_QWEN3TTS_PACKED_BF16"] = "0"  # plain nn.Linear weights for quantize_talker
    try:
        engine = Engine.load(path, device="cpu", dtype=dtype, slots=1, guard=RunawayGuard(enabled=False))
    finally:
        if old is None:
            os.environ.pop("WYOMING_QWEN3TTS_PACKED_BF16")
        else:
            os.environ["WYOMING_QWEN3TTS_PACKED_BF16"] = old
    quantize_talker(engine.talker, "int4")
    engine.plan = dataclasses.replace(engine.plan, quantize="int4")
    return engine


@pytest.fixture(scope="module")
def bf16_engine(tiny_custom_voice):
    engine = _load(tiny_custom_voice)
    yield engine
    engine.close()


# -- exactness of the load-time rewrites ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("hidden, outs", [(64, (64, 32, 32)), (32, (64, 64)), (1024, (2048, 1024, 1024))])
@pytest.mark.parametrize("rows", [1, 2, 7])
def test_fused_projection_is_bit_identical(dtype, hidden, outs, rows):
    torch.manual_seed(0)
    parts = [nn.Linear(hidden, n, bias=False).to(dtype) for n in outs]
    fused = as_projection(*parts)
    x = torch.randn(rows, hidden).to(dtype)
    separate = torch.cat([p(x) for p in parts], dim=-1)
    assert torch.equal(fused.mm(x), separate)
    assert torch.equal(fused(x[None]), separate[None])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1024), (3, 24, 128), (1, 17, 64)])
def test_rms_norm_matches_the_reference_formula(dtype, shape):
    torch.manual_seed(0)
    x = torch.randn(shape).to(dtype)
    w = (1 + 0.1 * torch.randn(shape[-1])).to(dtype)
    h = x.float()
    reference = w * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)).to(dtype)
    assert torch.equal(rms_norm(x, w, 1e-6), reference)
    # The one-kernel form (bf16/fp16 only) rounds once: within one bf16 step of the reference.
    fast = fast_rms_norm(x, 1e-6, torch.cat((w, w)))
    torch.testing.assert_close(fast.float(), reference.float(), atol=0, rtol=2**-7)


def test_rope_tables_equal_the_per_step_computation():
    rot = Rotary(128, 1_000_000.0)
    cos, signed_sin = rot.tables(300, torch.float32, torch.device("cpu"))
    for pos in (0, 1, 17, 299):
        c, s = rot(torch.tensor([[pos]]), torch.float32)
        assert torch.equal(cos[pos], c[0, 0])
        assert torch.equal(signed_sin[pos, 64:], s[0, 0, 64:])
        assert torch.equal(signed_sin[pos, :64], -s[0, 0, :64])


def test_bf16_stays_within_bf16_tolerance_of_fp32(tiny_custom_voice, bf16_engine):
    """bf16 with the one-kernel norms is as close to fp32 as bf16 with the reference's formulation."""
    fp32 = _load(tiny_custom_voice, "float32")
    plain = _load(tiny_custom_voice)
    plain.talker.prepare_norms(False)
    try:
        err = measure(fp32, bf16_engine, TEXT, "ryan", FRAMES)
        baseline = measure(fp32, plain, TEXT, "ryan", FRAMES)
    finally:
        fp32.close()
        plain.close()
    assert err.frames == FRAMES
    assert err.hidden_cos_min >= 0.9999 and err.logits_cos_mean >= 0.9995 and err.logits_cos_min >= 0.995
    assert err.kl_all_mean <= 5e-4 and err.kl_all_max <= 5e-3
    assert err.kl_all_mean <= 1.5 * baseline.kl_all_mean
    assert 1 - err.hidden_cos_mean <= 1.5 * (1 - baseline.hidden_cos_mean)


# -- quantized linears --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int8_linear_matches_its_dequantized_weight(dtype):
    torch.manual_seed(0)
    lin = nn.Linear(256, 96, bias=True)
    q = Int8Linear(lin, dtype)
    w = lin.weight.detach()
    deq = q.dequantized()
    step = q.scales.float()[:, None]
    assert (deq - w).abs().le(step / 2 + 1e-6).all()  # round to nearest
    x = torch.randn(3, 1, 256).to(dtype)
    expected = x.float() @ deq.t() + lin.bias.detach().to(dtype).float()
    torch.testing.assert_close(q(x).float(), expected, atol=3e-2, rtol=2e-2)
    assert torch.equal(q.mm(x[:, 0]), q(x)[:, 0])


@pytest.mark.parametrize("group", [32, 64, 128])
def test_int4_linear_matches_its_dequantized_weight(group):
    torch.manual_seed(0)
    lin = nn.Linear(256, 64, bias=False)
    q = Int4Linear(lin, torch.bfloat16, group)
    w = lin.weight.detach()
    deq = q.dequantized()
    scale = q.scales_zeros[..., 0].float().t().repeat_interleave(group, dim=1)
    assert (deq - w).abs().le(scale * 0.51 + 1e-3).all()  # half a step (+ bf16 rounding of the params)
    x = torch.randn(2, 256).to(torch.bfloat16)
    torch.testing.assert_close(q(x).float(), x.float() @ deq.t(), atol=5e-2, rtol=2e-2)
    assert torch.equal(q.mm(x), q(x))


def test_int4_group_rules():
    assert int4_fits(1024, 64) and int4_fits(32, 32)
    assert not int4_fits(32, 64) and not int4_fits(96, 64) and not int4_fits(1024, 16)
    with pytest.raises(ValueError, match="multiple"):
        Int4Linear(nn.Linear(96, 8), torch.bfloat16, 64)


def test_modes_are_validated(tiny_custom_voice):
    assert check_mode(None) == "none" and check_mode("INT8") == "int8"
    with pytest.raises(ValueError, match="quantize"):
        check_mode("int3")
    with pytest.raises(ValueError, match="quantize"):
        Engine.load(tiny_custom_voice, device="cpu", quantize="fp8")


def test_quantize_replaces_every_per_frame_matrix(tiny_custom_voice):
    engine = _load(tiny_custom_voice, quantize="int4")
    try:
        talker = engine.talker
        layer = talker.model.layers[0]
        assert isinstance(layer.self_attn.qkv_proj, Int4Linear)
        assert isinstance(layer.mlp.down_proj, Int4Linear)
        assert isinstance(talker.code_predictor.model.layers[0].mlp.gate_up_proj, Int4Linear)
        assert isinstance(talker.codec_head, Int8Linear)  # heads stay int8
        assert all(isinstance(h, Int8Linear) for h in talker.code_predictor.lm_head)
        assert engine.quantize == "int4" and engine.dtype == torch.bfloat16
        assert not any(isinstance(m, nn.Linear) for m in talker.model.layers.modules())
    finally:
        engine.close()
    assert quantize_talker(nn.Module(), "none") == 0


# -- error gates (teacher-forced, 100 frames, against bf16) ------------------------------------------------


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantized_mode_meets_its_gates(tiny_custom_voice, bf16_engine, mode):
    engine = _load(tiny_custom_voice, quantize=mode)
    try:
        err = measure(bf16_engine, engine, TEXT, "ryan", FRAMES)
    finally:
        engine.close()
    assert err.frames == FRAMES
    failed = gate_misses(mode, err.as_dict())
    assert not failed, f"{mode} misses its gates: {failed}"


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantized_engine_streams_exactly(tiny_custom_voice, mode):
    """The decoder is untouched: streamed chunks still equal a full decode of the same codes."""
    engine = _load(tiny_custom_voice, quantize=mode)
    try:
        req = SpeechRequest(TEXT, speaker="ryan", sampling=SamplingParams.greedy(max_new_tokens=12))
        result = engine.synthesize(req, timeout=120)
        # Random weights: greedy decoding may pick EOS early under one kernel and not another.
        assert result.codes.shape[1] == 16 and 1 <= result.codes.shape[0] <= 11
        full = engine.decoder.decode(torch.from_numpy(result.codes).T[None]).float()[0].numpy()
        np.testing.assert_allclose(result.audio, full, atol=2e-2)
    finally:
        engine.close()


def test_synth_cli_accepts_quantize():
    from wyoming_qwen3tts.synth_cli import build_parser

    args = build_parser().parse_args(["--model", "m", "--text", "t", "--out", "o.wav", "--quantize", "int8"])
    assert args.quantize == "int8"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--model", "m", "--text", "t", "--out", "o.wav", "--quantize", "q2"])


def test_fused_stack_has_no_separate_projections(bf16_engine):
    attn = bf16_engine.talker.model.layers[0].self_attn
    assert not hasattr(attn, "q_proj") and not hasattr(attn, "k_norm")
    assert attn.qkv_proj.out_features == (attn.heads + 2 * attn.kv_heads) * attn.head_dim
    x = torch.randn(2, attn.qkv_proj.in_features).to(torch.bfloat16)
    assert torch.equal(attn.qkv_proj.mm(x), attn.qkv_proj(x[None])[0])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_traced_steps_equal_eager_steps(tiny_custom_voice, dtype):
    """TorchScript-traced decode steps (engine/jit.py, on by default on CPU) change no number."""
    results = []
    for trace in (False, True):
        engine = Engine.load(tiny_custom_voice, device="cpu", dtype=dtype, slots=2, trace=trace)
        try:
            reqs = [
                SpeechRequest(t, speaker="ryan", sampling=SamplingParams.greedy(max_new_tokens=9))
                for t in (TEXT, "See you.")
            ]
            with recording(engine) as recorder:
                streams = [engine.submit(r, keep=True) for r in reqs]  # two rows at different positions
                results.append([(s.result(120), recorder.of(r)) for s, r in zip(streams, reqs)])
            assert engine.runner.talker_step.enabled is trace
        finally:
            engine.close()
    for (eager, eager_rec), (traced, traced_rec) in zip(*results):
        assert np.array_equal(eager.codes, traced.codes)
        assert np.array_equal(eager.audio, traced.audio)
        for key in ("talker_logits", "cp_logits"):
            assert all(torch.equal(a, b) for a, b in zip(eager_rec[key], traced_rec[key]))


@pytest.mark.skipif(
    not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
    reason="oneDNN bf16 not available on this CPU",
)
def test_packed_bf16_weights_are_bit_identical():
    from wyoming_qwen3tts.engine.quant import PackedLinear

    torch.manual_seed(0)
    for n, k in [(96, 64), (2048, 1024), (1024, 3072)]:
        lin = nn.Linear(k, n, bias=False).to(torch.bfloat16)
        packed = PackedLinear(lin)
        for rows in (1, 3):
            x = torch.randn(rows, k).to(torch.bfloat16)
            assert torch.equal(packed.mm(x), torch.mm(x, lin.weight.t()))
        assert torch.equal(packed(x[None]), lin(x[None]))


def test_server_loader_resolves_quantize_and_dtype(tiny_custom_voice):
    """The server passes --dtype/--quantize to the engine's compute plan (policy.py): auto is the default,
    an explicit dtype is kept, and the int8 kernel is the one this CPU class gets."""
    from wyoming_qwen3tts.app import engine_loader
    from wyoming_qwen3tts.engine import QUANT_MODES, compute_plan
    from wyoming_qwen3tts.engine.nbits import NBitsLinear
    from wyoming_qwen3tts.engine.quant import DynamicInt8Linear
    from wyoming_qwen3tts.settings import _QUANTIZE, load_settings

    assert _QUANTIZE == QUANT_MODES  # settings keep their own copy (they load without torch)
    assert load_settings(["--device", "cpu"], {}).quantize == "auto"

    cpu = torch.device("cpu")
    for argv, quantize, dtype in (
        ([], "auto", "auto"),
        (["--quantize", "int8"], "int8", "auto"),
        (["--quantize", "int8", "--dtype", "float32"], "int8", "float32"),
    ):
        settings = load_settings(["--device", "cpu", "--slots", "1"] + argv, {})
        engine = engine_loader(settings)(str(tiny_custom_voice))
        try:
            expected = compute_plan(cpu, dtype, quantize)
            assert engine.plan == expected
            assert engine.quantize == expected.quantize and engine.dtype == expected.dtype
            if expected.int8_kernel in ("fbgemm", "qnnpack"):
                assert isinstance(engine.talker.codec_head, DynamicInt8Linear)
            elif expected.int8_kernel == "onnxruntime":  # AVX2 with the cpu4bit extra (issue 24)
                assert isinstance(engine.talker.codec_head, NBitsLinear)
            elif expected.quantize == "int8":
                assert isinstance(engine.talker.codec_head, Int8Linear)
            assert engine.decoder.pre_conv.conv.weight.dtype == expected.codec_dtype
        finally:
            engine.close()


def test_real_server_process_speaks_with_int8_weights(tiny_custom_voice, tmp_path):
    """`python -m wyoming_qwen3tts --quantize int8`: loads, logs the quantization, and speaks over Wyoming."""
    import asyncio

    from wyoming.audio import AudioChunk, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.tts import Synthesize

    from tests.fixtures.server_process import start_server

    log_path = tmp_path / "server.log"
    with open(log_path, "w+") as log:
        proc, port = start_server(
            str(tiny_custom_voice),
            ["--threads", "2", "--quantize", "int8", "--data-dir", str(tmp_path / "data")],
            log,
        )
        try:

            async def say() -> int:
                samples = 0
                async with AsyncTcpClient("127.0.0.1", port) as client:
                    await client.write_event(Synthesize(text="Hello there.").event())
                    while True:
                        event = await asyncio.wait_for(client.read_event(), 60)
                        assert event is not None and event.type != "error", event
                        if AudioChunk.is_type(event.type):
                            samples += len(AudioChunk.from_event(event).audio) // 2
                        if AudioStop.is_type(event.type):
                            return samples

            assert asyncio.run(say()) > 0
            text = log_path.read_text()
            assert "Quantized talker and code predictor to int8" in text and "int8 weights" in text
        finally:
            proc.kill()
            proc.wait(10)


def test_packed_layout_decision_is_deterministic(monkeypatch):
    """Never timing-based: two loads on one machine must pick the same layout (outputs reproducible)."""
    from wyoming_qwen3tts.engine.quant import use_packed_bf16

    cpu = torch.device("cpu")
    decisions = {use_packed_bf16((192, 64), cpu, torch.bfloat16) for _ in range(5)}
    assert len(decisions) == 1
    assert not use_packed_bf16((192, 64), cpu, torch.float32)  # fp32 keeps PyTorch's exact path
    monkeypatch.setenv("WYOMING_QWEN3TTS_PACKED_BF16", "0")
    assert not use_packed_bf16((192, 64), cpu, torch.bfloat16)


def test_default_traces_the_code_predictor_only_on_cpu(tiny_custom_voice):
    """Tracing the 28-layer talker stalls 10-20 s per new batch size; the small predictor ~0.5 s."""
    engine = Engine.load(tiny_custom_voice, device="cpu", dtype="float32", slots=1)
    try:
        assert engine.runner.talker_step.enabled is False
        assert engine.talker.code_predictor.trace is True
    finally:
        engine.close()
