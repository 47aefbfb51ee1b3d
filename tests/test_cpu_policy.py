"""Kernels and dtypes chosen by the CPU class (issue 14): detection, the compute plan, dynamic int8 kernels.

The plan is a pure function of the device and the CPU's facts, so every CPU class is tested here on any
machine with a hand-made CpuInfo; the kernels run wherever PyTorch has them built in (x86-64 wheels carry
both fbgemm and QNNPACK, so the ARM kernel's numbers are checked on x86 too).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from wyoming_qwen3tts.diagnostics.quant_check import measure
from wyoming_qwen3tts.engine import Engine, RunawayGuard, SamplingParams, SpeechRequest, compute_plan, nbits
from wyoming_qwen3tts.engine.cpu import (
    ARM64,
    ARM64_BF16,
    AVX2,
    AVX512,
    AVX512_BF16,
    OTHER,
    CpuInfo,
    _parse_cpuinfo,
    classify,
    cpu_info,
)
from wyoming_qwen3tts.engine.quant import DynamicInt8Linear, Int8Linear, gate_misses, quantize_talker

ENGINES = torch.backends.quantized.supported_engines
BACKENDS = [b for b in ("fbgemm", "qnnpack") if b in ENGINES]
X86 = frozenset({"sse4_2", "avx", "avx2", "fma"})
AVX512_FLAGS = X86 | {"avx512f", "avx512bw", "avx512vl"}
CPU = torch.device("cpu")


def _cpu(cpu_class: str) -> CpuInfo:
    return CpuInfo(cpu_class=cpu_class, model="test CPU", flags=frozenset(), capability="AVX2")


# -- detection -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "machine, flags, capability, onednn, expected",
    [
        ("x86_64", X86, "AVX2", "", AVX2),  # Intel N100, Ryzen 5000
        ("x86_64", AVX512_FLAGS, "AVX512", "", AVX512),  # Skylake-X, Ice Lake
        ("x86_64", AVX512_FLAGS | {"avx512_bf16"}, "AVX512", "", AVX512_BF16),  # Zen 4
        ("x86_64", AVX512_FLAGS | {"amx_bf16"}, "AVX512", "", AVX512_BF16),  # Sapphire Rapids
        ("x86_64", AVX512_FLAGS | {"avx512_bf16"}, "AVX2", "", AVX2),  # ATEN_CPU_CAPABILITY=avx2
        ("x86_64", AVX512_FLAGS | {"avx512_bf16"}, "AVX512", "AVX2", AVX2),  # ONEDNN_MAX_CPU_ISA=AVX2
        ("x86_64", frozenset({"sse4_2"}), "DEFAULT", "", OTHER),  # below AVX2
        ("aarch64", frozenset({"fp", "asimd", "asimddp"}), "DEFAULT", "", ARM64),  # Raspberry Pi 5
        ("aarch64", frozenset({"asimd", "bf16", "i8mm"}), "DEFAULT", "", ARM64_BF16),  # Graviton 3
        ("riscv64", frozenset(), "DEFAULT", "", OTHER),
    ],
)
def test_cpu_classes(machine, flags, capability, onednn, expected):
    assert classify(machine, flags, capability, onednn) == expected


def test_cpuinfo_parsing_x86_and_arm():
    x86 = "processor\t: 0\nmodel name\t: Intel(R) N100\nflags\t\t: fpu sse4_2 avx2 fma\n\nprocessor\t: 1\n"
    model, flags = _parse_cpuinfo(x86)
    assert model == "Intel(R) N100" and {"avx2", "fma"} <= flags
    arm = (
        "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 asimddp\nCPU part\t: 0xd0b\n"
    )
    assert "asimddp" in _parse_cpuinfo(arm)[1]


@pytest.mark.skipif(
    "avx2" not in cpu_info().flags, reason="needs an x86-64 CPU with AVX2 to emulate the AVX2 class"
)
def test_avx2_emulation_is_detected_in_a_fresh_process():
    """ATEN_CPU_CAPABILITY=avx2 + ONEDNN_MAX_CPU_ISA=AVX2 (how an AVX-512 machine reproduces AVX2 hosts)."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    code = "from wyoming_qwen3tts.engine.cpu import cpu_info; print(cpu_info().cpu_class)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == AVX2


