"""Prefill assembly for every model type and text-feeding mode, identical to qwen-tts 0.1.1.

Output per request: the prefill rows [L, H], the trailing text queue [N, H] that is added to the talker
input one row per generated frame (tts_pad after it runs out), and the tts_pad row. Embeddings are
computed in the same groupings as the reference so that float rounding matches too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import torch

from .config import ModelConfig
from .talker import Talker
from .text import (
    FIRST_TEXT,
    REFERENCE_TEXT,
    REST_TEXT,
    ROLE,
    TARGET_TEMPLATE_TOKENS,
    TARGET_TEXT,
    TextTokenizer,
)

_LOGGER = logging.getLogger(__name__)


@dataclass
class VoicePrompt:
    """A cloned voice for Base models: x-vector and, for ICL, the reference codes and transcript."""

    speaker_embedding: torch.Tensor  # [H] x-vector from the speaker encoder
    ref_codes: Optional[torch.Tensor] = None  # [T_ref, 16] int64 (ICL only)
    ref_text: Optional[str] = None

    @property
    def icl(self) -> bool:
        return self.ref_codes is not None and bool(self.ref_text)


@dataclass
class Prompt:
    prefill: torch.Tensor  # [L, H]
    trailing: torch.Tensor  # [N, H]
    tts_pad: torch.Tensor  # [H]
    text_tokens: int  # number of target-text tokens (for the runaway guard)
    ref_codes: Optional[torch.Tensor] = None  # ICL: prepended before decoding, cut afterwards


def _unknown(kind: str, name: str, valid: list[str]) -> ValueError:
    return ValueError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid) if valid else '(none)'}")


class PromptBuilder:
    def __init__(self, cfg: ModelConfig, talker: Talker, tokenizer: TextTokenizer) -> None:
        self.cfg = cfg
        self.talker = talker
        self.tok = tokenizer
        self._warned_instruct = False

    # -- validation --------------------------------------------------------------------------------------
    def language_id(self, language: Optional[str], speaker: Optional[str]) -> Optional[int]:
        lang = (language or "auto").lower()
        if lang not in self.cfg.supported_languages:
            raise _unknown("language", language or "", self.cfg.supported_languages)
        talker = self.cfg.talker
        lang_id = None if lang == "auto" else talker.languages[lang]
        if lang in ("chinese", "auto") and speaker:
            dialect = talker.speaker_dialects.get(speaker.lower(), False)
            if dialect is not False and dialect is not None:
                lang_id = talker.languages[str(dialect).lower()]
        return lang_id

    def check(
        self, speaker: Optional[str], instruct: Optional[str], voice: Optional[VoicePrompt]
    ) -> Optional[str]:
        """Validates the voice inputs for this model type; returns the instruct actually used."""
        kind = self.cfg.tts_model_type
        if speaker and kind != "custom_voice":
            raise ValueError(f"speaker {speaker!r} given, but a {kind} model has no built-in speakers")
        if speaker and speaker.lower() not in self.cfg.talker.speakers:
            raise _unknown("speaker", speaker, self.cfg.supported_speakers)
        if voice is not None and kind != "base":
            raise ValueError(f"a cloned voice needs a Base model; this one is {kind}")
        if kind == "base" and voice is None:
            raise ValueError("a Base model needs a voice prompt (reference audio) to speak")
        if instruct and kind == "base":
            raise ValueError("Base models do not take an instruct text")
        if instruct and kind == "custom_voice" and self.cfg.is_small:
            # The reference drops it silently; say so once instead.
            if not self._warned_instruct:
                _LOGGER.warning("instruct is not supported by 0.6B CustomVoice models; ignoring it")
                self._warned_instruct = True
            return None
        return instruct or None

    def default_non_streaming(self) -> bool:
        """The reference's per-API default: generate_voice_clone streams text, the others do not."""
        return self.cfg.tts_model_type != "base"

    # -- assembly ------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def build(
        self,
        text: str,
        language: Optional[str] = None,
        speaker: Optional[str] = None,
        instruct: Optional[str] = None,
        voice: Optional[VoicePrompt] = None,
        non_streaming: Optional[bool] = None,
    ) -> Prompt:
        instruct = self.check(speaker, instruct, voice)
        lang_id = self.language_id(language, speaker)
        if non_streaming is None:
            non_streaming = self.default_non_streaming()
        t = self.talker
        ids = self.tok.target_ids(text)[None]
        device = t.device
        ids = ids.to(device)
        ids_c = self.cfg.talker.codec

        def codec(values: list[int]) -> torch.Tensor:
            return t.embed_codec(torch.tensor([values], dtype=torch.long, device=device))

        parts = []
        if instruct:
            parts.append(t.embed_text(self.tok.instruct_ids(instruct)[None].to(device)))

        if speaker:
            spk = t.embed_codec(torch.tensor(self.cfg.talker.speakers[speaker.lower()], device=device))
        elif voice is not None:
            spk = voice.speaker_embedding.to(device=device, dtype=t.dtype)
        else:
            spk = None

        specials = torch.tensor(
            [[self.cfg.tts_bos_token_id, self.cfg.tts_eos_token_id, self.cfg.tts_pad_token_id]], device=device
        )
        tts_bos, tts_eos, tts_pad = t.embed_text(specials).chunk(3, dim=1)

        head_ids = (
            [ids_c.nothink, ids_c.think_bos, ids_c.think_eos]
            if lang_id is None
            else [ids_c.think, ids_c.think_bos, lang_id, ids_c.think_eos]
        )
        codec_rows = [codec(head_ids)]
        if spk is not None:
            codec_rows.append(spk.view(1, 1, -1))
        codec_rows.append(codec([ids_c.pad, ids_c.bos]))
        codec_emb = torch.cat(codec_rows, dim=1)

        # Slices of the chat template by position, as the reference takes them (token layout: text.py).
        role = t.embed_text(ids[:, ROLE])
        head = torch.cat((tts_pad.expand(-1, codec_emb.shape[1] - 2, -1), tts_bos), dim=1) + codec_emb[:, :-1]
        parts += [role, head]

        ref_codes = None
        if voice is not None and voice.icl:
            assert voice.ref_codes is not None and voice.ref_text is not None
            ref_codes = voice.ref_codes.to(device=device, dtype=torch.long)
            ref_ids = self.tok.reference_ids(voice.ref_text)[None].to(device)
            icl, trailing = self._icl(
                ids[:, TARGET_TEXT], ref_ids[:, REFERENCE_TEXT], ref_codes, tts_pad, tts_eos, non_streaming
            )
            parts.append(icl)
        elif non_streaming:
            n = ids[:, TARGET_TEXT].shape[1]
            text_rows = torch.cat((t.embed_text(ids[:, TARGET_TEXT]), tts_eos), dim=1) + codec(
                [ids_c.pad] * (n + 1)
            )
            parts += [text_rows, tts_pad + codec([ids_c.bos])]
            trailing = tts_pad
        else:
            parts.append(t.embed_text(ids[:, FIRST_TEXT]) + codec_emb[:, -1:])
            trailing = torch.cat((t.embed_text(ids[:, REST_TEXT]), tts_eos), dim=1)

        return Prompt(
            prefill=torch.cat(parts, dim=1)[0],
            trailing=trailing[0],
            tts_pad=tts_pad[0, 0],
            text_tokens=int(ids.shape[1] - TARGET_TEMPLATE_TOKENS),
            ref_codes=ref_codes,
        )

    def _icl(self, text_ids, ref_ids, ref_codes, tts_pad, tts_eos, non_streaming):
        t = self.talker
        ids_c = self.cfg.talker.codec
        device = text_ids.device
        text = torch.cat((t.embed_text(torch.cat([ref_ids, text_ids], dim=-1)), tts_eos), dim=1)
        groups = [t.embed_codec(ref_codes[:, :1])] + t.code_predictor.group_embeddings(ref_codes[:, 1:])
        frames = torch.cat(groups, dim=1).sum(1).unsqueeze(0)
        bos = t.embed_codec(torch.tensor([[ids_c.bos]], device=device))
        codec_emb = torch.cat([bos, frames], dim=1)
        n_text, n_codec = text.shape[1], codec_emb.shape[1]
        if non_streaming:
            pads = t.embed_codec(torch.tensor([[ids_c.pad] * n_text], device=device))
            return torch.cat([text + pads, codec_emb + tts_pad], dim=1), tts_pad
        if n_text > n_codec:
            return text[:, :n_codec] + codec_emb, text[:, n_codec:]
        text = torch.cat([text] + [tts_pad] * (n_codec - n_text), dim=1)
        return text + codec_emb, tts_pad
