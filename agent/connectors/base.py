"""What every platform connector shares: the task, status, counters, reconnects and intake.

A connector's `session()` connects once and reads until the connection ends, turning each frame
into `ChatEvent`s handed to `emit()`. `Connector.run()` wraps it: status, reconnect with capped,
jittered exponential backoff, and de-duplication by event id across reconnects (platforms and
relays replay recent messages after a reconnect). Events wait in a bounded intake that one
dispatcher drains into `submit`; when the intake is full it sheds plain chat first (documented in
docs/connectors.md), never gifts. Parsers call `pause()` in their loops so a burst of thousands of
messages never holds the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar

from voxroom.agent.clock import Clock, SystemClock
from voxroom.agent.events import ChatEvent, EventError, EventKind, parse_event

log = logging.getLogger("voxroom.connectors")

Submit = Callable[[ChatEvent], str]


class ConnectorState(StrEnum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    ERROR = "error"  # gave up: bad credentials, no such channel, chat ended


class RetryableError(Exception):
    """The connection failed or the platform asked us to come back: reconnect after a backoff, or
    after `retry_after` seconds when the platform said when (a rate limit, a daily quota)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalError(Exception):
    """Reconnecting cannot help (refused credentials, unknown channel): stop with this message."""


class MalformedFrame(ValueError):
    """One frame or event that cannot be read; it is counted, logged in one line and skipped."""


@dataclass
class Counters:
    received: int = 0  # events parsed from the platform, before de-duplication
    submitted: int = 0  # handed to `submit`
    duplicates: int = 0  # seen before (a replay after a reconnect)
    malformed: int = 0  # frames or events that could not be read
    shed: int = 0  # dropped because the intake was full
    reconnects: int = 0


@dataclass
class ConnectorStatus:
    state: ConnectorState = ConnectorState.STOPPED
    message: str = ""
    next_retry_at: float | None = None  # Unix time of the next attempt while reconnecting
    counters: Counters = field(default_factory=Counters)

    def as_dict(self) -> dict[str, Any]:
        return {"state": str(self.state), "message": self.message, "next_retry_at": self.next_retry_at,
                "counters": asdict(self.counters)}


@dataclass
class Backoff:
    """Delays of base·factor^n capped at `cap`, each scaled by a random 0.5-1.0 ("equal jitter")."""

    base: float = 1.0
    cap: float = 60.0
    factor: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    attempts: int = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * self.factor ** min(self.attempts, 32))
        self.attempts += 1
        return delay * (0.5 + 0.5 * self.rng.random())

    def reset(self) -> None:
        self.attempts = 0


class RecentIds:
    """The last `size` event ids, oldest forgotten first."""

    def __init__(self, size: int = 5000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, event_id: str) -> bool:
        """True if the id is new (and now remembered), False if it was seen."""
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return False
        self._ids[event_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._ids)


_SHED_FIRST = (EventKind.JOIN, EventKind.FOLLOW, EventKind.MESSAGE)


