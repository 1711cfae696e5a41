"""Everything GPT-SoVITS derives from a voice's reference clip, computed once and reused.

    reference audio ─► 16 kHz ─► HuBERT ─► ssl_proj + VQ ─► prompt semantic tokens   (T2S prompt)
                    └► 32 kHz ─► spectrogram ─► ref_enc (+ ERes2NetV2 for v2Pro) ─► timbre (SoVITS)
    transcript ─► frontend ─► phone ids (+ RoBERTa features for zh chunks)             (T2S prefix)

A `VoicePrompt` serializes to bytes (safetensors + JSON metadata) so the voice store can keep it
encrypted at rest and the engine never recomputes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from .sovits import Timbre

FORMAT = "voxroom-gpt-sovits-prompt/1"


@dataclass
class VoicePrompt:
    model_version: str  # the SoVITS version whose codebook/ref encoder made it (v2, v2Pro, ...)
    prompt_tokens: torch.Tensor | None  # (P,) int64 semantic tokens; None = reference-free
    prompt_phones: torch.Tensor  # (N,) int64 phone ids of the transcript (empty when reference-free)
    prompt_bert: torch.Tensor  # (1024, N) float32
    timbre: Timbre
    transcript: str = ""
    lang: str = "auto"

    @property
    def reference_free(self) -> bool:
        return self.prompt_tokens is None

    def to_bytes(self) -> bytes:
        tensors = {  # cloned: v2's ge_text is the same tensor as ge, which safetensors refuses
            "prompt_phones": self.prompt_phones.clone(),
            "prompt_bert": self.prompt_bert.clone(),
            "ge": self.timbre.ge.clone(),
            "ge_text": self.timbre.ge_text.clone(),
        }
        if self.prompt_tokens is not None:
            tensors["prompt_tokens"] = self.prompt_tokens.clone()
        meta = {"format": FORMAT, "model_version": self.model_version, "transcript": self.transcript,
                "lang": self.lang}
        return save_tensors(tensors, metadata={"voxroom": json.dumps(meta, ensure_ascii=False)})

    @classmethod
    def from_bytes(cls, data: bytes) -> VoicePrompt:
        try:
            tensors = load_tensors(data)
            header_len = int.from_bytes(data[:8], "little")
            meta = json.loads(json.loads(data[8 : 8 + header_len])["__metadata__"]["voxroom"])
        except Exception as exc:
            raise ValueError(f"not a voxroom GPT-SoVITS voice prompt: {exc}") from None
        if meta.get("format") != FORMAT:
            raise ValueError(f"unsupported voice prompt format {meta.get('format')!r}")
        return cls(
            model_version=meta["model_version"],
            prompt_tokens=tensors.get("prompt_tokens"),
            prompt_phones=tensors["prompt_phones"],
            prompt_bert=tensors["prompt_bert"],
            timbre=Timbre(ge=tensors["ge"], ge_text=tensors["ge_text"]),
            transcript=meta.get("transcript", ""),
            lang=meta.get("lang", "auto"),
        )
