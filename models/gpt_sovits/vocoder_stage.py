"""The SoVITS stage: one thread that turns every stream's semantic tokens into audio.

    T2SScheduler thread: on_step(token) ─► job.push(token)       (appends; never decodes)
                                                 │
    vocoder thread: picks one job whose tokens complete a window ─► StreamingDecoder.render_next
                    ─► deliver(audio) (the stream's real-time gate, then its caller)
                    once the T2S has finished it: the remaining windows, the last one, on_end(None)

So the T2S keeps stepping while windows decode, and SoVITS work has one owner, as the T2S model has
the scheduler. Which job goes next: one still waiting for its first audio (a room that has heard
nothing yet) before any other, then the one served longest ago (round robin: a long utterance
neither starves nor is starved). A job renders its windows exactly where one-token-at-a-time
pushing would (`render_next`), however far the stage is behind, so a stream's audio is the same
alone and in a crowd.

Windows of different jobs are decoded one after another, not stacked into one batch: on the 2-core
AVX-512 CPU this stage was built on, three 28-frame windows as one batch took as long as the three
alone or longer (flow and HiFi-GAN are compute-bound convolutions, so a batch only adds work; 435 vs
382 ms fp32, 248 vs 229 ms bf16), delaying the first row's audio for nothing, and a batched row
differs from the row decoded alone by rounding (up to 3e-7 fp32, 7e-4 bf16 vocoder), which would
end "each stream hears exactly the audio it gets alone".

cancel() drops a job's pending tokens and windows: after it returns nothing more is delivered. An
error while rendering (or delivering) ends only that job, with on_end(error). close() ends every
job still open with its reason and joins the thread, so nobody waits forever.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch

log = logging.getLogger(__name__)

Deliver = Callable[[np.ndarray], None]
EndCallback = Callable[[BaseException | None], None]


class WindowDecoder(Protocol):
    """What the stage needs of a decoder (sovits_streaming.StreamingDecoder)."""

    @property
    def started(self) -> bool: ...

    @property
    def tokens_not_rendered(self) -> int: ...

    def add(self, new_codes: Sequence[int]) -> None: ...

    def window_ready(self, extra_tokens: int = 0) -> bool: ...

    def render_next(self) -> np.ndarray: ...

    def finish(self) -> np.ndarray: ...


class StageClosed(RuntimeError):
    """The stage was closed while this job was still open (close() without a reason of its own)."""


class VocoderJob:
    """One piece's decoder in the stage: tokens in (from any thread), audio out (in the stage's thread)."""

    def __init__(self, stage: VocoderStage, decoder: WindowDecoder, deliver: Deliver, on_end: EndCallback,
                 first_audio: bool, order: int) -> None:
        self.stage, self.decoder = stage, decoder
        self.deliver, self.on_end = deliver, on_end
        self.first_audio, self.order = first_audio, order
        self.pending: list[int] = []  # tokens not handed to the decoder yet
        self.tokens_done = False  # the T2S has finished this piece
        self.served = -1  # when the stage last rendered for it (round robin)
        self.windows = 0  # renders so far
        self._not_rendered = 0  # the decoder's tokens past its last window (updated by the stage)
        self.error: BaseException | None = None
        self.ended = False  # cancelled, failed or complete: nothing more is delivered
        self.done = threading.Event()

    @property
    def waits_for_first_audio(self) -> bool:
        return self.first_audio and not self.decoder.started

    @property
    def backlog(self) -> int:
        """Tokens pushed and not rendered yet (read from any thread: the T2S holds back at a limit)."""
        return len(self.pending) + self._not_rendered

    def push(self, token: int) -> None:
        """A new semantic token (called from the T2S scheduler's thread)."""
        self.stage._push(self, token)

    def finish(self) -> None:
        """No more tokens: render what is left, then on_end(None)."""
        self.stage._finish_tokens(self)

    def cancel(self) -> None:
        self.stage.cancel(self)

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)


