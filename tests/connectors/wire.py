"""Helpers shared by the connector tests: a collecting `submit`, waiting on a condition, a late-tick
counter for event-loop responsiveness, and a scripted WebSocket server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import websockets
from websockets.asyncio.server import ServerConnection

from voxroom.agent.connectors.base import Backoff, Connector
from voxroom.agent.events import ChatEvent

FIXTURES = Path(__file__).parent / "fixtures"


def fast_backoff() -> Backoff:
    return Backoff(base=0.02, cap=0.1)


@dataclass
class Collected:
    events: list[ChatEvent] = field(default_factory=list)

    def __call__(self, event: ChatEvent) -> str:
        self.events.append(event)
        return "queued"

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.events]


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `condition`; fail with a clear message after `timeout` (a safety net, not a measurement)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def run_until(connector: Connector, condition: Callable[[], bool]) -> None:
    """Run a connector until `condition` holds and what it received has been handed on; then stop it."""
    connector.start()
    try:
        await wait_until(condition)
        await connector.drained()
    finally:
        await connector.stop()


class LateTicker:
    """A 20 ms asyncio ticker that counts ticks arriving more than `late_after` s behind schedule."""

    def __init__(self, period: float = 0.02, late_after: float = 0.1) -> None:
        self.period = period
        self.late_after = late_after
        self.ticks = 0
        self.late = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.period
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            self.ticks += 1
            if loop.time() - due > self.late_after:
                self.late += 1
            due += self.period

    def __enter__(self) -> LateTicker:
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


Handler = Callable[[ServerConnection, int], Awaitable[None]]


@contextlib.asynccontextmanager
async def ws_server(handler: Handler) -> AsyncIterator[str]:
    """A WebSocket server on 127.0.0.1; `handler(ws, n)` gets each connection and its number (0...)."""
    count = 0

    async def serve(ws: ServerConnection) -> None:
        nonlocal count
        n = count
        count += 1
        with contextlib.suppress(websockets.ConnectionClosed):
            await handler(ws, n)

    async with websockets.serve(serve, "127.0.0.1", 0, max_size=2**22) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}"
