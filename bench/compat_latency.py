"""OpenAI-compatible speech latency through the real server, printed as figures (not a test).

POST /v1/audio/speech (response_format pcm, stock voice) -> first body byte at the client, and the
whole body, over N runs (median and p90), on 127.0.0.1 with a plain HTTP client.

Run: python bench/compat_latency.py [N]   (default 20)
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from voxroom.models.piper_voice import PiperVoiceEngine
from voxroom.streaming.config import ServerConfig
from voxroom.streaming.embedded import serve_in_thread

LINES = [
    "Thanks for the follow, welcome in!",
    "Great question, let me think about that for a second.",
    "Wow, ten gifted subs, you are amazing.",
    "We are going to start the next round in a minute.",
]


def one(port: int, token: str, text: str) -> tuple[float, float, int]:
    """(seconds to the first body byte, seconds to the end, body bytes) for one request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps({"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"})
    start = time.perf_counter()
    conn.request("POST", "/v1/audio/speech", body, {"Authorization": f"Bearer {token}",
                                                     "Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"HTTP {response.status}: {response.read()[:200]!r}")
    first = response.read(1)
    first_at = time.perf_counter() - start
    rest = response.read()
    total = time.perf_counter() - start
    conn.close()
    return first_at, total, len(first) + len(rest)


def p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(round(0.9 * len(values))) - 1)]


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory() as tmp:
        config = ServerConfig(host="127.0.0.1", port=0, data_dir=Path(tmp), ice_addresses=["127.0.0.1"])
        with serve_in_thread(config, PiperVoiceEngine()) as running:
            token = running.server.owner_token
            one(running.port, token, "Warming up.")  # the first ONNX run allocates
            firsts, totals, audio = [], [], 0.0
            for i in range(runs):
                first, total, size = one(running.port, token, LINES[i % len(LINES)])
                firsts.append(first * 1000)
                totals.append(total * 1000)
                audio += size / 2 / 24000
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"POST /v1/audio/speech (pcm, stock voice), {runs} runs on 127.0.0.1:")
    print(f"  first body byte: median {statistics.median(firsts):.0f} ms, p90 {p90(firsts):.0f} ms, "
          f"max {max(firsts):.0f} ms")
    print(f"  whole body:      median {statistics.median(totals):.0f} ms, p90 {p90(totals):.0f} ms "
          f"({audio / runs:.2f} s of audio per run on average)")


if __name__ == "__main__":
    main()