# -- the compute plan ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cpu_class, dtype, codec",
    [
        (AVX2, torch.float32, torch.float32),
        (AVX512, torch.float32, torch.float32),
        (AVX512_BF16, torch.float32, torch.bfloat16),
        (ARM64, torch.float32, torch.float32),
    ],
)
def test_auto_is_int8_with_fp32_activations_on_every_cpu_class(cpu_class, dtype, codec, monkeypatch):
    # Without the cpu4bit extra; with it, AVX2 runs 8-bit MatMulNBits instead (tests/test_nbits.py).
    monkeypatch.setattr(nbits, "available", lambda: False)
    p = compute_plan(CPU, "auto", "auto", _cpu(cpu_class))
    backend = _cpu(cpu_class).int8_backend
    if backend is None:  # a PyTorch build without this class's backend (e.g. fbgemm on an ARM wheel)
        pytest.skip(f"no int8 backend for {cpu_class} in this PyTorch build")
    assert (p.quantize, p.int8_kernel, p.dtype, p.codec_dtype) == ("int8", backend, dtype, codec)
    assert not p.warnings
    assert backend in p.describe() and "int8" in p.describe()


@pytest.mark.parametrize("cpu_class", [AVX2, AVX512_BF16, ARM64])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_quantize_auto_applies_with_dtype_auto_only(cpu_class, dtype):
    """A user who names a dtype gets it unquantized; --quantize int8 still quantizes; the log says why."""
    p = compute_plan(CPU, dtype, "auto", _cpu(cpu_class))
    assert (p.quantize, p.int8_kernel, p.dtype) == ("none", None, getattr(torch, dtype))
    assert "explicit dtype" in p.describe() and "no quantization" in p.describe()
    if _cpu(cpu_class).int8_backend is not None:
        assert compute_plan(CPU, dtype, "int8", _cpu(cpu_class)).quantize == "int8"
        auto = compute_plan(CPU, "auto", "auto", _cpu(cpu_class))
        assert auto.quantize == "int8" and "quantize=auto with dtype=auto" in auto.describe()


@pytest.mark.parametrize("cpu_class", [AVX2, AVX512, ARM64])
def test_codec_never_runs_emulated_bf16(cpu_class):
    p = compute_plan(CPU, "bfloat16", "none", _cpu(cpu_class))
    assert p.dtype == torch.bfloat16 and p.codec_dtype == torch.float32
    assert any("no native bfloat16" in w for w in p.warnings)


@pytest.mark.parametrize("cpu_class", [AVX512_BF16, ARM64_BF16])
def test_native_bf16_keeps_bf16_everywhere(cpu_class):
    p = compute_plan(CPU, "bfloat16", "none", _cpu(cpu_class))
    assert p.dtype == p.codec_dtype == torch.bfloat16 and not p.warnings
    # Unquantized auto on a native-bf16 CPU is bf16 (measured 2.3x faster than fp32 there).
    assert compute_plan(CPU, "auto", "none", _cpu(cpu_class)).dtype == torch.bfloat16
    assert compute_plan(CPU, "auto", "none", _cpu(AVX2)).dtype == torch.float32


@pytest.mark.parametrize("cpu_class", [AVX2, ARM64])
def test_int4_without_its_kernel_falls_back_to_int8_with_a_warning(cpu_class, monkeypatch):
    if _cpu(cpu_class).int8_backend is None:
        pytest.skip(f"no int8 backend for {cpu_class} in this PyTorch build")
    monkeypatch.setattr(nbits, "available", lambda: False)  # without the cpu4bit extra (issue 24)
    p = compute_plan(CPU, "auto", "int4", _cpu(cpu_class))
    assert p.quantize == "int8"
    assert any("int4 has no fast kernel" in w and "using int8" in w for w in p.warnings)


def test_int4_stays_on_avx512_with_bf16_activations():
    p = compute_plan(CPU, "auto", "int4", _cpu(AVX512_BF16))
    assert (p.quantize, p.dtype) == ("int4", torch.bfloat16)


def test_a_cpu_without_int8_kernels_is_not_quantized_silently():
    p = compute_plan(CPU, "auto", "int8", _cpu(OTHER))
    assert p.quantize == "none" and p.int8_kernel is None
    assert any("no fast kernel" in w for w in p.warnings)
    assert compute_plan(CPU, "auto", "auto", _cpu(OTHER)).quantize == "none"


def test_weight_only_kernel_can_be_forced_for_comparisons(monkeypatch):
    monkeypatch.setenv("WYOMING_QWEN3TTS_INT8_KERNEL", "weight-only")
    p = compute_plan(CPU, "auto", "int8", _cpu(AVX512_BF16))
    assert (p.int8_kernel, p.dtype) == ("weight-only", torch.bfloat16)


