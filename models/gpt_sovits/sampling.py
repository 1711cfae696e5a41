"""How GPT-SoVITS's text-to-semantic model turns logits into tokens, and when it stops.

These are the official decoding rules (FACTS.md 2.D, golden README "GPT / T2S"), kept apart
from the network so they can be read and tested on their own:

- for the first 11 steps the EOS column is cut off the logits (at least 0.44 s of audio);
- repetition penalty over every id seen so far, the prompt included, each id once:
  negative logits are multiplied by the penalty, positive ones divided;
- the greedy choice (argmax after the penalty) is kept for the stop check;
- top-p on the sorted softmax (always keeping the best id), then division by the temperature,
  then top-k (ties with the k-th value survive);
- the token is drawn by an exponential race, argmax(p / E) with E ~ Exp(1), which is a draw
  from p. The noise has the same shape as the official one (1024 columns while EOS is cut,
  1025 after), so with the same torch generator state the same token comes out;
- decoding stops when the greedy choice or the drawn token is EOS (that token is dropped),
  when more than `early_stop_num` tokens exist, or after 1500 steps.

It also holds the official streaming chunk rules (TTS.py streaming_mode 2 and 3), which decide
where a token stream is cut into pieces for SoVITS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

# The official loop refuses EOS while step index < 11.
MIN_STEPS_BEFORE_EOS = 11
# Hard cap of the official loop: 1500 steps = 60 s of audio at 25 tokens/s.
MAX_STEPS = 1500
# Semantic tokens per second of audio.
TOKENS_PER_SECOND = 25
# TTS.py's "mute" token, whose embedding the mute-similarity chunker compares against.
MUTE_TOKEN = 486


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings; defaults are those of the official api_v2 / TTS.run.

    top_k <= 0 turns top-k off; top_p >= 1 turns top-p off; repetition_penalty == 1 turns
    the penalty off (as officially: then the stop check uses the raw argmax).
    """

    top_k: int = 15
    top_p: float = 1.0
    temperature: float = 1.0
    repetition_penalty: float = 1.35

    def __post_init__(self) -> None:
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.top_p <= 0:
            raise ValueError(f"top_p must be > 0, got {self.top_p}")


GREEDY = SamplingParams(top_k=1)


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Penalise every id marked in `seen` once: logits (B, V), seen (B, >=V) bool -> (B, V).

    A mask instead of the official gather/scatter over the id list gives the same numbers
    (the official scatter writes the same value for repeated ids) at a cost independent of
    how many tokens were generated.
    """
    if penalty == 1.0:
        return logits
    mask = seen[:, : logits.shape[1]]
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(mask, penalised, logits)


def filter_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """top-p, then temperature, then top-k, in the official order: (B, V) -> (B, V) with -inf holes."""
    if params.top_p < 1.0:
        sorted_logits, sorted_ids = torch.sort(logits, descending=True)
        cumulative = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
        remove_sorted = cumulative > params.top_p
        remove_sorted[:, 0] = False  # the best id always survives
        remove = remove_sorted.scatter(1, sorted_ids, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    logits = logits / max(params.temperature, 1e-5)
    if params.top_k > 0:
        kth = torch.topk(logits, min(params.top_k, logits.shape[-1])).values[:, -1:]
        logits = torch.where(logits < kth, float("-inf"), logits)
    return logits


def exponential_race(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one id per row from probs (B, V) as argmax(p / Exp(1)) -> (B,) int64."""
    if generator is not None and generator.device != probs.device:
        # A CPU generator with CUDA probs: draw on the CPU, so one seed gives the same tokens on both.
        noise = torch.empty(probs.shape, dtype=probs.dtype).exponential_(1.0, generator=generator).to(probs.device)
    else:
        noise = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return torch.argmax(probs / noise, dim=-1)


@dataclass
class StepChoice:
    """One step's decision for every row: the drawn token and the greedy (post-penalty) choice."""

    token: torch.Tensor  # (B,) int64
    greedy: torch.Tensor  # (B,) int64


