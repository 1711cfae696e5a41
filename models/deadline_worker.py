"""Worker threads that run blocking jobs earliest deadline first, each with a resource of its own.

An engine that can only run one synthesis at a time (the stock voice's ONNX session) serves several
rooms. First come, first served lets a room that has 2 s of audio queued go before one that runs dry
in 300 ms; with each job's deadline (when its caller's queued audio runs out) the one closest to a
hole in its audio goes first. The threads are the engine's own, so its jobs never queue behind
other work in the event loop's default executor (enrollment analyses, file I/O). Each thread holds
one resource (the stock voice: an ONNX session of one thread) and hands it to the jobs it runs.

A worker may also hold a `solo` resource for an urgent job that runs alone (the stock voice: a session
spread over every core). A room that waits for its first words on an idle server gets them made on
all cores; as soon as two jobs run at once, each runs on its own thread's resource.

A job whose caller stopped waiting (cancelled) is skipped when its turn comes. Nothing here waits
forever: the caller's await ends with the job's result or error, or with the caller's cancellation;
`close()` ends the threads after their current job and fails the waiting jobs with `WorkerClosed`
(it runs at interpreter exit too: a thread still inside native code while the process exits aborts it).
"""

from __future__ import annotations

import asyncio
import atexit
import heapq
import itertools
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class WorkerClosed(RuntimeError):
    """The worker was closed before the job ran (or the job came after)."""


class DeadlineWorker(Generic[R]):
    """`await worker.run(deadline, fn, *args)` runs `fn(resource, *args)` in one of the worker's
    threads (one per resource, started on first use); among waiting jobs the one with the smallest
    `deadline` (any monotonic number, e.g. `time.monotonic()` plus the caller's queued seconds) runs
    first, ties in submission order."""

    def __init__(self, name: str, resources: Sequence[R], *, solo: R | None = None) -> None:
        if not resources:
            raise ValueError("a DeadlineWorker needs at least one resource")
        self.name = name
        self._resources = list(resources)
        self._solo = solo
        self._jobs: list[tuple[float, int, Callable[[R], Any], asyncio.Future[Any], asyncio.AbstractEventLoop, bool]] = []
        self._running = 0  # jobs on the threads now
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.jobs_run = 0
        self.jobs_skipped = 0  # their caller had stopped waiting
        self.jobs_solo = 0  # run on the solo resource

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._jobs)

    async def run(self, deadline: float, fn: Callable[..., T], *args: Any, urgent: bool = False) -> T:
        """`fn(resource, *args)` on a worker thread. An `urgent` job that finds no other job running or
        waiting when its turn comes gets the solo resource, if the worker has one."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._cond:
            if self._closed:
                raise WorkerClosed(f"{self.name} is closed")
            job = (deadline, next(self._order), lambda resource: fn(resource, *args), future, loop, urgent)
            heapq.heappush(self._jobs, job)
            if not self._threads:
                self._threads = [threading.Thread(target=self._serve, args=(resource,), name=f"{self.name}-{i}",
                                                  daemon=True) for i, resource in enumerate(self._resources)]
                for thread in self._threads:
                    thread.start()
                _open.add(self)
            self._cond.notify()
        return await future  # a cancelled caller cancels the future: its job is skipped

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking jobs, fail the waiting ones (`WorkerClosed`) and let each thread finish its current job."""
        with self._cond:
            self._closed = True
            waiting, self._jobs = self._jobs, []
            self._cond.notify_all()
        closed = WorkerClosed(f"{self.name} is closed")
        for _, _, _, future, loop, _ in waiting:
            try:
                loop.call_soon_threadsafe(_settle, future, None, closed)
            except RuntimeError:  # that loop is closed: nobody is waiting
                pass
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def _serve(self, resource: R) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                _, _, job, future, loop, urgent = heapq.heappop(self._jobs)
                if future.done():  # cancelled while it waited
                    self.jobs_skipped += 1
                    continue
                # Decided under the lock, with the count of running jobs: the solo resource is never
                # handed to two threads at once.
                solo = self._solo if urgent and self._running == 0 and not self._jobs else None
                self._running += 1
            try:
                result, error = job(solo if solo is not None else resource), None
            except BaseException as exc:  # handed to the caller, whatever it is
                result, error = None, exc
            with self._cond:
                self._running -= 1
                self.jobs_run += 1
                self.jobs_solo += solo is not None
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the caller's loop is closed: nobody is waiting any more
                pass


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_open: weakref.WeakSet[DeadlineWorker[Any]] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for worker in list(_open):
        worker.close()
