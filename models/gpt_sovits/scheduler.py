"""Continuous batching for the text-to-semantic model: every utterance of every caller, one loop.

    submit(session) ─► waiting line (first pieces of a stream ahead of later ones)
                          │ a slot is free
                          ▼
        prefill, alone (batch 1) into its slot ─► first token
                          │
        every later step: the decoding slots as one batch, rows 0..n-1 of one preallocated cache;
        each row feeds its own last token at its own position and attends to its own keys only
        (a per-row key mask), then its own sampling settings and generator pick its token
                          │
        on_step(token, finished) in the worker thread; a finished or cancelled utterance leaves
        between steps and the last row's keys move into its slot, so the rows stay contiguous
        and the batch attends over a view of the cache, not a gathered copy.

A row whose consumer is behind (`may_step()` false: the engine's vocoder stage has a backlog of its
tokens) sits out the steps until it catches up, so on a machine the two stages share, the CPU goes to
the audio that is due rather than to tokens far ahead of it (the bounded queue between two stages).
While some utterance still waits for its first audio (`first_audio_tokens`), two of every three
steps run only those rows: a small batch is faster on a CPU, so a newcomer's first chunk does not
wait behind the later chunks of long ones. A lone row runs the plain T2SSession step, so one
utterance alone decodes exactly as without the scheduler. The sampling and stop rules are the
session's own (`T2SSession.take`), so a batched row follows the official rules like a solo one.

One scheduler per T2S model; it holds no voice state (prompts travel with each session).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable

import torch

from .t2s_generate import T2SSession
from .t2s_model import T2SModel

log = logging.getLogger(__name__)

StepCallback = Callable[[int | None, bool], None]
ErrorCallback = Callable[[BaseException], None]
ReadyCheck = Callable[[], bool]

DEFAULT_MAX_BATCH = 8
# Positions per slot: a 1500-step utterance after ~550 positions of text and prompt. Longer texts
# decode fewer steps (capacity bounds max_steps); the official cap of 1500 steps is 60 s of audio.
DEFAULT_SLOT_CAPACITY = 2048
# While an utterance waits for its first audio, this many steps in a row run only such rows,
# then one step runs everyone (so long utterances slow down, never stop).
PRIORITY_STEPS = 2
HOLD_POLL_S = 0.005  # while every row is held back (may_step), how often to look again


class Utterance:
    """One submitted session: its place in the scheduler and how it ended."""

    def __init__(self, scheduler: T2SScheduler, session: T2SSession, on_step: StepCallback | None,
                 on_error: ErrorCallback | None, first_audio_tokens: int, order: int,
                 may_step: ReadyCheck | None = None) -> None:
        self.scheduler, self.session = scheduler, session
        self.on_step, self.on_error, self.may_step = on_step, on_error, may_step
        self.first_audio_tokens, self.order = first_audio_tokens, order
        self.row: int | None = None  # cache slot while decoding
        self.cancelled = False
        self.error: BaseException | None = None
        self.done = threading.Event()

    @property
    def waits_for_first_audio(self) -> bool:
        return not self.session.finished and len(self.session.tokens) < self.first_audio_tokens

    @property
    def may_decode(self) -> bool:
        return self.may_step is None or self.waits_for_first_audio or self.may_step()

    def cancel(self) -> None:
        """Stop decoding this utterance; its slot is freed before the next step."""
        self.scheduler.cancel(self)

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)


class T2SScheduler:
    """Decodes every submitted T2SSession of one model, batched, in one worker thread.

    max_batch: slots (utterances decoding at once); more wait in line. slot_capacity: cache
    positions per slot. threaded=False runs no thread: call `step()` yourself (tests do).
    """

    def __init__(self, model: T2SModel, *, max_batch: int = DEFAULT_MAX_BATCH,
                 slot_capacity: int = DEFAULT_SLOT_CAPACITY, threaded: bool = True,
                 priority_steps: int = PRIORITY_STEPS) -> None:
        if max_batch < 1 or slot_capacity < 2:
            raise ValueError("max_batch must be >= 1 and slot_capacity >= 2")
        self.model, self.max_batch, self.slot_capacity = model, max_batch, slot_capacity
        self.priority_steps = priority_steps
        # One static cache for all slots (torch.empty: on a CPU only written pages cost memory).
        self.cache = model.new_cache(max_batch, slot_capacity)
        # Per slot, how many leading positions hold finite numbers. A batched step reads every row's
        # keys up to the longest row, masked; a masked key weighs 0, but 0 x NaN from never-written
        # memory is NaN, so those positions are zeroed first (lazily: on a CPU untouched pages stay free).
        self._finite = [0] * max_batch
        self._rows: list[Utterance] = []  # decoding; _rows[i] owns cache slot i
        self._waiting: list[Utterance] = []
        self._cond = threading.Condition()
        self._order = itertools.count()
        self._priority_run = 0
        self._threaded = threaded
        self._thread: threading.Thread | None = None
        self._closed = False
        self.steps_run = 0  # prefills and decoding steps so far
        self.largest_batch = 0  # most rows one decoding step has run

    # -- callers (any thread) ----------------------------------------------------------------
    def bytes_per_slot(self) -> int:
        """KV-cache bytes one utterance's slot takes (k and v, every layer, full capacity)."""
        return self.cache.nbytes_per_row

    @property
    def active(self) -> int:
        return len(self._rows)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def submit(self, session: T2SSession, *, on_step: StepCallback | None = None,
               on_error: ErrorCallback | None = None, first_audio_tokens: int = 0,
               may_step: ReadyCheck | None = None) -> Utterance:
        """Queue a fresh session. on_step(kept token or None, finished) and on_error run in the
        worker thread; `first_audio_tokens` > 0 gives it priority until it has that many tokens;
        `may_step()` false (asked before each step, in the worker thread) holds the row back."""
        if session.model is not self.model:
            raise ValueError("this session decodes with another model than the scheduler's")
        if session.step_index != -1 or session.finished:
            raise ValueError("submit a session that has not started")
        room = self.slot_capacity - session.n_text - session.n_prompt
        if room < 1:
            raise ValueError(f"text and prompt take {session.n_text + session.n_prompt} positions, "
                             f"a slot holds {self.slot_capacity}")
        session.max_steps = min(session.max_steps, room)
        utterance = Utterance(self, session, on_step, on_error, first_audio_tokens, next(self._order), may_step)
        with self._cond:
            if self._closed:
                raise RuntimeError("the scheduler is closed")
            self._waiting.append(utterance)
            # First pieces (someone waits for audio) go ahead of later pieces, each in submission order.
            self._waiting.sort(key=lambda u: (u.first_audio_tokens == 0, u.order))
            if self._threaded and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="t2s-scheduler", daemon=True)
                self._thread.start()
            self._cond.notify()
        return utterance

    def cancel(self, utterance: Utterance) -> None:
        with self._cond:
            if utterance.done.is_set():
                return
            utterance.cancelled = True
            if utterance in self._waiting:
                self._waiting.remove(utterance)
                utterance.session.close()
                utterance.done.set()
            self._cond.notify()

    def close(self, reason: BaseException | None = None) -> None:
        """Cancel everything and stop the worker; utterances still decoding get `reason` as their error."""
        with self._cond:
            self._closed = True
            unfinished = [u for u in self._waiting + self._rows if not u.cancelled]
            for u in self._waiting + self._rows:
                u.cancelled = True
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        with self._cond:
            for u in self._waiting + self._rows:
                u.session.close()
                u.done.set()
            self._waiting, self._rows = [], []
        for u in unfinished:
            if reason is not None:
                self._fail(u, reason)

    # -- the loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not self._closed and not self._rows and not self._waiting:
                        self._cond.wait()
                    if self._closed:
                        return
                try:
                    stepped = self.step()
                except Exception:  # step() hands errors to their utterances; this is a bug
                    log.exception("T2S scheduler step failed")
                    stepped = True
                if not stepped:  # every row waits for its consumer: look again shortly
                    with self._cond:
                        self._cond.wait(HOLD_POLL_S)

    @torch.inference_mode()
    def step(self) -> bool:
        """One scheduling step: a newcomer's prefill, else one decoding step of a batch. False: idle."""
        with self._cond:
            for u in [u for u in self._rows if u.cancelled]:
                self._leave(u)
            newcomer = None
            if self._waiting and len(self._rows) < self.max_batch:
                newcomer = self._waiting.pop(0)
                newcomer.row = len(self._rows)
                self._rows.append(newcomer)
            batch = self._pick_batch() if newcomer is None else [newcomer]
        if not batch:
            return False
        self.steps_run += 1
        if newcomer is None:
            self.largest_batch = max(self.largest_batch, len(batch))
        try:
            outcomes = self._prefill(batch[0]) if newcomer is not None else self._decode(batch)
        except Exception as exc:  # the whole step failed: so did every utterance in it
            for u in batch:
                self._fail(u, exc)
        else:
            for u, (token, finished) in zip(batch, outcomes, strict=True):
                self._deliver(u, token, finished)
        with self._cond:
            for u in batch:
                if u.row is not None and (u.session.finished or u.cancelled):
                    self._leave(u)
        return True

    def _pick_batch(self) -> list[Utterance]:
        rows = [u for u in self._rows if u.may_decode]
        young = [u for u in rows if u.waits_for_first_audio]
        if young and len(young) < len(rows) and self._priority_run < self.priority_steps:
            self._priority_run += 1
            return young
        self._priority_run = 0
        return rows

    def _prefill(self, u: Utterance) -> list[tuple[int | None, bool]]:
        assert u.row is not None
        u.session.use_cache(self.cache.rows(u.row, u.row + 1))
        return [u.session.step()]

    def _decode(self, batch: list[Utterance]) -> list[tuple[int | None, bool]]:
        if len(batch) == 1:  # alone: exactly the solo session's step
            return [batch[0].session.step()]
        model, device = self.model, self.cache.k.device
        sessions = [u.session for u in batch]
        inputs = [s.next_input for s in sessions]
        assert all(t is not None for t in inputs)
        tokens = torch.cat([t.view(1) for t in inputs if t is not None])
        audio_pos = [s.audio_position for s in sessions]
        cache_pos = [s.cache_position for s in sessions]
        slots = [u.row for u in batch if u.row is not None]
        contiguous = slots == list(range(slots[0], slots[0] + len(slots)))
        rows: slice | torch.Tensor = (slice(slots[0], slots[0] + len(slots)) if contiguous
                                      else torch.tensor(slots, device=device))
        for u, used in zip(batch, cache_pos, strict=True):
            assert u.row is not None
            self._make_finite(u.row, used, max(cache_pos) + 1)
        h = model.embed_audio_rows(tokens, torch.tensor(audio_pos, device=device), max(audio_pos) + 1)
        h = model.run_layers_rows(h, self.cache, rows, torch.tensor(cache_pos, device=device), max(cache_pos) + 1)
        logits = model.logits(h[:, -1])  # (B, vocab)
        return [s.take(logits[i : i + 1]) for i, s in enumerate(sessions)]

    def _make_finite(self, row: int, written: int, end: int) -> None:
        have = max(self._finite[row], written)
        if have < end:
            stop = min(self.slot_capacity, end + 256)  # in strides, not every step
            self.cache.k[:, row, :, have:stop].zero_()
            self.cache.v[:, row, :, have:stop].zero_()
            have = stop
        self._finite[row] = have

    def _deliver(self, u: Utterance, token: int | None, finished: bool) -> None:
        if u.cancelled or u.on_step is None:
            return
        try:
            u.on_step(token, finished)
        except Exception as exc:  # the caller's failure ends its utterance only
            self._fail(u, exc)

    def _fail(self, u: Utterance, exc: BaseException) -> None:
        u.error, u.cancelled = exc, True
        if u.on_error is not None:
            try:
                u.on_error(exc)
            except Exception:
                log.exception("an utterance's error handler failed")

    def _leave(self, u: Utterance) -> None:
        """Free u's slot (lock held): the last row's keys move into it, so rows stay 0..n-1."""
        assert u.row is not None
        r, last = u.row, len(self._rows) - 1
        if r != last:
            moved = self._rows[last]
            used = moved.session.cache_position  # positions written so far
            self.cache.k[:, r, :, :used] = self.cache.k[:, last, :, :used]
            self.cache.v[:, r, :, :used] = self.cache.v[:, last, :, :used]
            self._rows[r], moved.row = moved, r
            self._finite[r] = max(self._finite[r], used)
            if not moved.session.finished:
                moved.session.use_cache(self.cache.rows(r, r + 1))
        self._rows.pop()
        u.row = None
        u.session.close()  # a no-op when it finished; frees the session's view of the slot
        u.done.set()
