"""The decode step on the device: per-slot state set once at admission, no host synchronisation in a
step except the one read of the frame's codes it streams, no tensor built from Python lists; and the one
object per request keeps codes and audio only when asked."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from wyoming_qwen3tts.engine import Engine, RunawayGuard, SamplingParams, SpeechRequest, VoicePrompt

TEXT = "Hello world, this is a small test."

# Every way a step could wait for the device: reading a value, copying to the host, a tensor as a bool or
# a Python number. torch.tensor/as_tensor: a tensor built from Python values (host work every step).
SYNCS = ("item", "cpu", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__")
BUILDS = ("tensor", "as_tensor")


class Counter:
    def __init__(self) -> None:
        self.active: threading.Thread | None = None
        self.calls: dict[str, int] = {}

    def wrap(self, owner, name: str):
        real = getattr(owner, name)

        def counted(*args, **kwargs):
            if self.active is threading.current_thread():
                self.calls[name] = self.calls.get(name, 0) + 1
            return real(*args, **kwargs)

        return counted


@pytest.fixture(scope="module")
def engine(tiny_custom_voice):
    torch.set_num_threads(2)
    # A guard that biases EOS after two frames, so the bias path runs in the counted steps too.
    guard = RunawayGuard(frames_per_token=0.01, slack_frames=1, hard_factor=1000.0)
    engine = Engine.load(tiny_custom_voice, device="cpu", dtype="float32", slots=3, max_len=512, guard=guard)
    yield engine
    engine.close()


def _requests() -> list[SpeechRequest]:
    sampled = SamplingParams(
        seed=7, top_p=0.8, top_k=20, temperature=0.7, repetition_penalty=1.3, max_new_tokens=12
    )
    return [
        SpeechRequest(TEXT, speaker="ryan", language="english", sampling=sampled),
        SpeechRequest(
            TEXT, speaker="ryan", language="english", sampling=SamplingParams.greedy(max_new_tokens=12)
        ),
        SpeechRequest(TEXT, speaker="ryan", sampling=SamplingParams(seed=3, max_new_tokens=12)),
    ]


def test_a_batched_step_synchronises_once_and_builds_no_tensor_from_lists(engine, monkeypatch):
    counter = Counter()
    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, counter.wrap(torch.Tensor, name))
    for name in BUILDS:
        monkeypatch.setattr(torch, name, counter.wrap(torch, name))
    runner = engine.runner
    real = runner.decode_step
    per_step: list[tuple[int, dict[str, int]]] = []

    def step(batch, on_frames=None):
        rows = len(batch.seqs)
        counter.calls = {}
        counter.active = threading.current_thread()

        def first_chunk(frames):  # the scheduler decodes a stream's first chunk there: not the step's reads
            counter.active = None
            try:
                on_frames(frames)
            finally:
                counter.active = threading.current_thread()

        try:
            return real(batch, first_chunk if on_frames is not None else None)
        finally:
            counter.active = None
            per_step.append((rows, dict(counter.calls)))

    monkeypatch.setattr(runner, "decode_step", step)
    for stream in [engine.submit(r) for r in _requests()]:  # warm: a traced predictor's first call per
        stream.wait(120)  # batch size records the trace (once)
    per_step.clear()
    streams = [engine.submit(r, keep=True) for r in _requests()]
    results = [s.result(120) for s in streams]
    assert all(len(r.codes) == 11 for r in results)
    batched = [calls for rows, calls in per_step if rows == 3]
    assert len(batched) >= 8, per_step
    for calls in batched:
        assert calls == {"tolist": 1}, per_step  # the one read of the frame's codes (and next token)
    monkeypatch.undo()


def test_seeded_requests_reproduce_alone_and_batched(engine):
    alone = [engine.synthesize(r).codes for r in _requests()]
    streams = [engine.submit(r, keep=True) for r in _requests()]
    together = [s.result(120).codes for s in streams]
    for a, b in zip(alone, together):
        assert np.array_equal(a, b)


def test_a_streaming_caller_keeps_no_codes_or_audio(engine):
    stream = engine.submit(_requests()[1])
    chunks = [c.samples for c in stream]
    assert sum(len(c) for c in chunks) == 11 * 1920
    assert stream._chunks == [] and stream.outcome.codes is None
    with pytest.raises(RuntimeError, match="keep=True"):
        stream.result()


def test_icl_audio_streamed_equals_the_whole_utterance(tiny_base):
    engine = Engine.load(tiny_base, device="cpu", dtype="float32", slots=2, max_len=512)
    try:
        hidden = engine.config.talker.transformer.hidden_size
        gen = torch.Generator().manual_seed(0)
        voice = VoicePrompt(
            speaker_embedding=torch.randn(hidden, generator=gen) * 0.1,
            ref_codes=torch.randint(0, 2048, (7, 16), generator=gen),
            ref_text="A reference.",
        )
        for non_streaming in (False, True):
            request = SpeechRequest(
                TEXT,
                language="english",
                voice=voice,
                non_streaming_text=non_streaming,
                sampling=SamplingParams.greedy(max_new_tokens=9),
            )
            whole = engine.synthesize(request)
            streamed = np.concatenate([c.samples for c in engine.submit(request)])
            assert whole.audio.shape == streamed.shape == (len(whole.codes) * 1920,)
            assert np.array_equal(whole.audio, streamed)
    finally:
        engine.close()


def test_the_first_chunk_is_decoded_before_the_next_frames_talker_step(engine, monkeypatch):
    """First audio does not wait for the talker step of the second frame (issue 24); the audio is the same
    (the decoder gets the same calls in the same order: the parity and streaming tests compare it)."""
    events: list[str] = []
    runner, decoder = engine.runner, engine.decoder
    talker_step, decoder_step = runner.talker_step, decoder.step
    monkeypatch.setattr(
        runner, "talker_step", lambda *a, **k: events.append("talker") or talker_step(*a, **k)
    )
    monkeypatch.setattr(decoder, "step", lambda *a, **k: events.append("decoder") or decoder_step(*a, **k))
    request = SpeechRequest(TEXT, speaker="ryan", sampling=SamplingParams.greedy(max_new_tokens=6))
    assert len(engine.synthesize(request, timeout=120).codes) == 5
    # Frame 1 decoded, then the talker steps after frames 1-4, then frames 2-5 as the tail (5 is the bound).
    assert events == ["decoder", "talker", "talker", "talker", "talker", "decoder"], events
