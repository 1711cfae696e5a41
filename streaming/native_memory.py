"""The C allocator's share of the server's memory (glibc only; elsewhere these do nothing).

Synthesis, decoding, VAD and the enrollment checks run in worker threads and allocate big buffers
natively (numpy, torch, ONNX Runtime, FFmpeg). glibc gives threads their own malloc arenas and keeps
what was freed inside a heap for reuse, so RSS climbs in steps that Python never sees
(`bench/soak.py --tracemalloc`: +0.1 MB of Python objects while RSS grew 148 MB in 3 minutes).
`limit_malloc_arenas` caps the arenas at start; `MemoryTrimmer` hands free pages back to the
system every half minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
from pathlib import Path
from typing import Any

from voxroom.agent.clock import Clock, SystemClock

log = logging.getLogger(__name__)

TRIM_EVERY_S = 30.0


def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def resident_bytes() -> int | None:
    """This process's resident memory (RSS) in bytes, from /proc; None where there is no /proc."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Synthesis, decoding and VAD run in worker threads; glibc gives threads their own malloc arenas
    and keeps what they freed, so RSS climbs with every new thread that did big allocations (measured
    by bench/soak.py: +272 MB in one minute with glibc's default, +73 MB with 2 arenas). Two arenas
    cap that. No-op where the C library is not glibc."""
    libc = _libc()
    with contextlib.suppress(AttributeError):
        if libc is not None:
            libc.mallopt(-8, arenas)  # M_ARENA_MAX


def release_free_memory() -> bool:
    """Give the free pages of every malloc arena back to the system (glibc's malloc_trim); False
    where there is no such call."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return False
    trim(0)
    return True


class MemoryTrimmer:
    """The server's task that calls `release_free_memory` every `every` seconds (on the server's clock)
    in a worker thread."""

    def __init__(self, every: float = TRIM_EVERY_S, clock: Clock | None = None) -> None:
        self.every = every
        self.clock = clock if clock is not None else SystemClock()
        self.trims = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="memory-trimmer")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await self.clock.sleep(self.every)
            if not await asyncio.to_thread(release_free_memory):
                log.debug("no malloc_trim here: free memory stays with the allocator")
                return
            self.trims += 1
