"""Voice-prompt cache: speaker embedding and reference codes computed once per (voice, model).

A clone voice's :class:`~wyoming_qwen3tts.engine.VoicePrompt` costs a speaker-encoder and a codec-encoder
pass, so it is computed once and kept in memory and on disk next to the profile, as
``prompt.<safe model id>.safetensors`` (tensors ``speaker_embedding`` and, for ICL, ``ref_codes``; metadata:
format, model id, sha256 of the reference audio, mode, transcript). A restart loads the file instead of
running the encoders. The file is rebuilt automatically when the audio (its sha256), the transcript or the
mode changed, or when it is unreadable or its tensors are damaged (a sha256 of the tensor bytes is stored
in the metadata and checked on load; files without it must hold finite values and valid codes).
Read-only voices of the flat ``<name>.wav`` layout keep their cache under ``<root>/.prompts/<name>/``.

ICL: 0.5 s of silence is appended to the reference clip before encoding, a fix from the field: without
it the first generated phoneme tends to continue the last phoneme of the reference.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors

from ..core.vocab import ErrorCode, VoiceKind
from ..engine import VoicePrompt
from ..engine.audio import load_audio, resample
from .library import (
    MAX_SECONDS,
    SAMPLE_RATE,
    VoiceLibrary,
    VoiceLibraryError,
    VoiceProfile,
    atomic_write_bytes,
    sha256_file,
)

_LOGGER = logging.getLogger(__name__)

FORMAT = "wyoming-qwen3tts-prompt/1"
ICL_SILENCE_SECONDS = 0.5

ProgressCallback = Callable[[int, int, VoiceProfile], None]


def safe_model_id(model_id: str) -> str:
    """A file-name-safe form of a model id or path; a short hash keeps sanitised ids distinct."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id.strip()).strip("._")[:80] or "model"
    if safe != model_id:
        safe += "-" + hashlib.sha256(model_id.encode()).hexdigest()[:8]
    return safe


def reference_wave(profile: VoiceProfile) -> np.ndarray:
    """The 24 kHz mono clip the prompt is computed from (ICL: with the trailing silence)."""
    # Bounded like an upload (a plain voices/<name>.wav dropped in over Samba can be hours long).
    wave, sr = load_audio(str(profile.audio_path), max_seconds=MAX_SECONDS)
    wave = resample(wave, sr, SAMPLE_RATE) if sr != SAMPLE_RATE else wave
    if profile.mode == "icl":
        wave = np.concatenate([wave, np.zeros(int(ICL_SILENCE_SECONDS * SAMPLE_RATE), dtype=wave.dtype)])
    return wave


