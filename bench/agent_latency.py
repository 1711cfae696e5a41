"""Co-host latency: a chat message in -> the reply's first audio frame on air.

A local OpenAI-compatible server (tests/fake_openai.py) answers after a fixed time to first token,
through the real `openai` client; the co-host speaks through a real, paced room `Playout` (the one
speech path) with the stock Piper voice when it loads (or any engine factory given with
--engine-factory module:callable), else the tone engine from the tests. Prints the time from submit
to the first frame on air (the playout's `speech.started`) and the co-host's own overhead beyond the
model's time to first token (goal: <= 250 ms). Each reply is skipped once it is on air.

    python bench/agent_latency.py [--ttft 0.3] [--runs 8] [--engine auto|piper|tone]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]

from agent_fakes import ToneEngine  # noqa: E402
from fake_openai import FakeOpenAIServer, ScriptedReply  # noqa: E402
from voxroom.agent.clock import SystemClock  # noqa: E402
from voxroom.agent.cohost import CoHost  # noqa: E402
from voxroom.agent.events import ChatEvent, EventKind  # noqa: E402
from voxroom.agent.lifecycle import EventBus, LifecycleEvent, SpeechStarted  # noqa: E402
from voxroom.agent.replies import LLMReplies  # noqa: E402
from voxroom.streaming.playout import Playout  # noqa: E402

REPLY = "Thanks for asking, that is a great question. I think the answer is yes, and here is why."


class FirstFrame:
    """Subscriber: when the current reply's first frame went on air (perf_counter)."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self, event: LifecycleEvent) -> None:
        if isinstance(event, SpeechStarted) and self.at is None:
            self.at = time.perf_counter()


def make_engine(choice: str, factory: str | None) -> tuple[Any, str]:
    if factory:
        module, _, name = factory.partition(":")
        return getattr(importlib.import_module(module), name)(), factory
    if choice in ("auto", "piper"):
        try:
            from voxroom.models.piper_voice import PiperVoiceEngine

            return PiperVoiceEngine(), "PiperVoiceEngine (stock voice, real synthesis)"
        except Exception as error:
            if choice == "piper":
                raise
            print(f"stock voice unavailable ({type(error).__name__}: {error}); using the tone engine")
    return ToneEngine(SystemClock(), synth_seconds_per_chunk=0.0), "ToneEngine (fake, no synthesis cost)"


async def main(args: argparse.Namespace) -> None:
    engine, engine_name = make_engine(args.engine, args.engine_factory)
    clock = SystemClock()
    events = EventBus("bench")
    first = FirstFrame()
    events.subscribe(first)
    playout = Playout(engine, clock, name="bench", events=events)
    playout.start()
    async with FakeOpenAIServer(default=ScriptedReply(REPLY, first_token_delay=args.ttft,
                                                      chunk_delay=args.token_gap)) as server:
        replies = LLMReplies(base_url=server.base_url, api_key="bench", model="fake", first_token_timeout=5.0)
        cohost = CoHost(speaker=playout, replies=replies, clock=clock, events=events)
        task = asyncio.ensure_future(cohost.run())
        rows = []
        try:
            for i in range(args.runs + 1):  # run 0 warms up the engine and the HTTP client
                first.at = None
                done_before = len(cohost.metrics.recent)
                start = time.perf_counter()
                cohost.submit(ChatEvent(EventKind.QUESTION, f"viewer{i}", f"question number {i}?", "bench",
                                        0.0, f"bench-{i}"))
                while len(cohost.metrics.recent) == done_before:
                    if first.at is not None:
                        cohost.skip_current()  # on air: that is what is measured; don't wait for the rest
                    await asyncio.sleep(0.002)
                reply = cohost.metrics.recent[-1]
                if first.at is None or reply.llm_first_token is None:
                    raise SystemExit(f"run {i}: no audio or no LLM token (outcome {reply.outcome}, {reply.extra})")
                if i:
                    rows.append((first.at - start, reply.llm_first_token, reply.first_audio or 0.0))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await playout.close()
    print(f"engine: {engine_name}")
    print(f"LLM: local fake OpenAI server, time to first token {args.ttft * 1000:.0f} ms, "
          f"{args.token_gap * 1000:.0f} ms between tokens, real openai client")
    print(f"{'run':>4} {'submit->audio ms':>17} {'LLM TTFT ms':>12} {'overhead ms':>12}")
    for i, (latency, ttft, _) in enumerate(rows, 1):
        print(f"{i:>4} {latency * 1000:>17.1f} {ttft * 1000:>12.1f} {(latency - args.ttft) * 1000:>12.1f}")
    latencies = [r[0] for r in rows]
    overhead = [r[0] - args.ttft for r in rows]
    after_token = [r[2] - r[1] for r in rows]
    print(f"median submit->first audio: {statistics.median(latencies) * 1000:.1f} ms")
    print(f"median overhead beyond TTFT: {statistics.median(overhead) * 1000:.1f} ms "
          f"(max {max(overhead) * 1000:.1f} ms; goal <= 250 ms)")
    print(f"  of which first token -> first frame on air: {statistics.median(after_token) * 1000:.1f} ms median "
          "(waiting for the first speakable clause + synthesis + the next 20 ms tick)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="chat message -> first co-host audio frame on air")
    parser.add_argument("--ttft", type=float, default=0.3, help="the fake LLM's time to first token (s)")
    parser.add_argument("--token-gap", type=float, default=0.02, help="seconds between streamed tokens")
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--engine", choices=["auto", "piper", "tone"], default="auto")
    parser.add_argument("--engine-factory", help="module:callable returning an Engine")
    asyncio.run(main(parser.parse_args()))
