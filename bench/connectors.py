"""How fast one chat connector parses and queues, and how long an event waits from frame to queue.

Runs a local server on 127.0.0.1 speaking Twitch IRC or Bilibili danmaku, feeds one connector
whose `submit` puts the event into a real SpeechQueue, and prints:
- throughput: events per second parsed, de-duplicated and queued, frames sent back to back;
- latency: frame sent by the server → event in the queue, median and p99, at a paced 1,000 msgs/s
  (the server notes when it sent each frame).

    python bench/connectors.py [--events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable

import websockets
from websockets.asyncio.server import ServerConnection

from voxroom.agent.clock import SystemClock
from voxroom.agent.connectors.base import Backoff, Connector
from voxroom.agent.connectors.bilibili import (
    OP_AUTH_REPLY,
    VER_BROTLI,
    BilibiliConnector,
    command_packet,
    compressed,
    encode_packet,
)
from voxroom.agent.connectors.twitch import TwitchConnector
from voxroom.agent.events import ChatEvent
from voxroom.agent.speech_queue import SpeechQueue

PER_FRAME = 20


def twitch_frame(start: int, sent: float) -> str:
    return "\r\n".join(
        f"@display-name=user{i % 500};id=m{i} :u{i}!u@u.tmi.twitch.tv PRIVMSG #c :message {i}"
        for i in range(start, start + PER_FRAME))


def bilibili_frame(start: int, sent: float) -> bytes:
    packets = b"".join(command_packet({"cmd": "DANMU_MSG", "info": [
        [0, 1, 25, 0, int(sent * 1e6), i, 0, "", 0, 0, 0, "", 0, "{}", "{}",
         {"extra": json.dumps({"id_str": f"d{i}"})}],
        f"弹幕 {i}", [i % 500, f"user{i % 500}", 0], [], [], [], 0, 0]}) for i in range(start, start + PER_FRAME))
    return compressed(packets, VER_BROTLI)


async def twitch_login(ws: ServerConnection) -> None:
    while not str(await ws.recv()).startswith("JOIN"):
        pass
    await ws.send(":tmi.twitch.tv 001 justinfan12345 :Welcome")


async def bilibili_login(ws: ServerConnection) -> None:
    await ws.recv()
    await ws.send(encode_packet(OP_AUTH_REPLY, b'{"code":0}'))


Frame = Callable[[int, float], str | bytes]


async def run(name: str, make: Callable[..., Connector], login: Callable[[ServerConnection], Awaitable[None]],
              frame: Frame, total: int, pace: float | None) -> tuple[float, list[float]]:
    """(events per second, latencies in seconds) for `total` events; `pace`: seconds between frames."""
    done = asyncio.Event()
    latencies: list[float] = []
    queue = SpeechQueue(SystemClock(), max_length=total + 10, user_limit=total, dedupe_window=0.0)
    first_sent = 0.0

    def submit(event: ChatEvent) -> str:
        now = time.perf_counter()
        sent = sent_at.get(event.id)
        if sent is not None:
            latencies.append(now - sent)
        outcome = str(queue.put(event))
        if connector.counters.submitted + 1 >= total:
            done.set()
        return outcome

    sent_at: dict[str, float] = {}

    async def handler(ws: ServerConnection) -> None:
        nonlocal first_sent
        await login(ws)
        frames = [frame(start, 0.0) for start in range(0, total, PER_FRAME)]  # built before the clock runs
        first_sent = time.perf_counter()
        for n, data in enumerate(frames):
            sent = time.perf_counter()
            for i in range(n * PER_FRAME, (n + 1) * PER_FRAME):
                sent_at[f"twitch:m{i}" if name == "twitch" else f"bilibili:d{i}"] = sent  # the event ids
            await ws.send(data)
            if pace:
                await asyncio.sleep(pace)
        await ws.wait_closed()

    async with websockets.serve(handler, "127.0.0.1", 0, max_size=2**22) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        connector = make(submit, channel="1", url=url, backoff=Backoff(base=0.05, cap=0.2), intake_limit=total + 10)
        connector.start()
        await asyncio.wait_for(done.wait(), 120)
        elapsed = time.perf_counter() - first_sent
        await connector.stop()
    return total / elapsed, latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    cases: list[tuple[str, Callable[..., Connector], Callable[[ServerConnection], Awaitable[None]], Frame]] = [
        ("twitch", TwitchConnector, twitch_login, twitch_frame),
        ("bilibili", BilibiliConnector, bilibili_login, bilibili_frame),
    ]
    for name, make, login, frame in cases:
        rate, _ = await run(name, make, login, frame, args.events, None)
        _, latencies = await run(name, make, login, frame, 3000, PER_FRAME / 1000.0)  # 1,000 msgs/s
        print(f"{name:9s} throughput {rate:9.0f} events/s   frame → queue at 1,000 msgs/s: "
              f"median {statistics.median(latencies) * 1000:.2f} ms, p99 {percentile(latencies, 0.99) * 1000:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