class PromptCache:
    """Voice prompts per (voice, model): memory, then disk, then the engine's encoders. Thread-safe."""

    def __init__(self, library: VoiceLibrary) -> None:
        self.library = library
        self._memory: dict[tuple[str, str], tuple[tuple[Any, ...], VoicePrompt]] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self._sha_memo: dict[str, tuple[tuple[int, int], str]] = {}

    def path(self, profile: VoiceProfile, model_id: str) -> Path:
        """Where the prompt of ``profile`` for ``model_id`` is cached on disk."""
        directory = profile.directory or self.library.root / ".prompts" / profile.name
        return directory / f"prompt.{safe_model_id(model_id)}.safetensors"

    def get(self, profile: VoiceProfile, engine: Any, model_id: str) -> VoicePrompt:
        """The voice prompt of a clone voice for the (Base) model ``model_id`` loaded in ``engine``."""
        return self._get(profile, engine, model_id, force=False)

    def rebuild(
        self,
        profiles: Iterable[VoiceProfile],
        engine: Any,
        model_id: str,
        progress: Optional[ProgressCallback] = None,
    ) -> dict[str, Optional[Exception]]:
        """Recompute the prompts of all clone voices in ``profiles``; name -> None or the error (logged)."""
        clones = [p for p in profiles if p.kind == VoiceKind.CLONE]
        results: dict[str, Optional[Exception]] = {}
        for done, profile in enumerate(clones, start=1):
            try:
                self._get(profile, engine, model_id, force=True)
                results[profile.name] = None
            except Exception as err:  # noqa: BLE001 - one bad voice must not stop the others
                _LOGGER.error("Cannot build the prompt of voice %r: %s", profile.name, err)
                results[profile.name] = err
            if progress is not None:
                progress(done, len(clones), profile)
        return results

    def forget(self, name: Optional[str] = None) -> None:
        """Drop in-memory prompts (of one voice, or all); disk files stay."""
        with self._lock:
            for key in [k for k in self._memory if name is None or k[0] == name]:
                del self._memory[key]

    # -- internals -----------------------------------------------------------------------------------------
    def _get(self, profile: VoiceProfile, engine: Any, model_id: str, force: bool) -> VoicePrompt:
        if profile.kind != "clone" or profile.audio_path is None:
            raise VoiceLibraryError(
                ErrorCode.INVALID_ARGUMENT, f"voice {profile.name!r} is not a clone voice"
            )
        key = (profile.name, model_id)
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one computation per voice and model, even with concurrent requests
            state = self._state(profile, model_id)
            with self._lock:
                cached = self._memory.get(key)
            if cached is not None and cached[0] == state and not force:
                return cached[1]
            path = self.path(profile, model_id)
            prompt = None if force else self._load(path, state)
            if prompt is None:
                prompt = self._compute(profile, engine)
                self._save(path, prompt, state)
            prompt = _to_device(prompt, getattr(engine, "device", None))  # no per-request host copy
            with self._lock:
                self._memory[key] = (state, prompt)
            return prompt

    def _state(self, profile: VoiceProfile, model_id: str) -> tuple[Any, ...]:
        """What the cached prompt must match: model, audio content, mode, transcript."""
        audio = profile.audio_path
        assert audio is not None
        st = audio.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        memo = self._sha_memo.get(str(audio))
        if memo is None or memo[0] != stamp:  # hash the file only when it changed on disk
            memo = (stamp, sha256_file(audio))
            self._sha_memo[str(audio)] = memo
        transcript = profile.transcript if profile.mode == "icl" else None
        return (model_id, memo[1], profile.mode, transcript or "")

    def _compute(self, profile: VoiceProfile, engine: Any) -> VoicePrompt:
        _LOGGER.info("Computing the voice prompt of %r (%s)", profile.name, profile.mode)
        icl = profile.mode == "icl"
        prompt = engine.create_voice_prompt(
            (reference_wave(profile), SAMPLE_RATE),
            ref_text=profile.transcript if icl else None,
            x_vector_only=not icl,
        )
        return VoicePrompt(
            speaker_embedding=prompt.speaker_embedding.detach().cpu(),
            ref_codes=None if prompt.ref_codes is None else prompt.ref_codes.detach().cpu(),
            ref_text=prompt.ref_text,
        )

    def _load(self, path: Path, state: tuple[Any, ...]) -> Optional[VoicePrompt]:
        if not path.is_file():
            return None
        model_id, sha, mode, transcript = state
        try:
            with safe_open(str(path), framework="pt", device="cpu") as fh:
                meta = fh.metadata() or {}
                wanted = {"format": FORMAT, "model_id": model_id, "audio_sha256": sha, "mode": mode}
                stale = [k for k, v in wanted.items() if meta.get(k) != v]
                if stale or meta.get("ref_text", "") != transcript:
                    _LOGGER.info(
                        "Voice prompt %s is stale (%s); rebuilding", path, ", ".join(stale) or "ref_text"
                    )
                    return None
                spk = fh.get_tensor("speaker_embedding")
                codes = fh.get_tensor("ref_codes") if "ref_codes" in fh.keys() else None
        except Exception as err:  # noqa: BLE001 - a corrupt cache file is rebuilt, never fatal
            _LOGGER.warning("Voice prompt %s is unreadable (%s); rebuilding", path, err)
            return None
        if mode == "icl" and codes is None:
            _LOGGER.warning("Voice prompt %s lacks reference codes; rebuilding", path)
            return None
        damage = _damage(spk, codes, meta.get("tensors_sha256"))
        if damage:
            _LOGGER.warning("Voice prompt %s is damaged (%s); rebuilding", path, damage)
            return None
        _LOGGER.debug("Loaded voice prompt %s", path)
        return VoicePrompt(speaker_embedding=spk, ref_codes=codes, ref_text=transcript or None)

    def _save(self, path: Path, prompt: VoicePrompt, state: tuple[Any, ...]) -> None:
        model_id, sha, mode, transcript = state
        tensors = {"speaker_embedding": prompt.speaker_embedding.cpu().contiguous()}
        if prompt.ref_codes is not None:
            tensors["ref_codes"] = prompt.ref_codes.to("cpu", torch.long).contiguous()
        meta = {
            "format": FORMAT,
            "model_id": model_id,
            "audio_sha256": sha,
            "mode": mode,
            "ref_text": transcript,
        }
        meta["icl_silence_s"] = str(ICL_SILENCE_SECONDS)
        meta["tensors_sha256"] = _tensors_sha256(tensors["speaker_embedding"], tensors.get("ref_codes"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, save_safetensors(tensors, metadata=meta))
        except OSError as err:  # a read-only data dir costs a recomputation per restart, nothing more
            _LOGGER.warning("Cannot write the voice prompt cache %s: %s", path, err)


def _to_device(prompt: VoicePrompt, device: Any) -> VoicePrompt:
    if device is None or torch.device(device).type == "cpu":
        return prompt
    return VoicePrompt(
        speaker_embedding=prompt.speaker_embedding.to(device),
        ref_codes=None if prompt.ref_codes is None else prompt.ref_codes.to(device),
        ref_text=prompt.ref_text,
    )


def _raw(tensor: torch.Tensor) -> bytes:
    """The tensor's bytes (any dtype, bf16 included, which numpy cannot hold)."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _tensors_sha256(spk: torch.Tensor, codes: Optional[torch.Tensor]) -> str:
    digest = hashlib.sha256(_raw(spk))
    if codes is not None:
        digest.update(_raw(codes.to(torch.long)))
    return digest.hexdigest()


def _damage(spk: torch.Tensor, codes: Optional[torch.Tensor], sha: Optional[str]) -> Optional[str]:
    """Why loaded prompt tensors cannot be trusted (garbage bytes under an intact header made every
    request fail with "probability tensor contains inf/nan"), or None."""
    if sha is not None and _tensors_sha256(spk, codes) != sha:
        return "checksum mismatch"
    if not spk.is_floating_point() or not bool(torch.isfinite(spk).all()):
        return "speaker embedding is not finite"
    if codes is not None and (codes.is_floating_point() or codes.numel() and int(codes.min()) < 0):
        return "reference codes are invalid"
    return None
