"""Decoding with the text-to-semantic model: one utterance step by step, streamed, or a batch.

Decoding runs one prefill over [text ; prompt] and then one token per step against the key/value
cache preallocated for the whole utterance (`t2s_model.KVCache`), like gpt-fast's generate.py.
Sampling and stop rules are in `sampling.py`; they follow the official loop so that greedy
decoding reproduces the official tokens and `idx` exactly (tests/gpt_sovits/test_t2s.py).

Entry points: `generate` (whole utterance), `generate_stream` (a T2SSession: token ints as they
come), `generate_chunks` (the official streaming chunks), `generate_batch`; `start_session` for
a session with explicit SamplingParams.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from .sampling import MAX_STEPS, Chunker, SamplingParams, choose_tokens, chunk_tokens
from .t2s_model import BERT_DIM, KVCache, T2SModel, prefix_lm_mask


def _as_batch(t: torch.Tensor, dims: int) -> torch.Tensor:
    return t.unsqueeze(0) if t.dim() == dims - 1 else t


@dataclass
class T2SResult:
    """What one utterance's decoding produced, in the official terms.

    tokens: (L,) int64 generated semantic tokens, EOS removed.
    idx: the official second return value (step index at stop; 0 in reference-free mode).
    y: (P+L,) int64 prompt followed by the tokens (the official first return value, row 0).
    stop_reason: "eos" | "early_stop" | "max_steps" | "cancelled".
    """

    tokens: torch.Tensor
    idx: int
    y: torch.Tensor
    stop_reason: str
    logits: torch.Tensor | None = None  # (steps, vocab) raw logits when record_logits=True
    prefill_hidden: torch.Tensor | None = field(default=None, repr=False)  # (1, D) last row at step 0

    @property
    def webui_tokens(self) -> torch.Tensor:
        """`y[:, -idx:]` as inference_webui / TTS.py slice it (drops the first token when idx = L - 1)."""
        return self.y[-self.idx :] if self.idx else self.y


class T2SSession(Iterator[int]):
    """Incremental decoding of one utterance (batch 1). Iterate to get kept tokens as ints.

    The prefill runs on the first `next()`; each later `next()` runs one step. A step whose
    token is EOS (or whose greedy choice is EOS) yields nothing and ends the iteration.
    `steps()` exposes the raw per-step outcomes for the chunkers; `result()` finishes decoding
    and returns the official (tokens, idx).
    """

    def __init__(
        self,
        model: T2SModel,
        phones: torch.Tensor,
        bert: torch.Tensor,
        prompt: torch.Tensor | None,
        *,
        params: SamplingParams,
        early_stop_num: int,
        generator: torch.Generator | None,
        max_steps: int,
        record_logits: bool,
    ) -> None:
        cfg = model.config
        self.model, self.params, self.generator = model, params, generator
        self.early_stop_num, self.max_steps = early_stop_num, max_steps
        device = model.device
        self.phones = _as_batch(phones.long(), 2).to(device)  # (1, N)
        self.bert = _as_batch(bert, 3).to(device)  # (1, 1024, N)
        if self.phones.shape[0] != 1 or self.bert.shape[0] != 1:
            raise ValueError("T2SSession decodes one utterance; use generate_batch for several")
        if self.bert.shape[1:] != (BERT_DIM, self.phones.shape[1]):
            raise ValueError(f"bert must be (1, {BERT_DIM}, {self.phones.shape[1]}), got {tuple(self.bert.shape)}")
        self.ref_free = prompt is None or prompt.numel() == 0
        self.prompt = (
            torch.zeros(1, 0, dtype=torch.long) if prompt is None or self.ref_free else _as_batch(prompt.long(), 2)
        ).to(device)
        self.n_text, self.n_prompt = self.phones.shape[1], self.prompt.shape[1]
        if self.n_text == 0:
            raise ValueError("no phones to decode")
        if int(self.phones.min()) < 0 or int(self.phones.max()) >= cfg.phoneme_vocab_size:
            raise ValueError(f"phone ids must lie in [0, {cfg.phoneme_vocab_size})")
        if self.n_prompt and (int(self.prompt.min()) < 0 or int(self.prompt.max()) >= cfg.eos):
            raise ValueError(f"prompt semantic tokens must lie in [0, {cfg.eos})")
        if max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        self.tokens: list[int] = []
        self.step_index = -1  # index of the last step run
        self.finished = False
        self.stop_reason = ""
        self.record_logits = record_logits
        self._logits: list[torch.Tensor] = []
        self.prefill_hidden: torch.Tensor | None = None
        self._cache: KVCache | None = None
        # Ids seen so far (prompt included) for the repetition penalty: (1, vocab) bool.
        self._seen = torch.zeros(1, cfg.vocab_size, dtype=torch.bool, device=device)
        self._seen[0, self.prompt[0]] = True
        self._next_input: torch.Tensor | None = None  # (1, 1) last kept token

    # -- one step --

    @torch.inference_mode()
    def step(self) -> tuple[int | None, bool]:
        """Run one decoding step -> (kept token or None, finished)."""
        if self.finished:
            raise RuntimeError(f"decoding already finished ({self.stop_reason})")
        model = self.model
        idx = self.step_index + 1
        if idx == 0:
            x = model.embed_text(self.phones, self.bert)
            h = x if self.ref_free else torch.cat([x, model.embed_audio(self.prompt)], dim=1)
            if self._cache is None:  # a scheduler may have given this session a slot of its cache
                self._cache = model.new_cache(1, self.cache_length)
            mask = prefix_lm_mask(self.n_text, self.n_prompt).to(h.device)
            h = model.run_layers(h, self._cache, 0, mask)
            self.prefill_hidden = h[:, -1].clone()
        else:
            assert self._cache is not None and self._next_input is not None
            h = model.embed_audio(self._next_input, self.audio_position)
            h = model.run_layers(h, self._cache, self.cache_position, None)
        return self.take(model.logits(h[:, -1]))

    @property
    def cache_length(self) -> int:
        """Cache positions this session may write: text, prompt and every step."""
        return self.n_text + self.n_prompt + self.max_steps

    @property
    def audio_position(self) -> int:
        """Audio position of the token the next (non-prefill) step feeds in."""
        return self.n_prompt + self.step_index

    @property
    def cache_position(self) -> int:
        """Cache position the next (non-prefill) step writes."""
        return self.n_text + self.n_prompt + self.step_index

    @property
    def next_input(self) -> torch.Tensor | None:
        """(1, 1) the last kept token, which the next step feeds in; None before the prefill."""
        return self._next_input

    def take(self, logits: torch.Tensor) -> tuple[int | None, bool]:
        """Apply this step's logits (1, vocab) with the official sampling and stop rules: the part
        of a step after the network, shared with the batched scheduler (scheduler.py)."""
        cfg = self.model.config
        idx = self.step_index + 1
        if self.record_logits:
            self._logits.append(logits[0].clone())
        choice = choose_tokens(logits, self._seen, idx, cfg.eos, self.params, self.generator)
        token, greedy = int(choice.token[0]), int(choice.greedy[0])
        self.step_index = idx

        kept: int | None = token
        n_generated = len(self.tokens) + 1  # the official counts the drawn token before the EOS check
        if self.early_stop_num != -1 and n_generated > self.early_stop_num:
            self.finished, self.stop_reason = True, "early_stop"
        if greedy == cfg.eos or token == cfg.eos:
            self.finished, self.stop_reason, kept = True, "eos", None
        if idx == self.max_steps - 1 and not self.finished:
            self.finished, self.stop_reason = True, "max_steps"
        if kept is not None:
            self.tokens.append(kept)
            self._seen[0, kept] = True
            self._next_input = choice.token.view(1, 1)
        if self.finished:
            self._cache = None  # free the cache as soon as the utterance is done
        return kept, self.finished

    def use_cache(self, cache: KVCache | None) -> None:
        """Decode into `cache` (batch 1, capacity >= cache_length) instead of allocating one;
        the scheduler hands each session its slot (and a new view when it moves the slot)."""
        if cache is not None and cache.capacity < self.cache_length:
            raise ValueError(f"cache holds {cache.capacity} positions, this session needs {self.cache_length}")
        self._cache = cache

    def close(self) -> None:
        """Stop decoding now (e.g. the listener interrupted) and free the cache."""
        if not self.finished:
            self.finished, self.stop_reason, self._cache = True, "cancelled", None

    def steps(self) -> Iterator[tuple[int | None, bool]]:
        """Per-step outcomes until decoding stops (for `chunk_tokens`)."""
        while not self.finished:
            yield self.step()

    def __next__(self) -> int:
        while not self.finished:
            token, _ = self.step()
            if token is not None:
                return token
        raise StopIteration

    def result(self) -> T2SResult:
        """Run to the end (if not already) and return the official outputs."""
        for _ in self.steps():
            pass
        tokens = torch.tensor(self.tokens, dtype=torch.long)
        if self.ref_free and tokens.numel() == 0:
            tokens = torch.zeros(1, dtype=torch.long)  # official "bad zero prediction" fallback
        y = torch.cat([self.prompt[0].cpu(), tokens])
        return T2SResult(
            tokens=tokens,
            idx=0 if self.ref_free else self.step_index,
            y=y,
            stop_reason=self.stop_reason,
            logits=torch.stack(self._logits) if self.record_logits else None,
            prefill_hidden=self.prefill_hidden,
        )



def start_session(
    model: T2SModel,
    phones: torch.Tensor,
    bert: torch.Tensor,
    prompt: torch.Tensor | None = None,
    *,
    params: SamplingParams | None = None,
    early_stop_num: int | None = None,
    generator: torch.Generator | None = None,
    max_steps: int = MAX_STEPS,
    record_logits: bool = False,
) -> T2SSession:
    """Begin decoding one utterance (see T2SSession); nothing runs until it is iterated."""
    return T2SSession(
        model,
        phones,
        bert,
        prompt,
        params=params or SamplingParams(),
        early_stop_num=model.config.early_stop_num if early_stop_num is None else early_stop_num,
        generator=generator,
        max_steps=max_steps,
        record_logits=record_logits,
    )


def generate(
    model: T2SModel,
    phones: torch.Tensor,
    bert: torch.Tensor,
    prompt: torch.Tensor | None = None,
    *,
    top_k: int = 15,
    top_p: float = 1.0,
    temperature: float = 1.0,
    repetition_penalty: float = 1.35,
    early_stop_num: int | None = None,
    generator: torch.Generator | None = None,
    max_steps: int = MAX_STEPS,
    record_logits: bool = False,
) -> T2SResult:
    """Decode one utterance to the end (official infer_panel_naive, non-streaming).

    phones (N,) or (1, N) int64 = prompt phones ++ target phones; bert (1024, N) or (1, 1024, N);
    prompt (P,) or (1, P) int64 prompt semantic tokens, None for reference-free mode.
    early_stop_num None = the checkpoint's 50 x max_sec; -1 = off.
    generator: a seeded torch.Generator for reproducible sampling; None draws from torch's global
    RNG exactly as the official code does (so torch.manual_seed reproduces official samples).
    top_k=1 is greedy (deterministic).
    """
    params = SamplingParams(top_k=top_k, top_p=top_p, temperature=temperature, repetition_penalty=repetition_penalty)
    session = start_session(
        model, phones, bert, prompt, params=params, early_stop_num=early_stop_num, generator=generator,
        max_steps=max_steps, record_logits=record_logits,
    )
    return session.result()


def generate_stream(
    model: T2SModel,
    phones: torch.Tensor,
    bert: torch.Tensor,
    prompt: torch.Tensor | None = None,
    *,
    top_k: int = 15,
    top_p: float = 1.0,
    temperature: float = 1.0,
    repetition_penalty: float = 1.35,
    early_stop_num: int | None = None,
    generator: torch.Generator | None = None,
    max_steps: int = MAX_STEPS,
) -> T2SSession:
    """Streaming decode: an iterator of kept token ids (ints), one decoding step per `next()`.

    Arguments as `generate`. Stop iterating to cancel (the cache is dropped with the session);
    call `.result()` after exhaustion for idx / stop_reason.
    """
    params = SamplingParams(top_k=top_k, top_p=top_p, temperature=temperature, repetition_penalty=repetition_penalty)
    return start_session(
        model, phones, bert, prompt, params=params, early_stop_num=early_stop_num, generator=generator,
        max_steps=max_steps,
    )


def generate_chunks(
    model: T2SModel,
    phones: torch.Tensor,
    bert: torch.Tensor,
    prompt: torch.Tensor | None = None,
    *,
    chunker: Chunker,
    official_overlap: bool = False,
    top_k: int = 15,
    top_p: float = 1.0,
    temperature: float = 1.0,
    repetition_penalty: float = 1.35,
    early_stop_num: int | None = None,
    generator: torch.Generator | None = None,
    max_steps: int = MAX_STEPS,
) -> Iterator[tuple[torch.Tensor | None, bool]]:
    """Official streaming_mode generator: (chunk (1, n) int64 or None, is_final) pairs.

    chunker: FixedChunker(chunk_length) (TTS.py mode 3) or MuteChunker(similarity, chunk_length,
    threshold) (mode 2). See `sampling.chunk_tokens` for `official_overlap`.
    """
    session = generate_stream(
        model, phones, bert, prompt, top_k=top_k, top_p=top_p, temperature=temperature,
        repetition_penalty=repetition_penalty, early_stop_num=early_stop_num, generator=generator,
        max_steps=max_steps,
    )
    return chunk_tokens(session.steps(), chunker, official_overlap=official_overlap)


@torch.inference_mode()
def generate_batch(
    model: T2SModel,
    phones: Sequence[torch.Tensor],
    berts: Sequence[torch.Tensor],
    prompts: torch.Tensor | None,
    *,
    top_k: int = 15,
    top_p: float = 1.0,
    temperature: float = 1.0,
    repetition_penalty: float = 1.35,
    early_stop_num: int | None = None,
    generator: torch.Generator | None = None,
    max_steps: int = MAX_STEPS,
) -> list[T2SResult]:
    """Several utterances at once, as the official infer_panel_batch_infer (TTS.py's default path).

    phones[i] (N_i,), berts[i] (1024, N_i), prompts (B, P) (one prompt length for all rows), or
    None for reference-free decoding (then rows are decoded one after another, as officially).
    Texts are left-padded after embedding and the padding is masked out of attention. Quirk kept
    from the official code: each row drops its last token however it stopped, so a row ended by
    early_stop_num loses a real token (`y[i, :-1]`).
    """
    cfg = model.config
    params = SamplingParams(top_k=top_k, top_p=top_p, temperature=temperature, repetition_penalty=repetition_penalty)
    if prompts is None:  # the official batch path also falls back to one-by-one decoding here
        return [
            start_session(model, ph, bt, None, params=params, early_stop_num=early_stop_num,
                          generator=generator, max_steps=max_steps).result()
            for ph, bt in zip(phones, berts, strict=True)
        ]
    early_stop_num = cfg.early_stop_num if early_stop_num is None else early_stop_num
    b, device = len(phones), model.device
    prompts = _as_batch(prompts.long(), 2).to(device)
    if len(berts) != b or prompts.shape[0] != b:
        raise ValueError("phones, berts and prompts must hold the same number of items")
    n_max = max(int(p.shape[0]) for p in phones)
    n_prompt = prompts.shape[1]
    x = torch.zeros(b, n_max, cfg.hidden_dim, dtype=model.dtype, device=device)
    key_valid = torch.ones(b, n_max + n_prompt + max_steps, dtype=torch.bool, device=device)
    for i, (ph, bt) in enumerate(zip(phones, berts, strict=True)):
        n = ph.shape[0]
        x[i, n_max - n :] = model.embed_text(ph.long().unsqueeze(0).to(device), bt.unsqueeze(0).to(device))[0]
        key_valid[i, : n_max - n] = False
    cache = model.new_cache(b, n_max + n_prompt + max_steps)
    seen = torch.zeros(b, cfg.vocab_size, dtype=torch.bool, device=device)
    seen.scatter_(1, prompts, True)
    generated = torch.zeros(b, max_steps, dtype=torch.long, device=device)
    results: list[T2SResult | None] = [None] * b
    h = torch.cat([x, model.embed_audio(prompts)], dim=1)
    total = n_max + n_prompt
    mask = prefix_lm_mask(n_max, n_prompt).to(device).unsqueeze(0) & key_valid[:, None, :total]  # (B, T, T)
    h = model.run_layers(h, cache, 0, mask.unsqueeze(1))
    for idx in range(max_steps):
        logits = model.logits(h[:, -1])
        choice = choose_tokens(logits, seen, idx, cfg.eos, params, generator)
        generated[:, idx] = choice.token
        seen.scatter_(1, choice.token.unsqueeze(1), True)
        n_kept = idx + 1
        done = (choice.token == cfg.eos) | (choice.greedy == cfg.eos)
        for i in torch.nonzero(done).flatten().tolist():
            if results[i] is None:
                results[i] = _batch_row(prompts[i], generated[i, : n_kept - 1], idx, "eos")
        if (early_stop_num != -1 and n_kept > early_stop_num) or idx == max_steps - 1:
            reason = "max_steps" if idx == max_steps - 1 else "early_stop"
            for i in range(b):
                if results[i] is None:
                    results[i] = _batch_row(prompts[i], generated[i, : n_kept - 1], idx, reason)
        if all(r is not None for r in results):
            break
        pos = n_prompt + idx
        h = model.embed_audio(generated[:, idx : idx + 1], pos)  # finished rows run on, ignored
        h = model.run_layers(h, cache, n_max + pos, key_valid[:, None, None, : n_max + pos + 1])
    return [r for r in results if r is not None]


def _batch_row(prompt: torch.Tensor, tokens: torch.Tensor, idx: int, reason: str) -> T2SResult:
    tokens = tokens.cpu().clone()
    return T2SResult(tokens=tokens, idx=idx, y=torch.cat([prompt.cpu(), tokens]), stop_reason=reason)


