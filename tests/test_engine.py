"""Engine behaviour on tiny random checkpoints in the real layout: streaming exactness, batching,
cancellation, the runaway guard, input validation."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import torch

from wyoming_qwen3tts.engine import (
    ChunkPolicy,
    Engine,
    LoadOptions,
    RunawayGuard,
    SamplingParams,
    SpeechRequest,
)
from wyoming_qwen3tts.engine.sequence import SequenceStatus
from wyoming_qwen3tts.engine.stream import Cancelled
from wyoming_qwen3tts.settings import Settings

TEXT = "Hello world, this is a small test."


@pytest.fixture(scope="module")
def cv_engine(tiny_custom_voice):
    torch.set_num_threads(2)
    engine = Engine.load(tiny_custom_voice, device="cpu", dtype="float32", slots=3, max_len=512)
    yield engine
    engine.close()


def _request(text=TEXT, **kw) -> SpeechRequest:
    kw.setdefault("sampling", SamplingParams.greedy(max_new_tokens=20))
    kw.setdefault("speaker", "ryan")
    kw.setdefault("language", "english")
    return SpeechRequest(text, **kw)


@pytest.mark.parametrize(
    "policy", [ChunkPolicy(1, 1), ChunkPolicy(2, 3), ChunkPolicy(1, 7), ChunkPolicy(50, 50)]
)
def test_streamed_chunks_equal_full_decode(cv_engine, policy):
    stream = cv_engine.submit(_request(chunk_policy=policy), keep=True)
    chunks = [c.samples for c in stream]
    result = stream.result()
    assert len(chunks) >= 1
    if policy.first_frames == 1:
        assert len(chunks[0]) == 1920  # small first chunk for a low time to first audio
    streamed = np.concatenate(chunks)
    codes = torch.from_numpy(result.codes).T[None]
    full = cv_engine.decoder.decode(codes)[0].numpy()
    assert streamed.shape == full.shape == (len(result.codes) * 1920,)
    assert np.abs(streamed - full).max() <= 1e-4
    assert np.array_equal(result.audio, streamed)


def test_pcm_chunks_are_int16_mono(cv_engine):
    chunk = next(iter(cv_engine.submit(_request(sampling=SamplingParams.greedy(max_new_tokens=4)))))
    pcm = np.frombuffer(chunk.pcm, dtype="<i2")
    assert len(pcm) == len(chunk.samples) and chunk.sample_rate == 24000
    assert np.abs(pcm.astype(np.float64) / 32767 - np.clip(chunk.samples, -1, 1)).max() < 1e-4


def test_batch_gives_same_codes_as_each_alone(cv_engine):
    requests = [
        _request(),
        _request("Short.", speaker="sohee", language="korean"),
        _request("A third one, sampled with a seed.", sampling=SamplingParams(seed=7, max_new_tokens=12)),
    ]
    alone = [cv_engine.synthesize(r).codes for r in requests]
    streams = [cv_engine.submit(r, keep=True) for r in requests]  # all three share decode steps
    together = [s.result().codes for s in streams]
    for a, b in zip(alone, together):
        assert np.array_equal(a, b)


def test_async_iteration(cv_engine):
    async def collect():
        stream = cv_engine.submit(_request(sampling=SamplingParams.greedy(max_new_tokens=6)))
        return [c async for c in stream]

    chunks = asyncio.run(collect())
    assert sum(len(c.samples) for c in chunks) == 5 * 1920


def test_cancel_frees_the_slot(cv_engine):
    stream = cv_engine.submit(_request(sampling=SamplingParams.greedy(max_new_tokens=400)))
    first = next(iter(stream))
    assert len(first.samples) > 0
    stream.cancel()
    assert stream.wait(30)
    with pytest.raises(Cancelled):
        stream.result()
    # All slots are usable again.
    results = [
        cv_engine.submit(_request(sampling=SamplingParams.greedy(max_new_tokens=3)), keep=True)
        for _ in range(3)
    ]
    assert all(len(r.result(60).codes) == 2 for r in results)


def test_max_new_tokens_gives_n_minus_one_frames(cv_engine):
    result = cv_engine.synthesize(_request(sampling=SamplingParams.greedy(max_new_tokens=9)))
    assert result.codes.shape == (8, 16)
    assert result.truncated  # random weights never say EOS


def test_seeded_sampling_is_reproducible(cv_engine):
    req = _request(sampling=SamplingParams(seed=1234, max_new_tokens=10))
    assert np.array_equal(cv_engine.synthesize(req).codes, cv_engine.synthesize(req).codes)
    other = cv_engine.synthesize(_request(sampling=SamplingParams(seed=4321, max_new_tokens=10))).codes
    assert not np.array_equal(cv_engine.synthesize(req).codes, other)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(speaker="nobody"), "valid speakers: serena"),
        (dict(language="klingon"), "valid languages: auto"),
        (dict(text="   "), "text is empty"),
        (dict(sampling=SamplingParams(temperature=0)), "temperature"),
        (dict(sampling=SamplingParams(top_p=0)), "top_p"),
        (dict(sampling=SamplingParams(max_new_tokens=1)), "max_new_tokens"),
    ],
)
def test_bad_requests_raise_clear_errors(cv_engine, kwargs, message):
    with pytest.raises(ValueError, match=message):
        text = kwargs.pop("text", TEXT)
        cv_engine.submit(_request(text, **kwargs))


def test_voice_prompt_on_custom_voice_model_is_rejected(cv_engine):
    from wyoming_qwen3tts.engine import VoicePrompt

    voice = VoicePrompt(speaker_embedding=torch.zeros(64))
    with pytest.raises(ValueError, match="Base model"):
        cv_engine.submit(_request(speaker=None, voice=voice))


def test_prompt_too_long_for_cache_fails_the_stream_not_the_engine(tiny_custom_voice):
    engine = Engine.load(tiny_custom_voice, device="cpu", dtype="float32", slots=1, max_len=32)
    try:
        stream = engine.submit(_request("word " * 60))
        with pytest.raises(ValueError, match="does not fit"):
            stream.result(60)
        assert (
            len(engine.synthesize(_request("Hi.", sampling=SamplingParams.greedy(max_new_tokens=3))).codes)
            == 2
        )
    finally:
        engine.close()


def test_runaway_guard_truncates_and_flags(tiny_custom_voice):
    guard = RunawayGuard(frames_per_token=1.0, slack_frames=2, hard_factor=2.0, eos_bias_per_frame=0.0)
    engine = Engine.load(tiny_custom_voice, device="cpu", dtype="float32", slots=1, guard=guard)
    try:
        result = engine.synthesize(_request("Hi.", sampling=SamplingParams.greedy()))
        tokens = len(engine.builder.tok.target_ids("Hi.")) - 8
        assert result.truncated
        assert len(result.codes) == guard.max_frames(tokens, 8192) == 2 * (tokens + 2)
    finally:
        engine.close()


def test_runaway_guard_eos_bias_ends_speech_after_expected_length(tiny_custom_voice):
    # A bias that grows fast makes EOS win right after the expected length: not truncated.
    guard = RunawayGuard(frames_per_token=1.0, slack_frames=2, hard_factor=10.0, eos_bias_per_frame=1e4)
    engine = Engine.load(tiny_custom_voice, device="cpu", dtype="float32", slots=1, guard=guard)
    try:
        result = engine.synthesize(_request("Hi.", sampling=SamplingParams.greedy()))
        tokens = len(engine.builder.tok.target_ids("Hi.")) - 8
        assert not result.truncated
        assert len(result.codes) == guard.expected_frames(tokens) + 1
    finally:
        engine.close()


def test_guard_disabled_follows_max_new_tokens_only():
    guard = RunawayGuard(enabled=False)
    assert guard.max_frames(3, 100) == 99 and guard.eos_bias(10_000, 3) == 0.0
    on = RunawayGuard()
    assert on.eos_bias(on.expected_frames(5), 5) == 0.0 and on.eos_bias(on.expected_frames(5) + 10, 5) > 0


def test_engine_is_thread_safe_for_submitters(cv_engine):
    results = {}

    def worker(i):
        results[i] = cv_engine.synthesize(
            _request(sampling=SamplingParams.greedy(max_new_tokens=5)), timeout=120
        )

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    assert all(np.array_equal(results[0].codes, r.codes) for r in results.values())


def test_sharded_checkpoint_loads_the_same(tiny_custom_voice, tmp_path):
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    sharded = tmp_path / "sharded"
    shutil.copytree(tiny_custom_voice, sharded)
    state = load_file(sharded / "model.safetensors")
    (sharded / "model.safetensors").unlink()
    names = sorted(state)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for shard, keys in halves.items():
        save_file({k: state[k] for k in keys}, sharded / shard, metadata={"format": "pt"})
        weight_map.update({k: shard for k in keys})
    total = sum(t.numel() * t.element_size() for t in state.values())
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    engine = Engine.load(sharded, device="cpu", dtype="float32", slots=1)
    try:
        codes = engine.synthesize(_request(sampling=SamplingParams.greedy(max_new_tokens=6))).codes
    finally:
        engine.close()
    reference = Engine.load(tiny_custom_voice, device="cpu", dtype="float32", slots=1)
    try:
        assert np.array_equal(
            codes, reference.synthesize(_request(sampling=SamplingParams.greedy(max_new_tokens=6))).codes
        )
    finally:
        reference.close()


def test_shape_mismatch_names_the_tensor(tiny_custom_voice, tmp_path):
    import json
    import shutil

    from wyoming_qwen3tts.engine import CheckpointError

    broken = tmp_path / "broken"
    shutil.copytree(tiny_custom_voice, broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["talker_config"]["intermediate_size"] += 8
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*talker\.model\.layers\.0\.mlp"):
        Engine.load(broken, device="cpu")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_on_cpu_runs(tiny_custom_voice, dtype):
    engine = Engine.load(tiny_custom_voice, device="cpu", dtype=dtype, slots=2)
    try:
        assert engine.dtype == getattr(torch, dtype)
        streams = [
            engine.submit(_request(sampling=SamplingParams.greedy(max_new_tokens=6)), keep=True)
            for _ in range(2)
        ]
        results = [s.result(120) for s in streams]
        assert all(r.audio.dtype == np.float32 and np.isfinite(r.audio).all() for r in results)
        assert results[0].codes.shape == (5, 16) and np.array_equal(results[0].codes, results[1].codes)
    finally:
        engine.close()


def test_unknown_device_and_dtype_are_rejected(tiny_custom_voice):
    with pytest.raises(ValueError, match="dtype"):
        Engine.load(tiny_custom_voice, device="cpu", dtype="float8")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            Engine.load(tiny_custom_voice, device="cuda")


def test_step_failure_fails_the_requests_and_the_engine_goes_on(cv_engine, monkeypatch):
    real = cv_engine.runner.decode_step
    calls = {"n": 0}

    def flaky(batch, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated device failure")
        return real(batch, *args)

    monkeypatch.setattr(cv_engine.runner, "decode_step", flaky)
    streams = [
        cv_engine.submit(_request(sampling=SamplingParams.greedy(max_new_tokens=30))) for _ in range(2)
    ]
    for stream in streams:
        with pytest.raises(RuntimeError, match="simulated"):
            stream.result(60)
    assert not cv_engine.scheduler.running  # slots released
    assert len(cv_engine.synthesize(_request(sampling=SamplingParams.greedy(max_new_tokens=4))).codes) == 3


def test_load_options_default_to_the_servers_settings():
    """A library caller and the server get the same engine unless they ask otherwise (issue 26)."""
    server, library = Settings(), LoadOptions()
    assert (library.slots, library.quantize, library.device, library.dtype) == (
        server.slots,
        server.quantize,
        server.device,
        server.dtype,
    )


def test_a_sequence_has_one_status_from_submit_to_finish(cv_engine, monkeypatch):
    """RUNNING in every step it takes part in, FINISHED once its stream has ended."""
    steps: list[list] = []
    real = cv_engine.runner.decode_step

    def step(batch, *args):
        steps.append([(s, s.status) for s in batch.seqs])
        return real(batch, *args)

    monkeypatch.setattr(cv_engine.runner, "decode_step", step)
    cv_engine.submit(_request(sampling=SamplingParams.greedy(max_new_tokens=5)), keep=True).result(60)
    assert len(steps) == 4 and all(status is SequenceStatus.RUNNING for row in steps for _, status in row)
    (seq,) = {s for row in steps for s, _ in row}
    assert seq.status is SequenceStatus.FINISHED and len(seq.codes) == 4
    assert not cv_engine.scheduler.running and cv_engine.scheduler.busy == 0


def test_heap_is_trimmed_while_a_long_request_runs(cv_engine, monkeypatch):
    # Freed activations in glibc's thread arenas must not pile up for a whole long request (issue 24).
    from wyoming_qwen3tts.engine import scheduler

    every = scheduler.TRIM_EVERY_STEPS
    trims: list[int] = []
    monkeypatch.setattr(scheduler, "trim_heap", lambda: trims.append(cv_engine.scheduler.steps))
    start = cv_engine.scheduler.steps
    result = cv_engine.synthesize(_request(sampling=SamplingParams.greedy(max_new_tokens=2 * every + 1)))
    assert result.codes.shape == (2 * every, 16)
    during = [s for s in trims if start < s <= start + 2 * every]
    assert len(during) >= 2 and all(s % every == 0 for s in during)
