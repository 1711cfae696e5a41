"""Time for the co-host: a `Clock` protocol, the real clock, and a virtual clock for tests.

Every piece of timing logic in voxroom.agent (rate limits, stale events, idle talk, pauses, metrics)
reads time through a `Clock`, so tests run a minute of chat in milliseconds on a `VirtualClock`
that only moves when the test advances it, and always the same way.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real monotonic clock."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class VirtualClock:
    """A clock that stands still until `advance()` moves it; sleepers wake in deadline order.

    After each wake-up the event loop is given a few turns, so that work triggered by the sleeper
    (which may itself sleep again) runs before time moves on: a virtual second is processed in
    order, deterministically, without waiting for it.
    """

    SETTLE_TURNS = 50

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    @property
    def pending_sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def settle(self) -> None:
        """Let every task that can run without time passing run."""
        for _ in range(self.SETTLE_TURNS):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, waking sleepers one deadline at a time."""
        target = self._now + seconds
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, when)
            if not future.done():
                future.set_result(None)
                await self.settle()
        self._now = target
        await self.settle()

    async def run_until(self, done: Awaitable[T], *, step: float = 0.01, limit: float = 3600.0) -> T:
        """Advance in `step`s until `done` finishes (at most `limit` virtual seconds); return its result."""
        task = asyncio.ensure_future(done)
        start = self._now
        while not task.done():
            if self._now - start > limit:
                task.cancel()
                raise TimeoutError(f"not done after {limit} virtual seconds")
            await self.advance(step)
        return task.result()