def choose_tokens(
    logits: torch.Tensor,
    seen: torch.Tensor,
    step: int,
    eos: int,
    params: SamplingParams,
    generator: torch.Generator | None = None,
) -> StepChoice:
    """Official per-step choice from raw logits (B, V) and the seen-id mask (B, V) bool."""
    logits = logits.float()
    if step < MIN_STEPS_BEFORE_EOS:
        logits = logits[:, :eos]  # EOS is cut off, not masked: keeps the official noise shape
    logits = apply_repetition_penalty(logits, seen, params.repetition_penalty)
    greedy = torch.argmax(logits, dim=-1)
    probs = torch.softmax(filter_logits(logits, params), dim=-1)
    return StepChoice(token=exponential_race(probs, generator), greedy=greedy)


# --------------------------------------------------------------------------------------------
# Streaming chunk rules (official infer_panel_naive with streaming_mode=True).


class FixedChunker:
    """Cut every `chunk_length` tokens (TTS.py streaming mode 3, "fixed_length_chunk")."""

    def __init__(self, chunk_length: int = 24) -> None:
        if chunk_length < 1:
            raise ValueError("chunk_length must be >= 1")
        self.chunk_length = chunk_length

    def cut(self, pending: torch.Tensor) -> int:
        """Given the not-yet-emitted tokens (n,), return how many to emit now (0 = wait)."""
        return pending.shape[0] if pending.shape[0] >= self.chunk_length else 0


class MuteChunker:
    """Cut after a quiet token (TTS.py streaming mode 2).

    `similarity` (V,) is the cosine similarity of each audio-token embedding to the mute
    token 486's (see `mute_similarity`). Once chunk_length + 2 tokens are pending, each pending
    token scores sim - threshold (negatives set to -1), each score gets its right neighbour's
    added (two quiet tokens in a row), and the cut goes after the best-scoring token if that
    score is >= 0 and the cut leaves at least chunk_length tokens.
    """

    lookahead = 2

    def __init__(self, similarity: torch.Tensor, chunk_length: int = 24, threshold: float = 0.3) -> None:
        if chunk_length < 1:
            raise ValueError("chunk_length must be >= 1")
        self.similarity = similarity.detach().float().reshape(-1)
        self.chunk_length = chunk_length
        self.threshold = threshold

    def cut(self, pending: torch.Tensor) -> int:
        if pending.shape[0] < self.chunk_length + self.lookahead:
            return 0
        score = self.similarity[pending] - self.threshold
        score[score < 0] = -1
        score[:-1] = score[:-1] + score[1:]
        best = int(score.argmax())
        if score[best] >= 0 and best + 1 >= self.chunk_length:
            return best + 1
        return 0


def mute_similarity(audio_embedding: torch.Tensor, mute_token: int = MUTE_TOKEN) -> torch.Tensor:
    """(V, D) audio-token embedding table -> (V,) cosine similarity of each row to the mute row."""
    table = audio_embedding.detach().float()
    return torch.nn.functional.cosine_similarity(table[mute_token : mute_token + 1], table, dim=-1)


Chunker = FixedChunker | MuteChunker


def chunk_tokens(
    steps: Iterator[tuple[int | None, bool]],
    chunker: Chunker,
    *,
    official_overlap: bool = False,
) -> Iterator[tuple[torch.Tensor | None, bool]]:
    """Turn per-step outcomes into (chunk (1, n) int64 or None, is_final) as the official generator.

    `steps` yields (kept token or None, finished) once per decoding step (T2SSession.steps()).
    The final chunk holds whatever is pending when decoding stops; it is None when nothing is
    pending (official behaviour, e.g. EOS right after a cut).

    official_overlap=True reproduces a quirk of the official mute chunker: it emits every
    pending token but only advances past the cut, so the tokens after the cut are emitted again
    in the next chunk (TTS.py concatenates chunks, which repeats them). Off by default: a chunk
    then ends exactly at the cut. The golden chunk patterns are identical either way.
    """
    tokens: list[int] = []
    start = 0  # first not-yet-emitted token
    for token, finished in steps:
        if token is not None:
            tokens.append(token)
        if finished:
            if start < len(tokens):
                yield torch.tensor([tokens[start:]], dtype=torch.long), True
            else:
                yield None, True
            return
        n = chunker.cut(torch.tensor(tokens[start:], dtype=torch.long))
        if n:
            end = len(tokens) if official_overlap else start + n
            yield torch.tensor([tokens[start:end]], dtype=torch.long), False
            start += n
