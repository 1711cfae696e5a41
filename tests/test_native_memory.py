"""The allocator's free pages go back to the system: the trimmer runs on its own and stops on close."""

from __future__ import annotations

import asyncio
import ctypes.util
from pathlib import Path

import pytest

from voxroom.agent.clock import VirtualClock
from voxroom.streaming.native_memory import MemoryTrimmer, release_free_memory, resident_bytes

glibc = pytest.mark.skipif(ctypes.util.find_library("c") is None or not Path("/proc/self/statm").exists(),
                           reason="malloc_trim is glibc's (Linux)")


def rss_bytes() -> int:
    resident = resident_bytes()
    assert resident is not None
    return resident


@glibc
def test_freed_heap_memory_is_handed_back() -> None:
    # 150 MB in 1 KB blocks (from the malloc heap, not mmap), then all but every 200th freed: the
    # survivors pin the heap, so its free pages stay counted until they are released.
    blocks = [bytes(1024) for _ in range(150_000)]
    kept = blocks[::200]
    del blocks
    before = rss_bytes()
    assert release_free_memory()
    after = rss_bytes()
    assert before - after > 50 * 2**20, (before, after)
    assert len(kept) == 750


@glibc
async def test_the_trimmer_trims_on_its_clock_until_it_is_closed() -> None:
    clock = VirtualClock()
    trimmer = MemoryTrimmer(every=30.0, clock=clock)
    trimmer.start()

    async def trimmed(count: int) -> None:  # the trim itself runs in a worker thread: wait for it
        for _ in range(5000):
            if trimmer.trims >= count:
                return
            await asyncio.sleep(0.001)
        raise AssertionError(f"{trimmer.trims} trims, expected {count}")

    await clock.advance(29.0)
    assert trimmer.trims == 0  # not before its interval
    await clock.advance(1.0)
    await trimmed(1)
    await clock.advance(30.0)
    await trimmed(2)
    await trimmer.close()
    await clock.advance(120.0)
    assert trimmer.trims == 2 and clock.pending_sleepers == 0