class VocoderStage:
    """Renders the windows of every open job, one at a time, in one worker thread.

    threaded=False runs no thread: call `step()` yourself (tests do).
    """

    def __init__(self, *, threaded: bool = True) -> None:
        self._jobs: list[VocoderJob] = []
        self._cond = threading.Condition()  # an RLock: deliver / on_end may call back into the stage
        self._order = itertools.count()
        self._turn = itertools.count()
        self._threaded = threaded
        self._thread: threading.Thread | None = None
        self._closed = False
        self.windows_rendered = 0

    @property
    def open_jobs(self) -> int:
        return len(self._jobs)

    def open(self, decoder: WindowDecoder, *, deliver: Deliver, on_end: EndCallback,
             first_audio: bool = False) -> VocoderJob:
        """A job for `decoder`. deliver(audio) and on_end(error or None) run in the stage's thread;
        `first_audio`: its listener has heard nothing yet, so its first window goes ahead of others."""
        job = VocoderJob(self, decoder, deliver, on_end, first_audio, next(self._order))
        with self._cond:
            if self._closed:
                raise StageClosed("the vocoder stage is closed")
            self._jobs.append(job)
            if self._threaded and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sovits-vocoder", daemon=True)
                self._thread.start()
            self._cond.notify()
        return job

    def cancel(self, job: VocoderJob) -> None:
        """Drop the job's pending tokens and windows; on_end is not called (the canceller knows)."""
        with self._cond:
            if job.ended:
                return
            job.ended = True
            job.pending.clear()
            if job in self._jobs:
                self._jobs.remove(job)
            job.done.set()

    def close(self, reason: BaseException | None = None) -> None:
        """End every open job with `reason` (default StageClosed) and stop the thread."""
        with self._cond:
            self._closed = True
            open_jobs, self._jobs = self._jobs, []
            for job in open_jobs:
                job.ended = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        for job in open_jobs:
            self._report_end(job, reason or StageClosed("the vocoder stage was closed"))

    # -- producers (the scheduler's thread) ------------------------------------------------------
    def _push(self, job: VocoderJob, token: int) -> None:
        with self._cond:
            if job.ended or job.tokens_done:
                return
            job.pending.append(token)
            self._cond.notify()

    def _finish_tokens(self, job: VocoderJob) -> None:
        with self._cond:
            if not job.ended:
                job.tokens_done = True
                self._cond.notify()

    # -- the loop --------------------------------------------------------------------------------
    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not self._closed and self._pick() is None:
                        self._cond.wait()
                    if self._closed:
                        return
                try:
                    self.step()
                except Exception:  # step() hands errors to their jobs; this is a bug
                    log.exception("vocoder stage step failed")

    def _pick(self) -> VocoderJob | None:
        """The job to serve next (lock held): one with a complete window or finished tokens; first
        windows first, then the job served longest ago."""
        ready = [j for j in self._jobs if j.tokens_done or j.decoder.window_ready(len(j.pending))]
        if not ready:
            return None
        return min(ready, key=lambda j: (not j.waits_for_first_audio, j.served, j.order))

    def step(self) -> bool:
        """Render one window (or a finished job's last one). False: nothing to render."""
        with self._cond:
            job = self._pick()
            if job is None:
                return False
            tokens, job.pending = job.pending, []
            job._not_rendered += len(tokens)
            job.served = next(self._turn)
        try:
            job.decoder.add(tokens)
            # Windows still complete go first, each where token-by-token pushing puts it; then the rest.
            last = job.tokens_done and not job.decoder.window_ready()
            audio = job.decoder.finish() if last else job.decoder.render_next()
        except Exception as exc:
            self._fail(job, exc)
            return True
        with self._cond:
            if job.ended:  # cancelled (or the stage closed) while rendering: drop the window
                return True
            job.windows += 1
            job._not_rendered = job.decoder.tokens_not_rendered
            self.windows_rendered += 1
            try:
                if audio.size:
                    job.deliver(audio)
            except Exception as exc:  # the listener's failure ends its job only
                self._fail(job, exc)
                return True
            if last:
                self._end(job)
                self._report_end(job, None)
        return True

    def _end(self, job: VocoderJob) -> None:
        with self._cond:
            job.ended = True
            if job in self._jobs:
                self._jobs.remove(job)

    def _fail(self, job: VocoderJob, exc: BaseException) -> None:
        with self._cond:
            if job.ended:
                return
            job.error = exc
            self._end(job)
        self._report_end(job, exc)

    def _report_end(self, job: VocoderJob, error: BaseException | None) -> None:
        try:
            job.on_end(error)
        except Exception:
            log.exception("a vocoder job's end handler failed")
        finally:
            job.done.set()
