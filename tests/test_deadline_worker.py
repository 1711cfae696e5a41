"""The stock voice's synthesis threads: jobs run earliest deadline first, errors reach their caller,
a caller that stops waiting loses its turn and nobody else's."""

from __future__ import annotations

import asyncio
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxroom.models.deadline_worker import DeadlineWorker, WorkerClosed


async def blocked(worker: DeadlineWorker) -> tuple[threading.Event, asyncio.Task[None]]:
    """The worker busy with a job that waits for the returned event."""
    gate, started = threading.Event(), threading.Event()

    def hold(_resource: object) -> None:
        started.set()
        gate.wait(10)

    task = asyncio.ensure_future(worker.run(0.0, hold))
    while not started.is_set():
        await asyncio.sleep(0.001)
    return gate, task


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=12))
def test_waiting_jobs_run_earliest_deadline_first_ties_in_order(deadlines: list[float]) -> None:
    async def scenario() -> list[int]:
        worker = DeadlineWorker("test", ["session"])
        gate, first = await blocked(worker)
        ran: list[int] = []
        jobs = [asyncio.ensure_future(worker.run(d, lambda _r, i: ran.append(i), i)) for i, d in enumerate(deadlines)]
        await asyncio.sleep(0)  # every job is queued before the worker is free
        while worker.waiting < len(deadlines):
            await asyncio.sleep(0.001)
        gate.set()
        await asyncio.gather(first, *jobs)
        return ran

    ran = asyncio.run(scenario())
    assert ran == sorted(range(len(deadlines)), key=lambda i: (deadlines[i], i))


async def test_an_error_reaches_its_caller_and_the_worker_goes_on() -> None:
    worker = DeadlineWorker("test", ["session"])

    def broken(_resource: str) -> None:
        raise ValueError("bad piece")

    with pytest.raises(ValueError, match="bad piece"):
        await worker.run(0.0, broken)
    assert await worker.run(0.0, lambda resource: (resource, 42)) == ("session", 42)


async def test_a_caller_that_stops_waiting_is_skipped_and_the_others_run() -> None:
    worker = DeadlineWorker("test", ["session"])
    gate, first = await blocked(worker)
    ran: list[str] = []
    gone = asyncio.ensure_future(worker.run(1.0, lambda _r: ran.append("gone")))
    kept = asyncio.ensure_future(worker.run(2.0, lambda _r: ran.append("kept")))
    while worker.waiting < 2:
        await asyncio.sleep(0.001)
    gone.cancel()
    gate.set()
    await asyncio.gather(first, kept)
    assert ran == ["kept"] and worker.jobs_skipped == 1
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_each_thread_hands_its_own_resource_and_they_run_at_once() -> None:
    worker = DeadlineWorker("test", ["session 0", "session 1"])
    both = threading.Barrier(2, timeout=10)  # passes only when two jobs run at the same time

    def job(resource: str) -> tuple[str, str]:
        both.wait()
        return resource, threading.current_thread().name

    results = await asyncio.gather(worker.run(0.0, job), worker.run(0.0, job))
    assert sorted(r for r, _ in results) == ["session 0", "session 1"]
    assert sorted(name for _, name in results) == ["test-0", "test-1"]
    with pytest.raises(ValueError):
        DeadlineWorker("none", [])


async def test_close_fails_the_waiting_jobs_and_ends_the_threads_after_their_job() -> None:
    worker = DeadlineWorker("test", ["session"])
    gate, first = await blocked(worker)
    waiting = asyncio.ensure_future(worker.run(1.0, lambda _r: "never"))
    while worker.waiting < 1:
        await asyncio.sleep(0.001)
    closing = asyncio.ensure_future(asyncio.to_thread(worker.close))
    await asyncio.sleep(0.05)
    assert not closing.done()  # the job on the thread finishes first
    gate.set()
    await asyncio.wait_for(closing, 10)
    await first
    with pytest.raises(WorkerClosed, match="closed"):
        await waiting
    with pytest.raises(WorkerClosed, match="closed"):
        await worker.run(0.0, lambda _r: None)


async def test_an_urgent_job_alone_gets_the_solo_resource_and_never_while_another_runs() -> None:
    worker = DeadlineWorker("test", ["session 0", "session 1"], solo="every core")
    assert await worker.run(0.0, lambda resource: resource, urgent=True) == "every core"
    assert await worker.run(0.0, lambda resource: resource) in ("session 0", "session 1")  # not urgent
    gate, first = await blocked(worker)  # one job running: the next urgent one gets its own thread's
    assert await worker.run(0.0, lambda resource: resource, urgent=True) in ("session 0", "session 1")
    gate.set()
    await first
    assert worker.jobs_solo == 1
    worker.close()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=3)), min_size=1, max_size=16))
def test_the_solo_resource_is_never_held_by_two_jobs_at_once(jobs: list[tuple[bool, int]]) -> None:
    """Jobs of random urgency and length, submitted in random bursts: at most one holds the solo
    resource at any moment, and no thread resource is held twice."""
    held: dict[str, int] = {}
    lock = threading.Lock()
    clashes: list[str] = []

    def job(resource: str, ms: int) -> None:
        with lock:
            held[resource] = held.get(resource, 0) + 1
            if held[resource] > 1:
                clashes.append(resource)
        threading.Event().wait(ms / 1000)
        with lock:
            held[resource] -= 1

    async def scenario() -> int:
        worker = DeadlineWorker("test", ["session 0", "session 1"], solo="every core")
        running = []
        for urgent, ms in jobs:
            running.append(asyncio.ensure_future(worker.run(0.0, job, ms, urgent=urgent)))
            if ms == 0:
                await asyncio.sleep(0.001)
        await asyncio.gather(*running)
        worker.close()
        return worker.jobs_solo

    solo = asyncio.run(scenario())
    assert not clashes
    assert solo <= sum(urgent for urgent, _ in jobs)
