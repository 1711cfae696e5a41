"""Stock-voice latency through the real server, printed as figures (not a test).

  1. `say` -> first audio frame at a WebSocket client (median and p90 of 20; goal <= 150 ms)
  2. frame pacing over a 55 s utterance played into a room: late ticks and underruns (goal 0)
  3. real-time factor of the stock voice's synthesis, the engine alone (the server paces what it
     sends to real time, so a figure taken through it would read ~1.0)

Run: python bench/say_latency.py
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from websockets.asyncio.client import connect

from voxroom.models.piper_voice import PiperVoiceEngine
from voxroom.streaming.config import ServerConfig
from voxroom.streaming.embedded import serve_in_thread

LINES = [
    "Thanks for the follow, welcome in!",
    "Great question, let me think about that for a second.",
    "Wow, ten gifted subs, you are amazing.",
    "We are going to start the next round in a minute.",
]
LONG = ("This is a long announcement that keeps going so that we can watch the frame pacing of the room. " * 12).strip()


async def hello(url: str, token: str):  # type: ignore[no-untyped-def]
    ws = await connect(url, max_size=2**24)
    await ws.send(json.dumps({"type": "hello", "version": 1, "token": token}))
    await ws.recv()
    return ws


async def until_ended(ws, speech_id: str) -> tuple[int, float | None]:  # type: ignore[no-untyped-def]
    frames, first = 0, None
    while True:
        data = await ws.recv()
        if isinstance(data, bytes):
            frames += 1
            first = first or time.perf_counter()
        elif json.loads(data).get("type") == "speech.ended":
            return frames, first


async def bench(url: str, token: str, room_id: str, server) -> None:  # type: ignore[no-untyped-def]
    ws = await hello(url, token)
    # warm-up: first ONNX run allocates
    await ws.send(json.dumps({"type": "say", "id": "warm", "text": "Warming up."}))
    await until_ended(ws, "warm")

    first_frame_ms = []
    for i in range(20):
        sent = time.perf_counter()
        await ws.send(json.dumps({"type": "say", "id": f"l{i}", "text": LINES[i % len(LINES)]}))
        _, first = await until_ended(ws, f"l{i}")
        assert first is not None
        first_frame_ms.append((first - sent) * 1000)
    first_frame_ms.sort()
    print(f"say -> first audio frame at the client: median {statistics.median(first_frame_ms):.0f} ms, "
          f"p90 {first_frame_ms[17]:.0f} ms, min {first_frame_ms[0]:.0f} ms (goal <= 150 ms)")

    room = server.rooms.get(room_id)
    before = dict(vars(room.playout.stats))
    await ws.send(json.dumps({"type": "say", "id": "pace", "text": LONG, "room": room_id}))
    arrivals = []
    while True:
        data = await ws.recv()
        if isinstance(data, bytes):
            arrivals.append(time.perf_counter())
        elif json.loads(data).get("type") == "speech.ended":
            break
    stats = vars(room.playout.stats)
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    print(f"room pacing over {len(arrivals) * 0.02:.1f} s: late ticks {stats['late_ticks'] - before['late_ticks']}, "
          f"underruns {stats['underruns'] - before['underruns']}, max tick lag {stats['max_lag_ms']:.1f} ms, "
          f"client inter-frame gap max {max(gaps) * 1000:.1f} ms (goal: 0 late, 0 underruns)")
    await ws.close()


async def synthesis_speed(engine: PiperVoiceEngine) -> None:
    """The engine alone, its pieces one after another as a room gets them (the first on every core)."""
    sent = time.perf_counter()
    audio_s = sum([c.samples.size / c.sample_rate async for c in engine.stream(LONG)])
    elapsed = time.perf_counter() - sent
    print(f"stock voice synthesis, engine alone: {audio_s:.1f} s of audio in {elapsed:.2f} s -> real-time factor "
          f"{elapsed / audio_s:.3f}")


def main() -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    print(f"machine: {cpu}, {os.cpu_count()} cores, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        config = ServerConfig(port=0, data_dir=Path(tmp))
        engine = PiperVoiceEngine()
        with serve_in_thread(config, engine) as running:
            token = running.server.owner_token
            request = urllib.request.Request(running.base_url + "/api/rooms", data=b'{"name": "bench"}', method="POST",
                                             headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request) as res:
                room_id = json.loads(res.read())["id"]
            asyncio.run(bench(f"ws://127.0.0.1:{running.port}/ws", token, room_id, running.server))
            asyncio.run(synthesis_speed(engine))


if __name__ == "__main__":
    main()
