"""onnxruntime's MatMulNBits (engine/nbits.py, issue 24): quantize=int4 on AVX2 / ARM64, and int8 (8-bit
blocks) as `auto` on AVX2 where the cpu4bit extra is installed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from wyoming_qwen3tts.diagnostics.quant_check import measure
from wyoming_qwen3tts.engine import Engine, RunawayGuard, SamplingParams, SpeechRequest, compute_plan, nbits
from wyoming_qwen3tts.engine.cpu import ARM64, ARM64_BF16, AVX2, AVX512, AVX512_BF16, OTHER, CpuInfo
from wyoming_qwen3tts.engine.quant import DynamicInt8Linear, Fp16Linear, gate_misses, quantize_talker

CPU = torch.device("cpu")
needs_ort = pytest.mark.skipif(not nbits.available(), reason="the cpu4bit extra (onnxruntime, onnx)")


def _cpu(cpu_class: str) -> CpuInfo:
    return CpuInfo(cpu_class=cpu_class, model="test CPU", flags=frozenset(), capability="AVX2")


@pytest.mark.parametrize(
    "cpu_class, int4_kernel, dtype",
    [
        (AVX2, "onnxruntime", torch.float32),  # Intel N100, Ryzen <= 5000
        (ARM64, "onnxruntime", torch.float32),  # Raspberry Pi 5
        (ARM64_BF16, "onnxruntime", torch.float32),  # Graviton 3 (PyTorch's int4 kernel: AVX-512 only)
        (AVX512, "int4pack", torch.bfloat16),
        (AVX512_BF16, "int4pack", torch.bfloat16),
    ],
)
def test_int4_kernel_is_selected_by_cpu_class(cpu_class, int4_kernel, dtype, monkeypatch):
    monkeypatch.setattr(nbits, "available", lambda: True)
    p = compute_plan(CPU, "auto", "int4", _cpu(cpu_class))
    assert (p.quantize, p.int4_kernel, p.dtype) == ("int4", int4_kernel, dtype)
    assert not any("int4" in w for w in p.warnings) and int4_kernel in p.describe()
    if int4_kernel == "onnxruntime":  # the output heads stay int8, on the class's dynamic kernel if any
        assert p.int8_kernel == (_cpu(cpu_class).int8_backend or "weight-only")
    # int4 is never the default: auto stays int8 on every class.
    assert compute_plan(CPU, "auto", "auto", _cpu(cpu_class)).int4_kernel is None


def test_no_int4_kernel_below_avx2(monkeypatch):
    monkeypatch.setattr(nbits, "available", lambda: True)
    p = compute_plan(CPU, "auto", "int4", _cpu(OTHER))
    assert p.quantize != "int4" and p.int4_kernel is None
    assert any("int4 has no fast kernel" in w for w in p.warnings)


def test_block_quantization_packs_two_codes_per_byte():
    w = torch.zeros(2, 64)
    w[0, :32] = torch.linspace(-7, 7, 32)  # scale 1: codes = round(w) + 8
    w[1, 32:] = 0.5
    packed, scales = nbits.quantize_blocks(w)
    assert packed.shape == (2, 2, 16) and packed.dtype == np.uint8 and scales.shape == (2, 2)
    assert scales[0, 0] == pytest.approx(1.0) and scales[1, 1] == pytest.approx(0.5 / 7)
    codes = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(2, 2, 32)
    assert codes[0, 0].tolist() == (torch.round(torch.linspace(-7, 7, 32)) + 8).int().tolist()
    assert (codes[1, 1] == 15).all() and (codes[1, 0] == 8).all()  # zero blocks: code 8 = 0


@needs_ort
def test_nbits_linear_matches_its_dequantized_weight_and_traces():
    torch.manual_seed(0)
    lin = nn.Linear(256, 96)
    layer = nbits.NBitsLinear(lin, threads=1)
    weight = layer.dequantized()
    assert (weight - lin.weight).abs().max() <= lin.weight.abs().max() / 14 + 1e-6  # half a 4-bit step
    x = torch.randn(3, 256)
    exact = x @ weight.t() + lin.bias
    cos = nn.functional.cosine_similarity(layer(x).flatten(), exact.flatten(), dim=0)
    assert cos > 0.999  # only the 8-bit activation rounding (accuracy_level 4)
    assert torch.equal(layer(x[1:2]), layer(x)[1:2])  # a row's result does not depend on its batch
    traced = torch.jit.trace(lambda row: layer.mm(row), (x[:1],))
    assert torch.equal(traced(x[2:3]), layer.mm(x[2:3]))  # the call is traced, not its result


@needs_ort
def test_onnxruntime_int4_engine_meets_the_int4_gates_and_speaks(tiny_custom_voice):
    torch.set_num_threads(2)
    kwargs = dict(device="cpu", dtype="float32", slots=1, guard=RunawayGuard(enabled=False))
    ref = Engine.load(tiny_custom_voice, **kwargs)
    test = Engine.load(tiny_custom_voice, **kwargs)
    backend = "fbgemm" if "fbgemm" in torch.backends.quantized.supported_engines else None
    try:
        quantize_talker(test.talker, "int4", int8_kernel=backend, int4_kernel="onnxruntime")
        layer = test.talker.model.layers[0]
        assert any(isinstance(m, nbits.NBitsLinear) for m in layer.modules())
    except BaseException:
        ref.close()
        test.close()
        raise
    _meets_gates_and_speaks(ref, test, "int4")


# -- quantize=int8 through 8-bit MatMulNBits (the `auto` default on AVX2 with the cpu4bit extra) -----------


def test_8bit_block_quantization_is_symmetric_around_128():
    w = torch.zeros(2, 64)
    w[0, :32] = torch.linspace(-127, 127, 32)  # block absmax 127: scale 1, codes = round(w) + 128
    w[1, 32:] = -0.25
    codes, scales = nbits.quantize_blocks(w, bits=8, block=32)
    assert codes.shape == (2, 2, 32) and codes.dtype == np.uint8 and scales.shape == (2, 2)
    assert scales[0, 0] == pytest.approx(1.0) and scales[1, 1] == pytest.approx(0.25 / 127)
    assert codes[0, 0].tolist() == (torch.round(torch.linspace(-127, 127, 32)) + 128).int().tolist()
    assert (codes[1, 1] == 1).all() and (codes[1, 0] == 128).all()  # -absmax -> 1; zero blocks -> 128
    with pytest.raises(ValueError):
        nbits.quantize_blocks(w, bits=2)


@needs_ort
@pytest.mark.parametrize("block", [32, 64])
def test_8bit_nbits_linear_matches_a_plain_matmul_of_its_weight(block):
    torch.manual_seed(1)
    lin = nn.Linear(256, 80)
    layer = nbits.NBitsLinear(lin, threads=1, bits=8, block=block)
    weight = layer.dequantized()
    blocks = lin.weight.detach().reshape(80, 256 // block, block)
    half_step = (blocks.abs().amax(dim=-1, keepdim=True) / 254).expand_as(blocks).reshape(80, 256)
    assert ((weight - lin.weight).abs() <= half_step + 1e-6).all()  # round to nearest, per block
    x = torch.randn(4, 256)
    exact = x @ weight.t() + lin.bias
    got = layer(x)
    # Only the 8-bit activation rounding per block (accuracy_level 4): |error| <= sum |w| * |x|max / 254.
    bound = (weight.abs() @ x.abs().reshape(4, -1, block).amax(-1).repeat_interleave(block, 1).t()).t() / 254
    assert ((got - exact).abs() <= bound + 1e-4).all()
    assert nn.functional.cosine_similarity(got.flatten(), exact.flatten(), dim=0) > 0.9999
    for i in range(4):  # a row's result does not depend on its batch
        assert torch.equal(layer(x[i : i + 1]), got[i : i + 1])
    traced = torch.jit.trace(lambda row: layer.mm(row), (x[:1],))
    assert torch.equal(traced(x[2:3]), layer.mm(x[2:3]))
    assert "bits=8" in repr(layer) and layer.nbytes == 80 * 256 + 4 * 80 * (256 // block)


@pytest.mark.parametrize("cpu_class", [AVX2, AVX512_BF16])
def test_auto_runs_8bit_nbits_where_measured_faster_and_the_extra_is_installed(cpu_class, monkeypatch):
    monkeypatch.setattr(nbits, "available", lambda: True)
    p = compute_plan(CPU, "auto", "auto", _cpu(cpu_class))
    assert (p.quantize, p.int8_kernel, p.dtype) == ("int8", "onnxruntime", torch.float32)
    assert not p.warnings and "onnxruntime int8 kernel" in p.describe()
    monkeypatch.setenv("WYOMING_QWEN3TTS_INT8_KERNEL", "dynamic")  # today's fbgemm path, for comparisons
    assert compute_plan(CPU, "auto", "auto", _cpu(cpu_class)).int8_kernel == _cpu(cpu_class).int8_backend
    monkeypatch.delenv("WYOMING_QWEN3TTS_INT8_KERNEL")
    monkeypatch.setattr(nbits, "available", lambda: False)  # without the extra: fbgemm, as before
    assert compute_plan(CPU, "auto", "auto", _cpu(cpu_class)).int8_kernel == _cpu(cpu_class).int8_backend


@pytest.mark.parametrize("cpu_class", [AVX512, ARM64, ARM64_BF16])
def test_other_classes_keep_their_int8_kernel_unless_asked(cpu_class, monkeypatch):
    monkeypatch.setattr(nbits, "available", lambda: True)
    expected = _cpu(cpu_class).int8_backend or ("weight-only" if cpu_class.startswith("avx512") else None)
    assert compute_plan(CPU, "auto", "auto", _cpu(cpu_class)).int8_kernel == expected
    monkeypatch.setenv("WYOMING_QWEN3TTS_INT8_KERNEL", "onnxruntime")
    assert compute_plan(CPU, "auto", "int8", _cpu(cpu_class)).int8_kernel == "onnxruntime"
    monkeypatch.setattr(nbits, "available", lambda: False)
    p = compute_plan(CPU, "auto", "int8", _cpu(cpu_class))
    assert p.int8_kernel != "onnxruntime" and any("cpu4bit extra is not installed" in w for w in p.warnings)


@pytest.mark.parametrize("cpu_class", [ARM64, ARM64_BF16])
def test_arm64_runs_8bit_nbits_only_with_the_dot_product(cpu_class, monkeypatch):
    """MLAS's ARM64 8-bit kernel needs dotprod (Cortex-A76 / Raspberry Pi 5 and later); without it
    (Cortex-A72 / Raspberry Pi 4) MatMulNBits would dequantize every call, so QNNPACK stays."""
    monkeypatch.setattr(nbits, "available", lambda: True)
    a76 = CpuInfo(cpu_class, "Cortex-A76", frozenset({"fp", "asimd", "asimddp"}), "DEFAULT")
    p = compute_plan(CPU, "auto", "auto", a76)
    assert (p.quantize, p.int8_kernel, p.dtype) == ("int8", "onnxruntime", torch.float32)
    assert p.codec_dtype == (torch.bfloat16 if cpu_class == ARM64_BF16 else torch.float32) and not p.warnings
    a72 = CpuInfo(cpu_class, "Cortex-A72", frozenset({"fp", "asimd"}), "DEFAULT")
    assert compute_plan(CPU, "auto", "auto", a72).int8_kernel == a72.int8_backend
    monkeypatch.setenv("WYOMING_QWEN3TTS_INT8_KERNEL", "dynamic")  # QNNPACK on request
    assert compute_plan(CPU, "auto", "auto", a76).int8_kernel == a76.int8_backend
    monkeypatch.delenv("WYOMING_QWEN3TTS_INT8_KERNEL")
    monkeypatch.setattr(nbits, "available", lambda: False)  # without the cpu4bit extra
    assert compute_plan(CPU, "auto", "auto", a76).int8_kernel == a76.int8_backend


@pytest.mark.skipif("qnnpack" not in torch.backends.quantized.supported_engines, reason="no QNNPACK")
def test_a_wrong_kernel_on_arm64_falls_back_to_qnnpack(monkeypatch):
    """`nbits.kernel_ok` stays the safety net on ARM64: its own backend, not the slow weight-only one."""
    from wyoming_qwen3tts.engine import quant

    monkeypatch.setattr(nbits, "kernel_ok", lambda bits=8: False)
    monkeypatch.setattr(
        quant, "cpu_info", lambda: CpuInfo(ARM64, "Cortex-A76", frozenset({"asimddp"}), "DEFAULT")
    )
    convert = quant.converter("int8", torch.float32, pack=False, int8_kernel="onnxruntime")
    for name in ("qkv_proj", "o_proj", "down_proj"):  # every matrix int8: no fbgemm fp16 matrices on ARM
        layer = convert(nn.Linear(128, 64, bias=False), False, name)
        assert isinstance(layer, DynamicInt8Linear) and layer.backend == "qnnpack"


@needs_ort
def test_onnxruntime_int8_engine_meets_the_int8_gates_and_speaks(tiny_custom_voice, monkeypatch):
    """Through the load path (policy -> loading -> quant.converter), as `auto` on AVX2 runs it."""
    torch.set_num_threads(2)
    kwargs = dict(device="cpu", dtype="float32", slots=1, guard=RunawayGuard(enabled=False))
    ref = Engine.load(tiny_custom_voice, **kwargs)
    monkeypatch.setenv("WYOMING_QWEN3TTS_INT8_KERNEL", "onnxruntime")
    test = Engine.load(tiny_custom_voice, quantize="int8", **kwargs)
    try:
        assert test.plan.int8_kernel == "onnxruntime"
        found = [m for m in test.talker.modules() if isinstance(m, nbits.NBitsLinear)]
        assert found and all(m.bits == 8 for m in found)
        assert isinstance(test.talker.codec_head, nbits.NBitsLinear)  # the heads too: no fp16 matrices
        assert test.talker.model.blocks is not None  # one graph per layer (ortblocks.py, test_ortblocks.py)
    except BaseException:
        ref.close()
        test.close()
        raise
    _meets_gates_and_speaks(ref, test, "int8")


@needs_ort
def test_a_kernel_that_multiplies_wrong_falls_back_to_fbgemm(tiny_custom_voice, monkeypatch):
    assert nbits.kernel_ok(8)  # the real check on this CPU: a single row against its dequantized weight
    monkeypatch.setattr(nbits, "kernel_ok", lambda bits=8: False)
    engine = Engine.load(tiny_custom_voice, device="cpu", dtype="float32", slots=1, quantize="none")
    try:
        quantize_talker(engine.talker, "int8", int8_kernel="onnxruntime")
        assert not any(isinstance(m, nbits.NBitsLinear) for m in engine.talker.modules())
        if "fbgemm" in torch.backends.quantized.supported_engines:
            attn = engine.talker.model.layers[0].self_attn
            assert isinstance(attn.qkv_proj, DynamicInt8Linear) and isinstance(attn.o_proj, Fp16Linear)
    finally:
        engine.close()


@needs_ort
def test_a_layer_takes_its_session_with_it():
    import gc

    layer = nbits.NBitsLinear(nn.Linear(64, 32), threads=1, bits=8)
    handle = layer.session_handle()
    assert nbits._SESSIONS[handle] is not None
    del layer
    gc.collect()
    assert nbits._SESSIONS[handle] is None  # an unloaded engine leaves no weights behind


def _meets_gates_and_speaks(ref: Engine, test: Engine, mode: str) -> None:
    """``test`` (quantized) within ``mode``'s gates against ``ref`` (unquantized), and speaks; closes both."""
    try:
        figures = measure(ref, test, "Hello world, this is a small test.", "ryan", 60).as_dict()
        result = test.synthesize(
            SpeechRequest("Hello there.", speaker="ryan", sampling=SamplingParams.greedy(max_new_tokens=6))
        )
        assert len(result.codes) > 0 and np.isfinite(result.audio).all()
    finally:
        ref.close()
        test.close()
    failed = gate_misses(mode, figures)
    assert not failed, f"{mode} misses its gates: {failed}"