class Connector(ABC):
    """One platform channel read into one room; subclasses implement `session()`."""

    platform: ClassVar[str] = ""
    PAUSE_EVERY = 64  # events or frames parsed between two turns given back to the event loop

    def __init__(
        self,
        submit: Submit,
        *,
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        intake_limit: int = 1000,
        remember_ids: int = 5000,
        cohost_names: Sequence[str] = (),
        question_prefixes: Sequence[str] = (),
        name: str = "",
    ) -> None:
        self.submit = submit
        self.clock = clock if clock is not None else SystemClock()
        self.backoff = backoff if backoff is not None else Backoff()
        self.intake_limit = intake_limit
        self.cohost_names = list(cohost_names)
        self.question_prefixes = list(question_prefixes)
        self.name = name or self.platform
        self.status = ConnectorStatus()
        self.recent = RecentIds(remember_ids)
        self._intake: deque[ChatEvent] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._parsed = 0

    @property
    def counters(self) -> Counters:
        return self.status.counters

    # -- what a platform implements ------------------------------------------------------------
    @abstractmethod
    async def session(self) -> None:
        """Connect, call `mark_live()` once the platform accepted us, and read until it ends.

        Raise `RetryableError` (or let `OSError`/`TimeoutError` through) to reconnect, `FatalError`
        to stop. Returning normally means the server closed the connection: reconnect.
        """

    # -- helpers for sessions ------------------------------------------------------------------
    def mark_live(self, message: str = "") -> None:
        self.status.state = ConnectorState.LIVE
        self.status.message = message
        self.status.next_retry_at = None
        self.backoff.reset()

    def make_event(self, data: Mapping[str, Any], **extra: Any) -> ChatEvent:
        """`parse_event` with this room's question rules, plus connector-only fields (badges...)."""
        event = parse_event({"platform": self.platform, **data}, now=time.time(),
                            cohost_names=self.cohost_names, question_prefixes=self.question_prefixes)
        return replace(event, **extra) if extra else event

    def malformed(self, reason: str, sample: str | bytes = b"") -> None:
        self.counters.malformed += 1
        shown = sample[:80] if isinstance(sample, str | bytes) else ""
        log.warning("%s %s: skipped a malformed frame (%s) %r", self.platform, self.name, reason, shown)

    async def pause(self) -> None:
        """Give the event loop a turn every `PAUSE_EVERY` calls (call once per frame or event)."""
        self._parsed += 1
        if self._parsed % self.PAUSE_EVERY == 0:
            await asyncio.sleep(0)

    def emit(self, event: ChatEvent) -> None:
        """Queue one parsed event for `submit`, unless its id was seen already."""
        self.counters.received += 1
        if not self.recent.add(event.id):
            self.counters.duplicates += 1
            return
        if len(self._intake) >= self.intake_limit and not self._shed_for(event):
            return
        self._intake.append(event)
        self._wake.set()

    def _shed_for(self, event: ChatEvent) -> bool:
        """Make room for `event` in a full intake; False if `event` itself is the one shed."""
        for kind in _SHED_FIRST:
            for queued in self._intake:
                if queued.kind is kind:
                    self._intake.remove(queued)
                    self.counters.shed += 1
                    return True
            if event.kind is kind:
                self.counters.shed += 1
                return False
        self._intake.popleft()  # only gifts and questions: the oldest goes
        self.counters.shed += 1
        return True

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self.status.state = ConnectorState.CONNECTING
            self._task = asyncio.create_task(self.run(), name=f"connector-{self.platform}-{self.name}")
        return self._task

    async def stop(self) -> None:
        for task in (self._task, self._dispatcher):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._dispatcher = None
        self.status.state = ConnectorState.STOPPED
        self.status.next_retry_at = None

    async def _dispatch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            sent = 0
            while self._intake:
                event = self._intake.popleft()
                try:
                    self.submit(event)
                except Exception as exc:  # the room's intake refused it; keep the rest flowing
                    log.warning("%s %s: submit failed for %s: %s", self.platform, self.name, event.id, exc)
                else:
                    self.counters.submitted += 1
                sent += 1
                if sent % self.PAUSE_EVERY == 0:
                    await asyncio.sleep(0)

    async def drained(self) -> None:
        """Wait until every queued event was handed to `submit` (tests and shutdown)."""
        while self._intake:
            await asyncio.sleep(0.001)

    async def run(self) -> None:
        self._dispatcher = asyncio.create_task(self._dispatch(), name=f"connector-dispatch-{self.name}")
        first = True
        try:
            while True:
                self.status.state = ConnectorState.CONNECTING if first else ConnectorState.RECONNECTING
                first = False
                delay: float | None
                try:
                    await self.session()
                    delay = self.backoff.next_delay()
                    reason = "the server closed the connection"
                except FatalError as exc:
                    self.status.state = ConnectorState.ERROR
                    self.status.message = str(exc)
                    log.warning("%s %s: stopped: %s", self.platform, self.name, exc)
                    await self.drained()  # what was read before the end still reaches the room
                    return
                except asyncio.CancelledError:
                    raise
                except RetryableError as exc:
                    reason = str(exc) or type(exc).__name__
                    delay = max(self.backoff.next_delay(), exc.retry_after or 0.0)
                except (OSError, TimeoutError, EventError) as exc:
                    reason = str(exc) or type(exc).__name__
                    delay = self.backoff.next_delay()
                except Exception as exc:  # a library's own connection errors (websockets, httpx2...)
                    reason = f"{type(exc).__name__}: {exc}"
                    delay = self.backoff.next_delay()
                self.counters.reconnects += 1
                self.status.state = ConnectorState.RECONNECTING
                self.status.message = reason
                self.status.next_retry_at = time.time() + delay
                log.info("%s %s: %s; reconnecting in %.1f s", self.platform, self.name, reason, delay)
                await self.clock.sleep(delay)
        finally:
            if self._dispatcher is not None:
                self._dispatcher.cancel()