def test_gpu_plan_is_bf16_unquantized_and_quantization_is_refused():
    gpu = torch.device("cuda")
    p = compute_plan(gpu, "auto", "auto")
    assert (p.dtype, p.quantize, p.codec_dtype, p.int8_kernel) == (
        torch.bfloat16,
        "none",
        torch.bfloat16,
        None,
    )
    with pytest.raises(ValueError, match="CPU only"):
        compute_plan(gpu, "auto", "int8")


def test_unknown_values_name_the_choices():
    with pytest.raises(ValueError, match="auto, none, int8, int4"):
        compute_plan(CPU, "auto", "int3")
    with pytest.raises(ValueError, match="auto, float32"):
        compute_plan(CPU, "float8", "auto")


def test_settings_refuse_unknown_modes_in_one_line():
    from wyoming_qwen3tts.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="auto, none, int8, int4"):
        load_settings(["--quantize", "int3"], {})


# -- the dynamic int8 kernels --------------------------------------------------------------------------------


def _linear(n: int, k: int, bias: bool = True, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    lin = nn.Linear(k, n, bias=bias)
    nn.init.normal_(lin.weight, std=k**-0.5)
    return lin


@pytest.mark.parametrize("backend", BACKENDS)
def test_dynamic_int8_matches_its_weights_within_activation_rounding(backend):
    lin = _linear(384, 256)
    q = DynamicInt8Linear(lin, backend)
    w = lin.weight.detach()
    deq = q.dequantized()
    # Per-channel symmetric int8: every weight within half a step of its channel's scale.
    step = w.abs().amax(dim=1, keepdim=True) / 127
    assert ((deq - w).abs() <= step / 2 + 1e-7).all()
    x = torch.randn(5, 256)
    with torch.inference_mode():
        out = q.mm(x)
    exact = nn.functional.linear(x, deq, lin.bias.detach())
    # Activations are rounded to 8 (fbgemm: 7) bits per row: error of order |x|max / 2^7 per term.
    cos = nn.functional.cosine_similarity(out, exact, dim=1)
    assert cos.min() > 0.999, cos
    rel = (out - exact).norm() / exact.norm()
    assert rel < 0.02, rel


@pytest.mark.parametrize("backend", BACKENDS)
def test_dynamic_int8_rows_do_not_depend_on_their_batch(backend):
    """Each request's row is quantized on its own: seeded requests reproduce alone or batched."""
    q = DynamicInt8Linear(_linear(128, 64), backend)
    x = torch.randn(4, 64)
    x[2] *= 50  # a loud row must not change its neighbours' rounding
    with torch.inference_mode():
        batched = q.mm(x)
        alone = torch.cat([q.mm(x[i : i + 1]) for i in range(4)])
        prompt = q(x[None])  # one request's prompt: [1, T, K]
        two = q(torch.stack([x[:2], x[2:]]))  # two prompts of equal length: per request
    assert torch.equal(batched, alone)
    assert prompt.shape == (1, 4, 128)
    assert torch.equal(two[0], q(x[None, :2])[0]) and torch.equal(two[1], q(x[None, 2:])[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_dynamic_int8_keeps_the_activation_dtype(backend):
    q = DynamicInt8Linear(_linear(64, 32, bias=False).to(torch.bfloat16), backend)
    x = torch.randn(2, 32).to(torch.bfloat16)
    with torch.inference_mode():
        assert q.mm(x).dtype == torch.bfloat16
        assert q(x[None]).shape == (1, 2, 64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dynamic_int8_engine_meets_the_int8_gates(tiny_custom_voice, backend):
    """Both backends (fbgemm: x86-64, QNNPACK: ARM) against the unquantized fp32 engine, teacher-forced."""
    torch.set_num_threads(2)
    kwargs = dict(device="cpu", dtype="float32", slots=1, guard=RunawayGuard(enabled=False))
    ref = Engine.load(tiny_custom_voice, **kwargs)
    test = Engine.load(tiny_custom_voice, **kwargs)
    try:
        quantize_talker(test.talker, "int8", int8_kernel=backend)
        assert isinstance(test.talker.codec_head, DynamicInt8Linear)
        text = "Hello world, this is a small test of the quantized engine."  # as tests/test_quant.py
        figures = measure(ref, test, text, "ryan", 100).as_dict()
    finally:
        ref.close()
        test.close()
    failed = gate_misses("int8", figures)
    assert not failed, f"{backend}: int8 misses its gates: {failed}"


def test_weight_only_int8_stays_available(tiny_custom_voice, monkeypatch):
    monkeypatch.setenv("WYOMING_QWEN3TTS_INT8_KERNEL", "weight-only")
    engine = Engine.load(tiny_custom_voice, device="cpu", dtype="float32", slots=1, quantize="int8")
    try:
        assert isinstance(engine.talker.codec_head, Int8Linear) and engine.plan.int8_kernel == "weight-only"
    finally:
        engine.close()


# -- memory --------------------------------------------------------------------------------------------------


def test_fp32_engine_keeps_the_text_embedding_in_the_files_bf16(tmp_path):
    """An fp32 copy of the 151,936 x 2048 table would hold 1.2 GB; bf16 rows widen exactly."""
    from tests.fixtures.checkpoint_builder import build_checkpoint

    path = tmp_path / "cv-bf16"
    build_checkpoint(path, "custom_voice", preset="tiny", seed=0, dtype="bfloat16")
    kwargs = dict(device="cpu", slots=1, guard=RunawayGuard(enabled=False))
    fp32 = Engine.load(path, dtype="float32", **kwargs)
    try:
        emb = fp32.talker.model.text_embedding.weight
        assert emb.dtype == torch.bfloat16
        ids = torch.tensor([[1, 5, 99]])
        widened = fp32.talker.model.text_embedding(ids).float()
        assert torch.equal(widened, emb.float()[ids])
        with torch.inference_mode():
            assert fp32.talker.embed_text(ids).dtype == torch.float32
        req = SpeechRequest("Hello.", speaker="ryan", sampling=SamplingParams.greedy(max_new_tokens=4))
        result = fp32.synthesize(req, timeout=120)
        assert result.codes.shape[1] == 16 and np.isfinite(result.audio).all()
    finally:
        fp32.close()


def _rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def test_kv_cache_commits_only_the_positions_written():
    """64 MB of cache, one position written per head: a few pages resident, not the whole cache (numpy's
    zeros would be MADV_HUGEPAGE and commit 2 MB per touched page with THP in madvise mode)."""
    from wyoming_qwen3tts.engine.kvcache import KVCache

    before = _rss_kb()
    cache = KVCache(
        layers=4, slots=2, kv_heads=8, max_len=1024, head_dim=128, dtype=torch.float32, device="cpu"
    )
    assert cache.bytes == 64 * 2**20
    for layer in range(4):
        cache.append(layer, 2, 0, torch.ones(2, 8, 128), torch.ones(2, 8, 128))
    grown_mb = (_rss_kb() - before) / 1024
    assert grown_mb < 8, grown_mb
    assert cache.k[0, 0, 0, 0].eq(1).all() and cache.k[0, 0, 0, 1].eq(0).all()


def test_quantized_fp32_engine_reads_the_stored_bf16_matrices(tmp_path):
    """int8 from a bf16 checkpoint with fp32 activations: the matrices go from the file straight to int8
    (no fp32 copy of the whole talker at load), norms are fp32; the tables only looked up (text and codec
    embeddings) stay bf16 and their rows are widened (issue 24)."""
    from tests.fixtures.checkpoint_builder import build_checkpoint

    path = tmp_path / "cv-bf16"
    build_checkpoint(path, "custom_voice", preset="tiny", seed=0, dtype="bfloat16")
    engine = Engine.load(path, device="cpu", dtype="float32", quantize="int8", slots=1)
    try:
        talker = engine.talker
        assert talker.dtype == torch.float32 and talker.model.codec_embedding.weight.dtype == torch.bfloat16
        assert talker.embed_codec(torch.tensor([[1]])).dtype == torch.float32
        assert talker.model.layers[0].input_layernorm.weight.dtype == torch.float32
        assert talker.model.text_embedding.weight.dtype == torch.bfloat16
        req = SpeechRequest("Hello.", speaker="ryan", sampling=SamplingParams.greedy(max_new_tokens=4))
        assert np.isfinite(engine.synthesize(req, timeout=120).audio).all()
    finally:
        engine.close()


@pytest.mark.skipif("fbgemm" not in ENGINES, reason="fbgemm is PyTorch's x86-64 backend")
def test_fbgemm_keeps_the_output_projections_16_bit(tiny_custom_voice):
    """7-bit activations hurt most at the two output projections (measured, see quant.FP16_UNDER_FBGEMM)."""
    from wyoming_qwen3tts.engine.quant import FP16_UNDER_FBGEMM, Fp16Linear

    assert FP16_UNDER_FBGEMM == ("down_proj", "o_proj")
    engine = Engine.load(tiny_custom_voice, device="cpu", dtype="float32", slots=1)
    try:
        quantize_talker(engine.talker, "int8", int8_kernel="fbgemm")
        for stack in (engine.talker.model, engine.talker.code_predictor.model):
            for layer in stack.layers:
                assert isinstance(layer.mlp.down_proj, Fp16Linear)
                assert isinstance(layer.self_attn.o_proj, Fp16Linear)
                assert isinstance(layer.self_attn.qkv_proj, DynamicInt8Linear)
                assert isinstance(layer.mlp.gate_up_proj, DynamicInt8Linear)
    finally:
        engine.close()
    lin = _linear(96, 128)
    f16 = Fp16Linear(lin)
    x = torch.randn(3, 128)
    exact = nn.functional.linear(x, lin.weight.detach().half().float(), lin.bias.detach())
    with torch.inference_mode():
        assert torch.allclose(f16.mm(x), exact, atol=1e-5, rtol=1e-5)
        assert torch.equal(f16(x[None])[0], f16.mm(x))
    assert torch.equal(f16.dequantized(), lin.weight.detach().half().float())


# -- fewer threads under contention --------------------------------------------------------------------------


def test_thread_decision_has_hysteresis():
    from wyoming_qwen3tts.engine.threads import wanted_threads

    # 2 threads on 2 cores leave nothing free: another busy core means contention.
    assert wanted_threads(0.1, 2, 2, 2) == 2
    assert wanted_threads(0.9, 2, 2, 2) == 1
    assert wanted_threads(0.5, 1, 2, 2) == 1  # between the marks: stay
    assert wanted_threads(0.1, 1, 2, 2) == 2
    # 2 threads on 4 cores leave 2 free: 2.5 busy cores elsewhere is fine, 3 is not.
    assert wanted_threads(2.5, 2, 2, 4) == 2 and wanted_threads(3.0, 2, 2, 4) == 1
    assert wanted_threads(5.0, 1, 1, 2) == 1  # one thread configured: nothing to drop


def test_governor_samples_the_load_and_sets_torch_threads(monkeypatch):
    from wyoming_qwen3tts.engine import threads

    calls: list[int] = []
    monkeypatch.setattr(threads.torch, "set_num_threads", calls.append)
    clock, machine, own = [0.0], [0.0], [0.0]
    gov = threads.ThreadGovernor(
        configured=2, clock=lambda: clock[0], machine=lambda: machine[0], own=lambda: own[0], cores=2
    )
    gov.enabled = True  # independent of /proc on the test machine

    def advance(seconds: float, ours: float, others: float) -> int:
        clock[0] += seconds
        own[0] += ours * seconds
        machine[0] += (ours + others) * seconds
        return gov.tick()

    assert gov.tick() == 2  # first sample: nothing to compare with
    assert advance(0.6, 2.0, 0.0) == 2
    assert advance(0.1, 0.5, 3.0) == 2  # inside the interval: no new decision
    # Issue 24: only a load that lasts threads.SUSTAIN_S (3 s) switches.
    assert [advance(0.6, 0.8, 1.2) for _ in range(4)] == [2, 2, 2, 2] and calls == []
    assert advance(0.6, 0.8, 1.2) == 1 and calls == [1]
    assert [advance(0.6, 1.0, 0.5) for _ in range(8)] == [1] * 8  # hysteresis
    back = [advance(0.6, 1.0, 0.1) for _ in range(6)]  # 3 s of 0.6 s steps (float sums: 5 or 6)
    assert back[:4] == [1] * 4 and back[-1] == 2 and calls == [1, 2]
    advance(0.6, 0.5, 1.5)
    gov.reset()
    assert gov.current == 2 and calls[-1] == 2


def test_server_engines_adapt_their_threads(tiny_custom_voice):
    from wyoming_qwen3tts.app import engine_loader
    from wyoming_qwen3tts.settings import load_settings

    engine = engine_loader(load_settings(["--device", "cpu", "--slots", "1"], {}))(str(tiny_custom_voice))
    try:
        assert engine.scheduler.governor is not None
    finally:
        engine.close()
    plain = Engine.load(tiny_custom_voice, device="cpu", slots=1)
    try:
        assert plain.scheduler.governor is None  # the library default keeps the thread count fixed
    finally:
        plain.close()
