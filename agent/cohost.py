"""The co-host loop: chat events in, spoken replies out.

`CoHost` takes events from the speech queue, gets reply text (LLM or read-aloud), cuts it into
speakable pieces, moderates each piece, synthesizes it with the room's `Engine` and hands the
audio to an `AudioSink`. Before every chunk it checks turn-taking, so the host's voice pauses it
at the next chunk boundary. The reply text is produced by its own task while audio plays, so a
slow engine never stalls the LLM stream. Skipping the current reply is one cancellation that ends
the LLM request, the synthesis and the queued audio (flushed with a fade). Each reply's timings go
to `AgentMetrics` and every step is reported to observers (the console, logs).

Only what was actually played is remembered as said: pieces cut off by an interruption or a skip
never enter the LLM's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from voxroom.agent.clock import Clock, SystemClock
from voxroom.agent.events import ChatEvent, EventKind, parse_event
from voxroom.agent.metrics import AgentMetrics, ReplyMetrics
from voxroom.agent.moderation import ModerationEntry, Moderator
from voxroom.agent.replies import ReplySource, detect_language
from voxroom.agent.segmenter import Segmenter
from voxroom.agent.speech_queue import Outcome, QueuedEvent, SpeechQueue
from voxroom.agent.turns import HostSpeechPolicy, TurnTaking
from voxroom.models.engine import AudioChunk, Engine, SynthesisError, Voice

log = logging.getLogger(__name__)


class AudioSink(Protocol):
    """Where the co-host's audio goes (the server's room track, a WebSocket, a test recorder)."""

    async def play(self, chunk: AudioChunk) -> None:
        """Take one chunk; may wait (back-pressure) until there is room for it."""
        ...

    async def flush(self, fade: bool = True) -> None:
        """Drop audio handed over but not yet heard, fading out instead of clicking."""
        ...

    async def wait_played(self) -> None:
        """Return once everything handed over has been heard."""
        ...

    def queued_seconds(self) -> float:
        """Audio handed over but not yet heard, in seconds (an engine may start sooner with it)."""
        ...


Observer = Callable[[str, dict[str, Any]], None]


class CoHost:
    def __init__(
        self,
        *,
        engine: Engine,
        sink: AudioSink,
        replies: ReplySource,
        clock: Clock | None = None,
        queue: SpeechQueue | None = None,
        moderator: Moderator | None = None,
        turns: TurnTaking | None = None,
        metrics: AgentMetrics | None = None,
        voice: Voice | None = None,
        speed: float = 1.0,
        max_chunk_seconds: float = 0.1,
        cohost_names: Sequence[str] = (),
        question_prefixes: Sequence[str] = (),
        observers: Iterable[Observer] = (),
        segmenter_factory: Callable[[], Segmenter] = Segmenter,
    ) -> None:
        self.clock = clock if clock is not None else SystemClock()
        self.engine = engine
        self.sink = sink
        self.replies = replies
        # `is None`, not `or`: an empty queue is falsy.
        self.queue = queue if queue is not None else SpeechQueue(self.clock)
        self.moderator = moderator if moderator is not None else Moderator(self.clock)
        self.turns = turns if turns is not None else TurnTaking(self.clock)
        self.metrics = metrics if metrics is not None else AgentMetrics()
        self.voice = voice
        self.speed = speed
        # Engines may yield a whole sentence as one chunk; slicing bounds how late a pause can act.
        self.max_chunk_seconds = max_chunk_seconds
        self.cohost_names = list(cohost_names)
        self.question_prefixes = list(question_prefixes)
        self.observers: list[Observer] = list(observers)
        self.segmenter_factory = segmenter_factory
        if self.queue.on_drop is None:
            self.queue.on_drop = self._on_drop
        if self.moderator.on_entry is None:
            self.moderator.on_entry = self._on_moderated
        self.state = "idle"  # idle, thinking, speaking, paused
        self.current: QueuedEvent | None = None
        self._task: asyncio.Task[ReplyMetrics] | None = None
        self._skip_requested = False
        self._task_metrics: ReplyMetrics | None = None
        self._last_activity = self.clock.now()
        self._host_lines = itertools.count(1)

    # Intake.
    def submit(self, event: ChatEvent) -> str:
        """Moderate and queue an event; returns the outcome ("queued", "moderated", "duplicate", ...)."""
        self._last_activity = self.clock.now()
        checked = self.moderator.check_input(event)
        if checked is None:
            outcome = "moderated"
        else:
            outcome = str(self.queue.put(checked))
        self.metrics.count_event(str(event.kind), outcome)
        self._emit("event", {"id": event.id, "kind": str(event.kind), "user": event.user, "outcome": outcome})
        return outcome

    def submit_dict(self, data: Mapping[str, Any]) -> str:
        """Parse (raises `EventError` on bad input) and submit."""
        event = parse_event(data, now=self.clock.now(), cohost_names=self.cohost_names,
                            question_prefixes=self.question_prefixes)
        return self.submit(event)

    # Host controls.
    def say(self, text: str) -> str:
        """Queue a line the host typed, said word for word ahead of chat (output moderation still applies)."""
        now = self.clock.now()
        event = ChatEvent(kind=EventKind.HOST, user="host", text=text.strip(), platform="console",
                          timestamp=now, id=f"host-{next(self._host_lines)}")
        outcome = str(self.queue.put(event))
        self.queue.pin(event.id)
        self._emit("event", {"id": event.id, "kind": "host", "user": "host", "outcome": outcome})
        return event.id

    def set_host_speaking(self, speaking: bool) -> None:
        self.turns.set_host_speaking(speaking)
        self._emit("host_speaking", {"speaking": speaking})

    def skip_current(self) -> bool:
        """Stop the reply being spoken now (LLM request, synthesis and queued audio)."""
        if self._task is None or self._task.done():
            return False
        self._skip_requested = True
        self._task.cancel()
        return True

    def add_observer(self, observer: Observer) -> None:
        self.observers.append(observer)

    # The loop.
    async def run(self) -> None:
        """Answer events until cancelled."""
        while True:
            if self.turns.must_yield():
                await self.turns.wait_host_quiet()
            item = self.queue.get_nowait()
            if item is None:
                item = await self._wait_for_item()
                if item is None:
                    continue
            await self.answer(item)
            self._last_activity = self.clock.now()

    async def _wait_for_item(self) -> QueuedEvent | None:
        idle_after = self.turns.idle_after
        if idle_after is None:
            return await self.queue.get()
        remaining = self._last_activity + idle_after - self.clock.now()
        if remaining <= 0:
            self._last_activity = self.clock.now()
            idle = ChatEvent(kind=EventKind.IDLE, user="", text="", platform="voxroom",
                             timestamp=self.clock.now(), id=f"idle-{self.clock.now():.3f}")
            return QueuedEvent(idle, 0, self.clock.now(), -1)
        waiters = [asyncio.ensure_future(self.queue.wait_for_event()),
                   asyncio.ensure_future(self.clock.sleep(remaining))]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return None

    async def answer(self, item: QueuedEvent) -> ReplyMetrics:
        """Speak the reply to one queued event; a skip ends it early (outcome "skipped")."""
        self._skip_requested = False
        self.current = item
        self._task = asyncio.ensure_future(self._answer(item))
        try:
            return await asyncio.shield(self._task)
        except asyncio.CancelledError:
            if not self._task.done():
                self._task.cancel()  # the loop itself is being cancelled: take the reply with it
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                raise
            if not self._skip_requested or self._task_metrics is None:
                raise
            return self._task_metrics
        finally:
            self.current = None
            self._set_state("idle")

    async def _answer(self, item: QueuedEvent) -> ReplyMetrics:
        event = item.event
        start = self.clock.now()
        source = "host" if event.kind is EventKind.HOST else self._source_name()
        metrics = ReplyMetrics(event_id=event.id, kind=str(event.kind), source=source,
                               queue_wait=start - item.enqueued_at)
        self._task_metrics = metrics
        fallbacks_before = self._fallbacks()
        self._emit("reply_started", {"id": event.id, "kind": str(event.kind), "user": event.user,
                                     "text": event.text, "queue_wait": metrics.queue_wait})
        self._set_state("thinking")
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        producer = asyncio.ensure_future(self._produce(event, pieces, metrics, start))
        played: list[str] = []
        try:
            while (piece := await pieces.get()) is not None:
                safe = self.moderator.check_output(piece, event_id=event.id)
                if safe is None:
                    metrics.extra["moderated_pieces"] = metrics.extra.get("moderated_pieces", 0) + 1
                    continue
                if not await self._speak_piece(safe, metrics, start):
                    metrics.outcome = "interrupted"
                    break
                played.append(safe)
                self._emit("piece", {"id": event.id, "text": safe})
            if metrics.outcome != "interrupted":
                await self.sink.wait_played()
                if not played:
                    metrics.outcome = "moderated" if metrics.extra.get("moderated_pieces") else "silent"
        except asyncio.CancelledError:
            metrics.outcome = "skipped"
            await self._flush()
            raise
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
            metrics.total = self.clock.now() - start
            metrics.text = " ".join(played)
            if self._fallbacks() > fallbacks_before:
                metrics.source = "fallback"
            self._remember(event, metrics.text)
            self.metrics.observe_reply(metrics)
            self._emit("reply_finished", {"id": event.id, "outcome": metrics.outcome, "text": metrics.text,
                                          "queue_wait": metrics.queue_wait,
                                          "llm_first_token": metrics.llm_first_token,
                                          "first_audio": metrics.first_audio, "total": metrics.total,
                                          "source": metrics.source})
        return metrics

    async def _produce(self, event: ChatEvent, pieces: asyncio.Queue[str | None], metrics: ReplyMetrics,
                       start: float) -> None:
        segmenter = self.segmenter_factory()
        host_line = event.kind is EventKind.HOST
        source = self._host_line(event) if host_line else self.replies.reply(event)
        whole_texts = host_line or not getattr(self.replies, "streams_text", True)
        try:
            async for delta in source:
                if metrics.llm_first_token is None and metrics.source == "llm":
                    metrics.llm_first_token = self.clock.now() - start
                for piece in segmenter.feed(delta, final=whole_texts):
                    pieces.put_nowait(piece)
            for piece in segmenter.flush():
                pieces.put_nowait(piece)
        except Exception as error:  # a reply source that breaks ends this reply, not the loop
            log.warning("reply source failed for %s: %s", event.id, error)
            metrics.extra["reply_error"] = str(error)
        finally:
            pieces.put_nowait(None)

    async def _speak_piece(self, text: str, metrics: ReplyMetrics, start: float) -> bool:
        """Synthesize and play one piece; False when the host's voice ended the reply (drop policy)."""
        stream: AsyncIterator[AudioChunk] = self.engine.stream(
            text, self.voice, lang=detect_language(text), speed=self.speed, queued_s=self.sink.queued_seconds()
        )
        try:
            async for engine_chunk in stream:
                for chunk in self._slices(engine_chunk):
                    # The chunk boundary: the one place where turn-taking acts.
                    if self.turns.must_yield():
                        if self.turns.policy is HostSpeechPolicy.DROP:
                            await self._flush()
                            return False
                        self._set_state("paused")
                        await self.turns.wait_host_quiet()
                    gain = self.turns.gain()
                    if gain != 1.0:
                        chunk = AudioChunk(chunk.samples * gain, chunk.sample_rate, chunk.text)
                    self._set_state("speaking")
                    if metrics.first_audio is None:
                        metrics.first_audio = self.clock.now() - start
                    await self.sink.play(chunk)
                    metrics.audio_seconds += chunk.duration
        except SynthesisError as error:
            log.warning("engine could not say %r: %s", text, error)
            metrics.extra["synthesis_error"] = str(error)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        return True

    # Plumbing.
    @staticmethod
    async def _host_line(event: ChatEvent) -> AsyncIterator[str]:
        yield event.text

    def _slices(self, chunk: AudioChunk) -> list[AudioChunk]:
        size = max(1, int(chunk.sample_rate * self.max_chunk_seconds))
        if len(chunk.samples) <= size:
            return [chunk]
        return [AudioChunk(chunk.samples[i:i + size], chunk.sample_rate, chunk.text)
                for i in range(0, len(chunk.samples), size)]

    async def _flush(self) -> None:
        try:
            await self.sink.flush(fade=True)
        except Exception as error:  # a broken sink must not keep the loop from going on
            log.warning("sink flush failed: %s", error)

    def _remember(self, event: ChatEvent, played_text: str) -> None:
        if event.kind not in (EventKind.IDLE, EventKind.HOST):
            remember_chat = getattr(self.replies, "remember_chat", None)
            if remember_chat is not None:
                remember_chat(event)
        remember_played = getattr(self.replies, "remember_played", None)
        if remember_played is not None and played_text:
            remember_played(played_text)

    def _source_name(self) -> str:
        return "llm" if hasattr(self.replies, "remember_played") else "read_aloud"

    def _fallbacks(self) -> int:
        stats = getattr(self.replies, "stats", None)
        return int(getattr(stats, "fallbacks", 0))

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self._emit("state", {"state": state})

    def _on_drop(self, event: ChatEvent, outcome: Outcome) -> None:
        if outcome not in (Outcome.DUPLICATE, Outcome.RATE_LIMITED, Outcome.FULL):
            self.metrics.count_event(str(event.kind), str(outcome))  # later drops of a queued event
        self._emit("dropped", {"id": event.id, "kind": str(event.kind), "user": event.user,
                               "text": event.text, "reason": str(outcome)})

    def _on_moderated(self, entry: ModerationEntry) -> None:
        self.metrics.count_moderated(str(entry.direction))
        self._emit("moderated", entry.as_dict())

    def _emit(self, name: str, data: dict[str, Any]) -> None:
        for observer in self.observers:
            try:
                observer(name, data)
            except Exception:  # observers are for watching; they never break the co-host
                log.exception("observer failed on %s", name)

    def snapshot(self) -> dict[str, Any]:
        """State for the host console."""
        current = self.current.event if self.current else None
        return {
            "state": self.state,
            "host_speaking": self.turns.host_speaking,
            "current": None if current is None else {"id": current.id, "kind": str(current.kind),
                                                     "user": current.user, "text": current.text},
            "queue": self.queue.snapshot(),
            "moderation": self.moderator.snapshot(20),
        }
