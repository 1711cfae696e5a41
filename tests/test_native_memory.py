"""The allocator's free pages go back to the system: the trimmer runs on its own and stops on close."""

from __future__ import annotations

import asyncio
import ctypes.util
from pathlib import Path

import pytest

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


async def test_the_trimmer_trims_until_it_is_closed() -> None:
    trimmer = MemoryTrimmer(every=0.01)
    trimmer.start()
    for _ in range(500):
        if trimmer.trims >= 2:
            break
        await asyncio.sleep(0.01)
    assert trimmer.trims >= 2
    await trimmer.close()
    done = trimmer.trims
    await asyncio.sleep(0.05)
    assert trimmer.trims == done
