"""Error of a quantized engine against a reference engine, teacher-forced on the same codes.

Random test weights cannot judge audio, so quantization is judged by how far the numbers move when both
engines see exactly the same inputs: the reference engine's own codes are fed to both (teacher forcing) and,
frame by frame, we compare the talker's final hidden state, the codebook-0 logits and the 15 code-predictor
logit vectors. Figures (all over frames x codebooks):

* cosine similarity of the talker hidden states and of the code-predictor logits (min / mean);
* top-1 agreement of codebook 0 (after the reference's control-token suppression) and of all 16 codebooks;
* KL(reference || quantized) of the sampling distributions (softmax at the model's temperature).

Used by tests/test_quant.py (gates on tiny checkpoints) and bench/bench_cpu.py (figures on full-size ones).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from ..engine import Engine


@dataclass
class Trace:
    """Per-frame float32 outputs of a teacher-forced run: hidden [F, H], talker [F, V0], predictor
    [F, 15, V]."""

    hidden: torch.Tensor
    talker_logits: torch.Tensor
    predictor_logits: torch.Tensor


@dataclass
class QuantError:
    frames: int
    hidden_cos_min: float
    hidden_cos_mean: float
    logits_cos_min: float
    logits_cos_mean: float
    top1_cb0: float
    top1_all: float
    kl_cb0_mean: float
    kl_cb0_max: float
    kl_all_mean: float
    kl_all_max: float

    def as_dict(self) -> dict:
        return asdict(self)


def trace(
    engine: Engine, text: str, speaker: Optional[str], codes: Optional[torch.Tensor] = None, frames: int = 100
) -> tuple[Trace, torch.Tensor]:
    """One pass of `engine` over the CustomVoice/VoiceDesign prompt of `text`: teacher-forced on `codes`
    [F, 16], or greedy for `frames` frames when `codes` is None (EOS and control tokens masked, so the
    length is fixed). Returns the trace and the codes fed. Runs on the engine's device thread."""

    def run() -> tuple[Trace, torch.Tensor]:
        with torch.inference_mode():
            return _trace(engine, text, speaker, codes, frames)

    return engine.scheduler.call(run).result()


def _trace(engine: Engine, text: str, speaker: Optional[str], codes: Optional[torch.Tensor], frames: int):
    talker, device, dtype = engine.talker, engine.device, engine.dtype
    prompt = engine.builder.build(text, None, speaker, None, None, None)
    length = prompt.prefill.shape[0]
    frames = frames if codes is None else codes.shape[0]
    banned = engine.runner.sampler.suppress.clone()
    banned[engine.runner.eos] = True
    cache = talker.model.new_cache(1, length + frames + 1, dtype, device)
    hidden = talker.model.prefill(prompt.prefill.to(device, dtype)[None], cache, 0)[:, -1]
    hiddens, talker_logits, predictor_logits, fed = [], [], [], []
    for f in range(frames):
        logits = talker.codec_head(hidden).float()
        hiddens.append(hidden[0].float())
        talker_logits.append(logits[0])
        if codes is None:
            token = logits.masked_fill(banned, -math.inf).argmax(-1)
            rest, cp_logits = talker.code_predictor.generate(
                hidden, talker.embed_codec(token), _greedy, return_logits=True
            )
        else:
            token, rest = codes[f : f + 1, 0].to(device), codes[f : f + 1, 1:].to(device)
            _, cp_logits = talker.code_predictor.generate(
                hidden, talker.embed_codec(token), _greedy, forced=rest, return_logits=True
            )
        assert cp_logits is not None
        predictor_logits.append(cp_logits[0])
        fed.append(torch.cat((token, rest[0])))
        text_row = prompt.trailing[f] if f < prompt.trailing.shape[0] else prompt.tts_pad
        x = talker.frame_embedding(token, rest) + text_row.to(device, dtype)
        hidden = talker.model.decode(x[:, 0], cache, length + f)
    out = Trace(
        torch.stack(hiddens).cpu(), torch.stack(talker_logits).cpu(), torch.stack(predictor_logits).cpu()
    )
    return out, torch.stack(fed).cpu()


def _greedy(logits: torch.Tensor, group: int) -> torch.Tensor:
    return logits.argmax(-1)


def _kl(ref: torch.Tensor, test: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(ref / T) || softmax(test / T)) per row; -inf entries (suppressed tokens) are excluded."""
    p_log = F.log_softmax(ref / temperature, dim=-1)
    q_log = F.log_softmax(test / temperature, dim=-1)
    terms = p_log.exp() * (p_log - q_log)
    return torch.where(torch.isfinite(ref), terms, torch.zeros_like(terms)).sum(-1)


def compare(
    ref: Trace, test: Trace, suppress: torch.Tensor, temperature: float = 0.9, sub_temperature: float = 0.9
) -> QuantError:
    """Error figures of `test` against `ref`; `suppress` [V0] bool marks the control tokens that the
    reference never samples for codebook 0."""
    hidden_cos = F.cosine_similarity(ref.hidden, test.hidden, dim=-1)
    logits_cos = F.cosine_similarity(ref.predictor_logits, test.predictor_logits, dim=-1).flatten()
    r0 = ref.talker_logits.masked_fill(suppress, -math.inf)
    t0 = test.talker_logits.masked_fill(suppress, -math.inf)
    top0 = r0.argmax(-1) == t0.argmax(-1)
    top_rest = ref.predictor_logits.argmax(-1) == test.predictor_logits.argmax(-1)
    kl0 = _kl(r0, t0, temperature)
    kl_rest = _kl(ref.predictor_logits, test.predictor_logits, sub_temperature).flatten()
    kl_all = torch.cat((kl0, kl_rest))
    frames = ref.hidden.shape[0]
    return QuantError(
        frames=frames,
        hidden_cos_min=float(hidden_cos.min()),
        hidden_cos_mean=float(hidden_cos.mean()),
        logits_cos_min=float(logits_cos.min()),
        logits_cos_mean=float(logits_cos.mean()),
        top1_cb0=float(top0.float().mean()),
        top1_all=float(torch.cat((top0, top_rest.flatten())).float().mean()),
        kl_cb0_mean=float(kl0.mean()),
        kl_cb0_max=float(kl0.max()),
        kl_all_mean=float(kl_all.mean()),
        kl_all_max=float(kl_all.max()),
    )


def measure(
    ref_engine: Engine, test_engine: Engine, text: str, speaker: Optional[str], frames: int = 100
) -> QuantError:
    """Error of `test_engine` against `ref_engine`, teacher-forced on the reference's own greedy codes."""
    ref, codes = trace(ref_engine, text, speaker, frames=frames)
    test, _ = trace(test_engine, text, speaker, codes=codes)
    gen = ref_engine.config.generation
    return compare(
        ref,
        test,
        ref_engine.runner.sampler.suppress.cpu(),
        temperature=gen.temperature,
        sub_temperature=gen.subtalker_temperature,
    )
