"""Tests of the 12 Hz speech decoder: streaming exactness, causality, reference chunking, batching, errors."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn

from wyoming_qwen3tts.engine.codec import onednn
from wyoming_qwen3tts.engine.codec.decoder import DecoderConfig, DecoderState, SpeechDecoder
from wyoming_qwen3tts.engine.codec.modules import CausalConv, CausalTransConv

_LOGGER = logging.getLogger(__name__)

UPSAMPLE = 1920
TINY_CONFIG = {
    "codebook_size": 2048,
    "codebook_dim": 32,
    "num_quantizers": 16,
    "latent_dim": 32,
    "decoder_dim": 64,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "sliding_window": 72,
    "upsample_rates": [8, 5, 4, 3],
    "upsampling_ratios": [2, 2],
}
TOL = 1e-4


def randomize(module: nn.Module, seed: int = 0, gain: float = 0.7) -> nn.Module:
    """Non-zero, fan-in scaled random weights (gain 0.7 keeps the tiny decoder's output around +-3).

    Zero codebooks would make every code decode to the same vector and the tests pass vacuously.
    """
    g = torch.Generator().manual_seed(seed)

    def rand(shape: torch.Size, std: float) -> torch.Tensor:
        return torch.randn(shape, generator=g) * std

    with torch.no_grad():
        for _, mod in sorted(module.named_modules(), key=lambda kv: kv[0]):
            if isinstance(mod, nn.ConvTranspose1d):
                fan_in = mod.in_channels * mod.kernel_size[0] / mod.stride[0]
            elif isinstance(mod, nn.Conv1d):
                fan_in = mod.in_channels // mod.groups * mod.kernel_size[0]
            elif isinstance(mod, nn.Linear):
                fan_in = mod.in_features
            else:
                continue
            mod.weight.copy_(rand(mod.weight.shape, gain / fan_in**0.5))
            if mod.bias is not None:
                mod.bias.copy_(rand(mod.bias.shape, 0.02))
        for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("cluster_usage"):
                p.copy_(torch.rand(p.shape, generator=g) * 1.5 + 0.5)
            elif name.endswith("embedding_sum"):
                p.copy_(rand(p.shape, 1.0))
            elif name.endswith(("alpha", "beta")):
                p.copy_(rand(p.shape, 0.1))
            elif name.endswith(("scale", "gamma")):
                p.copy_(0.1 + rand(p.shape, 0.01))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + rand(p.shape, 0.1))
            elif "norm" in name and name.endswith("bias"):
                p.copy_(rand(p.shape, 0.02))
    return module


@pytest.fixture(scope="module")
def decoder() -> SpeechDecoder:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return randomize(SpeechDecoder.from_config(TINY_CONFIG)).eval()


def make_codes(batch: int, frames: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2048, (batch, 16, frames), generator=g)


def stream(dec: SpeechDecoder, codes: torch.Tensor, sizes: list[int], clamp: bool = False) -> torch.Tensor:
    state = dec.new_state(codes.shape[0])
    outs, start, i = [], 0, 0
    while start < codes.shape[-1]:
        n = sizes[i % len(sizes)]
        out = dec.step(codes[..., start : start + n], state, clamp=clamp)
        assert out.shape == (codes.shape[0], min(n, codes.shape[-1] - start) * UPSAMPLE)
        outs.append(out)
        start, i = start + n, i + 1
    assert int(state.pos[0]) == codes.shape[-1]
    return torch.cat(outs, dim=-1)


def test_parameter_names_follow_checkpoint_layout(decoder: SpeechDecoder) -> None:
    keys = set(decoder.state_dict())
    expected = {
        "quantizer.rvq_first.vq.layers.0._codebook.embedding_sum",
        "quantizer.rvq_first.vq.layers.0._codebook.cluster_usage",
        "quantizer.rvq_rest.vq.layers.14._codebook.embedding_sum",
        "quantizer.rvq_first.input_proj.weight",
        "quantizer.rvq_rest.output_proj.weight",
        "pre_conv.conv.weight",
        "pre_conv.conv.bias",
        "pre_transformer.input_proj.bias",
        "pre_transformer.output_proj.weight",
        "pre_transformer.norm.weight",
        "pre_transformer.layers.1.self_attn.q_proj.weight",
        "pre_transformer.layers.1.self_attn.o_proj.weight",
        "pre_transformer.layers.0.mlp.gate_proj.weight",
        "pre_transformer.layers.0.self_attn_layer_scale.scale",
        "pre_transformer.layers.0.mlp_layer_scale.scale",
        "pre_transformer.layers.0.post_attention_layernorm.weight",
        "upsample.1.0.conv.weight",
        "upsample.0.1.dwconv.conv.weight",
        "upsample.0.1.norm.bias",
        "upsample.0.1.pwconv2.weight",
        "upsample.0.1.gamma",
        "decoder.0.conv.weight",
        "decoder.1.block.0.alpha",
        "decoder.1.block.1.conv.weight",
        "decoder.4.block.4.conv1.conv.weight",
        "decoder.4.block.4.act2.beta",
        "decoder.5.alpha",
        "decoder.6.conv.bias",
    }
    assert expected <= keys
    assert not any("inv_freq" in k for k in keys)
    assert len([k for k in keys if k.endswith("embedding_sum")]) == 16
    assert decoder.quantizer.rvq_first.vq.layers[0]._codebook.embedding_sum.shape == (2048, 16)
    assert decoder.decoder[1].block[1].conv.weight.shape == (64, 32, 16)  # ConvTranspose k = 2r


def test_config_defaults() -> None:
    cfg = DecoderConfig.from_dict({})
    assert (cfg.hidden_size, cfg.latent_dim, cfg.decoder_dim, cfg.codebook_dim) == (1024, 1024, 1536, 512)
    assert cfg.head_dim == 1024 // 16 and cfg.sliding_window == 72 and cfg.total_upsample == 1920
    cfg = DecoderConfig.from_dict({**TINY_CONFIG, "semantic_codebook_size": 4096})
    assert cfg.upsample_rates == (8, 5, 4, 3) and cfg.head_dim == 16
    with pytest.raises(ValueError):
        DecoderConfig.from_dict({"rope_scaling": {"rope_type": "yarn", "factor": 2.0}})


def test_output_depends_on_codes(decoder: SpeechDecoder) -> None:
    codes = make_codes(1, 10)
    other = codes.clone()
    other[0, 7, 5] = (other[0, 7, 5] + 1) % 2048  # one acoustic code in frame 5
    a, b = decoder.decode(codes, clamp=False), decoder.decode(other, clamp=False)
    assert a.abs().max() > 0.1
    assert torch.equal(a[:, : 5 * UPSAMPLE], b[:, : 5 * UPSAMPLE])  # causal: earlier frames untouched
    assert (a - b)[:, 5 * UPSAMPLE :].abs().max() > 1e-3


@pytest.mark.parametrize(
    "sizes, frames",
    [([1], 150), ([2], 100), ([3], 100), ([1, 5, 2, 7], 150), ([13, 1, 40], 150)],
    ids=["1", "2", "3", "1-5-2-7", "13-1-40"],
)
def test_stream_equals_full(decoder: SpeechDecoder, sizes: list[int], frames: int) -> None:
    codes = make_codes(2, frames)  # longer than the 72-frame attention window
    full = decoder.decode(codes, clamp=False)
    assert full.shape == (2, frames * UPSAMPLE) and full.dtype == torch.float32
    streamed = stream(decoder, codes, sizes)
    assert (streamed - full).abs().max().item() <= TOL
    assert (streamed.clamp(-1, 1) - decoder.decode(codes)).abs().max().item() <= TOL


@pytest.mark.parametrize("path", ["gemm", "native", "gemm-plain"])
def test_kernel_paths_agree(decoder: SpeechDecoder, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Convs pick an im2col GEMM or the native conv by size; force each path everywhere. On CPU the
    # transposed convs' GEMM runs on oneDNN-packed weights; "gemm-plain" forces the plain GEMM instead.
    codes = make_codes(1, 90)
    default = decoder.decode(codes, clamp=False)
    ratio = 10**9 if path == "native" else 0
    monkeypatch.setattr(CausalConv, "gemm_ratio", ratio)
    monkeypatch.setattr(CausalTransConv, "gemm_ratio", ratio)
    monkeypatch.setattr(onednn, "ENABLED", path != "gemm-plain")
    assert (decoder.decode(codes, clamp=False) - default).abs().max().item() <= TOL
    assert (stream(decoder, codes, [1, 4, 2, 7]) - default).abs().max().item() <= TOL


@pytest.mark.parametrize("c_out, dilation", [(1, 1), (2, 3)])
def test_narrow_conv_equals_conv1d(c_out: int, dilation: int) -> None:
    # Few output channels (the real final 96 -> 1 conv) take a GEMM of all taps + shifted adds.
    conv = randomize(CausalConv(32, c_out, 7, dilation=dilation), seed=3)
    x = torch.randn(2, 32, 50, generator=torch.Generator().manual_seed(4))
    caches = [torch.zeros(2, *conv.cache_shape())]
    conv.slot = 0
    with torch.inference_mode():
        full = conv.conv(nn.functional.pad(x, (conv.cache_len, 0)))
        streamed = torch.cat([conv(x[..., s : s + 9], caches) for s in range(0, 50, 9)], dim=-1)
    assert streamed.shape == full.shape
    assert (streamed - full).abs().max().item() <= 1e-5


def test_packed_weights_follow_weight_changes(decoder: SpeechDecoder) -> None:
    # The packed copy of a transposed conv is rebuilt when its weight changes in place (PackCache key).
    dec = copy.deepcopy(decoder)
    codes = make_codes(1, 12)
    before = dec.decode(codes, clamp=False)  # packs the upsample transposed convs (k == s: GEMM path)
    with torch.no_grad():
        dec.upsample[0][0].conv.weight.mul_(0.5)
    after = dec.decode(codes, clamp=False)
    onednn.ENABLED = False
    try:
        plain = dec.decode(codes, clamp=False)
    finally:
        onednn.ENABLED = True
    assert (after - before).abs().max().item() > 10 * TOL
    assert (after - plain).abs().max().item() <= TOL


def test_keep_packed_only_frees_the_plain_weight_and_decodes_the_same(decoder: SpeechDecoder) -> None:
    # The loader's CPU fp32 decoder: transposed convs that stream as packed GEMMs hold no plain weight.
    codes = make_codes(1, 90)
    full, streamed = decoder.decode(codes, clamp=False), stream(decoder, codes, [1, 4, 2, 7])
    dec = copy.deepcopy(decoder)
    freed = dec.keep_packed_only()
    layers = [m for m in dec.modules() if isinstance(m, CausalTransConv)]
    released = [m for m in layers if m.conv.weight.is_meta]
    # Tiny config: the first upsample stage (32 channels, 1 sample per frame) only; real 0.6B: three layers.
    assert released == [dec.upsample[0][0]]
    assert freed == sum(m.conv.weight.numel() * 4 for m in released)
    assert all(m._packed._packed is None for m in layers)  # no second packed copy either
    assert (dec.decode(codes, clamp=False) - full).abs().max().item() <= TOL
    assert (stream(dec, codes, [1, 4, 2, 7]) - streamed).abs().max().item() <= TOL
    # state_dict still yields the plain weights, exactly; loading one restores a plain weight first.
    plain = decoder.state_dict()
    assert all(torch.equal(v, plain[k]) for k, v in dec.state_dict().items())
    twin = copy.deepcopy(dec)  # shares the packed matrix
    assert torch.equal(twin.decode(codes, clamp=False), dec.decode(codes, clamp=False))
    dec.load_state_dict(plain, strict=True)
    assert not dec.upsample[0][0].conv.weight.is_meta
    assert torch.equal(dec.decode(codes, clamp=False), full)


@pytest.mark.parametrize("n", [3, 40])
def test_packed_only_transposed_conv_long_inputs(n: int) -> None:
    # An overlapping kernel (the real 1536 -> 768 block: k 16, stride 8) packed for good takes the packed
    # GEMM for long inputs too, where the plain layer runs conv_transpose1d.
    layer = randomize(CausalTransConv(64, 24, 16, 8), seed=5)
    layer.slot = 0
    x = torch.randn(2, 64, n, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        caches = [torch.zeros(2, *layer.cache_shape())]
        ref = torch.cat([layer(x[..., s : s + 7], caches) for s in range(0, n, 7)], dim=-1)
        assert layer.keep_packed_only() == 64 * 24 * 16 * 4 and layer.conv.weight.is_meta
        caches = [torch.zeros(2, *layer.cache_shape())]
        whole = layer(x, caches)  # one call: 2 * 40 * 32 > 64 channels took conv_transpose1d before
    assert whole.shape == ref.shape == (2, 24, n * 8)
    assert (whole - ref).abs().max().item() <= 1e-5


def test_decode_internal_chunking_is_exact(decoder: SpeechDecoder) -> None:
    codes = make_codes(1, 150)
    dec = copy.deepcopy(decoder)
    dec.decode_chunk_frames = 1000  # a single forward
    single = dec.decode(codes, clamp=False)
    assert (decoder.decode(codes, clamp=False) - single).abs().max().item() <= TOL


def test_prefix_causality(decoder: SpeechDecoder) -> None:
    codes = make_codes(1, 120)
    full = decoder.decode(codes, clamp=False)
    for t in (1, 37, 90):
        prefix = decoder.decode(codes[..., :t], clamp=False)
        assert (prefix - full[:, : t * UPSAMPLE]).abs().max().item() <= TOL


def test_clamp(decoder: SpeechDecoder) -> None:
    codes = make_codes(1, 30)
    raw = decoder.decode(codes, clamp=False)
    assert raw.abs().max() > 1.0  # the tiny random decoder does exceed the clamp
    assert torch.equal(decoder.decode(codes), raw.clamp(-1, 1))


def test_decode_reference_short_equals_decode(decoder: SpeechDecoder) -> None:
    codes = make_codes(1, 100)
    assert torch.equal(decoder.decode_reference(codes, clamp=False), decoder.decode(codes, clamp=False))


def test_decode_reference_chunking_rule(decoder: SpeechDecoder) -> None:
    # Same rule as the reference chunked_decode, exercised with small sizes.
    codes = make_codes(1, 100)
    ref = decoder.decode_reference(codes, clamp=False, chunk_size=40, left_context=10)
    expected = torch.cat(
        [
            decoder.decode(codes[..., 0:40], clamp=False),
            decoder.decode(codes[..., 30:80], clamp=False)[:, 10 * UPSAMPLE :],
            decoder.decode(codes[..., 70:100], clamp=False)[:, 10 * UPSAMPLE :],
        ],
        dim=-1,
    )
    assert ref.shape == (1, 100 * UPSAMPLE)
    assert (ref - expected).abs().max().item() <= TOL


def test_decode_reference_long_differs_from_full(decoder: SpeechDecoder) -> None:
    codes = make_codes(1, 330)
    full = decoder.decode(codes, clamp=False)
    ref = decoder.decode_reference(codes, clamp=False)
    tail = decoder.decode(codes[..., 275:], clamp=False)[:, 25 * UPSAMPLE :]
    assert ref.shape == full.shape
    assert (ref[:, : 300 * UPSAMPLE] - full[:, : 300 * UPSAMPLE]).abs().max().item() <= TOL
    assert (ref[:, 300 * UPSAMPLE :] - tail).abs().max().item() <= TOL
    # 25 frames of context do not cover the transformer's receptive field: the seam is not exact ...
    err = (ref - full)[:, 300 * UPSAMPLE :].abs().max().item()
    assert err > 1e-3
    # ... but it is an approximation of the same signal, not garbage.
    assert err < 0.5 * full[:, 300 * UPSAMPLE :].abs().max().item()


def test_batch_rows_independent(decoder: SpeechDecoder) -> None:
    codes = make_codes(3, 50, seed=7)
    batch = decoder.decode(codes, clamp=False)
    streamed = stream(decoder, codes, [5, 1, 3])
    for row in range(3):
        alone = decoder.decode(codes[row : row + 1], clamp=False)
        assert (batch[row : row + 1] - alone).abs().max().item() <= TOL
        assert (streamed[row : row + 1] - alone).abs().max().item() <= TOL


def test_reset_rows_restarts_a_stream(decoder: SpeechDecoder) -> None:
    first, second = make_codes(2, 90, seed=3), make_codes(2, 40, seed=4)
    state = decoder.new_state(2)
    for s in range(0, 90, 9):
        decoder.step(first[..., s : s + 9], state, clamp=False)
    state.reset_rows(torch.tensor([False, True]))
    assert state.pos.tolist() == [90, 0]
    out = torch.cat([decoder.step(second[..., s : s + 4], state, clamp=False) for s in range(0, 40, 4)], -1)
    # Row 1 is a fresh stream on `second`; row 0 continues `first` with `second` appended.
    fresh = decoder.decode(second[1:], clamp=False)
    assert (out[1:] - fresh).abs().max().item() <= TOL
    cont = decoder.decode(torch.cat([first[:1], second[:1]], dim=-1), clamp=False)[:, 90 * UPSAMPLE :]
    assert (out[:1] - cont).abs().max().item() <= TOL
    state.reset_rows([0])
    assert state.pos.tolist() == [0, 40]
    assert all(float(t[0].abs().max()) == 0.0 for t in state.tensors())


def test_state_clone_and_empty_step(decoder: SpeechDecoder) -> None:
    codes = make_codes(1, 20)
    state = decoder.new_state(1)
    decoder.step(codes[..., :10], state)
    copy_state = state.clone()
    assert isinstance(copy_state, DecoderState)
    empty = decoder.step(codes[..., :0], state)
    assert empty.shape == (1, 0)
    assert int(state.pos[0]) == 10
    a = decoder.step(codes[..., 10:], state, clamp=False)
    b = decoder.step(codes[..., 10:], copy_state, clamp=False)
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_other_dtypes(decoder: SpeechDecoder, dtype: torch.dtype) -> None:
    dec = copy.deepcopy(decoder).to(dtype)
    codes = make_codes(2, 12)
    ref = decoder.decode(codes, clamp=False)
    full = dec.decode(codes, clamp=False)
    assert full.dtype == dtype and full.shape == (2, 12 * UPSAMPLE)
    assert torch.isfinite(full).all()
    streamed = stream(dec, codes, [1, 5, 2])
    assert streamed.dtype == dtype
    if dtype == torch.float64:
        assert (full - ref.double()).abs().max().item() <= TOL
        assert (streamed - full).abs().max().item() <= 1e-10
    else:
        # Half precision: only a sanity bound (the waveform is around +-3).
        assert (full.float() - ref).abs().max().item() < 0.5
        assert (streamed.float() - full.float()).abs().max().item() < 0.5


def test_weights_reload_invalidates_cache(decoder: SpeechDecoder) -> None:
    codes = make_codes(1, 12)
    dec = copy.deepcopy(decoder)
    before = dec.decode(codes, clamp=False)
    other = randomize(SpeechDecoder.from_config(TINY_CONFIG), seed=99).eval()
    dec.load_state_dict(other.state_dict(), strict=True)
    assert torch.equal(dec.decode(codes, clamp=False), other.decode(codes, clamp=False))
    # assign=True (checkpoint.load_into) swaps the Parameter objects; twice in a row without a decode.
    dec.load_state_dict({k: v.clone() for k, v in decoder.state_dict().items()}, strict=True, assign=True)
    dec.load_state_dict({k: v.clone() for k, v in other.state_dict().items()}, strict=True, assign=True)
    assert torch.equal(dec.decode(codes, clamp=False), other.decode(codes, clamp=False))
    with torch.no_grad():
        for p in dec.state_dict().values():  # in-place copy, as a checkpoint loader may do
            p.zero_()
        for name, p in decoder.state_dict().items():
            dec.state_dict()[name].copy_(p)
    assert torch.equal(dec.decode(codes, clamp=False), before)


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(1, 15, 4, dtype=torch.long),  # wrong codebook count
        torch.zeros(1, 17, 4, dtype=torch.long),
        torch.full((1, 16, 4), 2048, dtype=torch.long),  # id out of range
        torch.full((1, 16, 4), -1, dtype=torch.long),  # padding id
        torch.zeros(16, 4, dtype=torch.long),  # missing batch dim
        torch.zeros(1, 16, 4),  # float codes
    ],
    ids=["15-books", "17-books", "id-2048", "id-minus1", "2d", "float"],
)
def test_bad_codes_raise(decoder: SpeechDecoder, bad: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        decoder.decode(bad)
    with pytest.raises(ValueError):
        decoder.step(bad, decoder.new_state(bad.shape[0] if bad.dim() == 3 else 1))
    with pytest.raises(ValueError):
        decoder.decode_reference(bad)


def test_state_batch_mismatch_raises(decoder: SpeechDecoder) -> None:
    with pytest.raises(ValueError):
        decoder.step(make_codes(2, 3), decoder.new_state(1))
