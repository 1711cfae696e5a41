"""The co-host loop: chat events in, replies spoken through speech handles.

`CoHost` takes events from the speech queue (gifts > questions > messages; a line the host typed
goes first), gets reply text (LLM or read-aloud), cuts it into speakable pieces, moderates each
piece and pushes it into one `SpeechHandle` per reply, which the room's speaker (its playout) says.
The co-host never touches audio: the playout synthesizes, applies turn-taking (hold, duck, drop)
and reports what went on air. The reply text is produced by its own task while audio plays, so a
slow engine never stalls the LLM stream; a reply whose speech ends early (the host's voice under
the drop policy, a DELETE, a bot's cancel) stops its text too.

Skipping the current reply is one cancellation: the LLM request, the handle (synthesis and queued
audio, faded) and the reply task. Only what was actually played is remembered as said. Everything
the co-host does is published on the room's `EventBus` (agent.lifecycle); metrics are a subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from voxroom.agent.clock import Clock, SystemClock
from voxroom.agent.events import ChatEvent, EventKind, parse_event
from voxroom.agent.lifecycle import (
    CoHostState,
    EventAccepted,
    EventBus,
    EventDropped,
    HostSpeaking,
    LifecycleEvent,
    Moderated,
    ReplyFinished,
    ReplyPiece,
    ReplyStarted,
    SpeechEnded,
    SpeechQueued,
    SpeechStarted,
)
from voxroom.agent.metrics import AgentMetrics, ReplyMetrics
from voxroom.agent.moderation import ModerationEntry, Moderator
from voxroom.agent.replies import ReplySource, detect_language
from voxroom.agent.speech import FrameListener, Speaker, SpeakerBusy, SpeechHandle, SpeechState
from voxroom.agent.speech_queue import Outcome, QueuedEvent, SpeechQueue
from voxroom.agent.turns import HostSpeechPolicy, TurnTaking
from voxroom.models.engine import Voice
from voxroom.models.text_pieces import Segmenter

log = logging.getLogger(__name__)

# How a reply's speech ended -> the reply's outcome.
_OUTCOMES = {SpeechState.DONE: "spoken", SpeechState.INTERRUPTED: "interrupted",
             SpeechState.CANCELLED: "skipped", SpeechState.FAILED: "error"}


@dataclass
class HostLine:
    """How a line the host (console, REST, a bot) asked to be said is spoken, besides its text."""

    voice: Voice | None | bool = False  # False: the co-host's voice
    lang: str = "auto"
    speed: float | None = None
    listener: FrameListener | None = None
    source: str = "host"


class CoHost:
    def __init__(
        self,
        *,
        speaker: Speaker,
        replies: ReplySource,
        clock: Clock | None = None,
        queue: SpeechQueue | None = None,
        moderator: Moderator | None = None,
        turns: TurnTaking | None = None,
        metrics: AgentMetrics | None = None,
        events: EventBus | None = None,
        voice: Voice | None = None,
        speed: float = 1.0,
        cohost_names: Sequence[str] = (),
        question_prefixes: Sequence[str] = (),
        segmenter_factory: Callable[[], Segmenter] = Segmenter,
    ) -> None:
        self.clock = clock if clock is not None else SystemClock()
        self.speaker = speaker
        self.replies = replies
        # `is None`, not `or`: an empty queue is falsy.
        self.queue = queue if queue is not None else SpeechQueue(self.clock)
        self.moderator = moderator if moderator is not None else Moderator(self.clock)
        self.turns = turns if turns is not None else TurnTaking(self.clock)
        self.metrics = metrics if metrics is not None else AgentMetrics()
        self.events = events if events is not None else EventBus("cohost")
        self.events.subscribe(self.metrics.observe)
        self.events.subscribe(self._watch_speech)
        self.voice = voice
        self.speed = speed
        self.cohost_names = list(cohost_names)
        self.question_prefixes = list(question_prefixes)
        self.segmenter_factory = segmenter_factory
        if self.queue.on_drop is None:
            self.queue.on_drop = self._on_drop
        if self.moderator.on_entry is None:
            self.moderator.on_entry = self._on_moderated
        self.state = "idle"  # idle, thinking, speaking, paused
        self.current: QueuedEvent | None = None
        self.handle: SpeechHandle | None = None  # the current reply's speech
        self._task: asyncio.Task[ReplyMetrics] | None = None
        self._skip_requested = False
        self._task_metrics: ReplyMetrics | None = None
        self._last_activity = self.clock.now()
        self._ids = itertools.count(1)
        self._host_lines: dict[str, HostLine] = {}

    # Intake.
    def submit(self, event: ChatEvent) -> str:
        """Moderate and queue an event; returns the outcome ("queued", "moderated", "duplicate", ...)."""
        self._last_activity = self.clock.now()
        checked = self.moderator.check_input(event)
        outcome = "moderated" if checked is None else str(self.queue.put(checked))
        self.events.publish(EventAccepted(id=event.id, kind=str(event.kind), user=event.user, outcome=outcome))
        return outcome

    def submit_dict(self, data: Mapping[str, Any]) -> str:
        """Parse (raises `EventError` on bad input) and submit."""
        event = parse_event(data, now=self.clock.now(), cohost_names=self.cohost_names,
                            question_prefixes=self.question_prefixes)
        return self.submit(event)

    # Host controls.
    def say(self, text: str, *, speech_id: str | None = None, line: HostLine | None = None) -> str:
        """Queue a line the host asked for (console, REST, a bot), said word for word ahead of chat;
        output moderation and the host policies still apply. Returns the speech id (SpeakerBusy when
        the queue cannot take it)."""
        speech_id = speech_id or f"host-{next(self._ids)}"
        if speech_id in self._host_lines or (self.handle is not None and self.handle.id == speech_id):
            raise ValueError(f"speech id {speech_id!r} is already in use")
        event = ChatEvent(kind=EventKind.HOST, user="host", text=text.strip(), platform="console",
                          timestamp=self.clock.now(), id=speech_id)
        self._last_activity = self.clock.now()
        outcome = self.queue.put(event)
        self.events.publish(EventAccepted(id=event.id, kind="host", user="host", outcome=str(outcome)))
        if outcome is not Outcome.QUEUED:
            raise SpeakerBusy(f"the co-host's queue cannot take this line ({outcome})")
        self.queue.pin(event.id)
        self._host_lines[event.id] = line or HostLine()
        self.events.publish(SpeechQueued(id=event.id, text=event.text, source=(line or HostLine()).source))
        return event.id

    def cancel(self, speech_id: str) -> bool:
        """Cancel a line or reply by its speech id (or its chat event id), queued or on air."""
        if self.queue.skip(speech_id):
            return True
        current = self.current.event.id if self.current is not None else None
        if speech_id in (current, self.handle.id if self.handle is not None else None):
            return self.skip_current()
        return False

    def set_host_speaking(self, speaking: bool) -> None:
        self.turns.set_host_speaking(speaking)
        self.events.publish(HostSpeaking(speaking=speaking))
        self._refresh_state()

    def skip_current(self) -> bool:
        """Stop the reply being spoken now (LLM request, synthesis and queued audio)."""
        if self._task is None or self._task.done():
            return False
        self._skip_requested = True
        if self.handle is not None:
            self.handle.cancel()
        self._task.cancel()
        return True

    # The loop.
    async def run(self) -> None:
        """Answer events until cancelled."""
        while True:
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
            if self.turns.host_speaking:
                return None  # the host is filling the silence already
            idle = ChatEvent(kind=EventKind.IDLE, user="", text="", platform="voxroom",
                             timestamp=self.clock.now(), id=f"idle-{next(self._ids)}")
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
        self._task_metrics = None
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
            if not self._skip_requested:
                raise
            if self._task_metrics is None:  # skipped before its task ever ran: end it here
                return self._skipped_before_start(item)
            return self._task_metrics
        finally:
            self.current = None
            self.handle = None
            self._set_state("idle")

    async def _answer(self, item: QueuedEvent) -> ReplyMetrics:
        event = item.event
        start = self.clock.now()
        line = self._host_lines.pop(event.id, None) if event.kind is EventKind.HOST else None
        source = "host" if event.kind is EventKind.HOST else self._source_name()
        metrics = ReplyMetrics(event_id=event.id, kind=str(event.kind), source=source,
                               queue_wait=start - item.enqueued_at)
        self._task_metrics = metrics
        fallbacks_before = self._fallbacks()
        self.events.publish(ReplyStarted(id=event.id, kind=str(event.kind), user=event.user, text=event.text,
                                         queue_wait=metrics.queue_wait))
        self._set_state("thinking")
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        producer = asyncio.ensure_future(self._produce(event, pieces, metrics, start))
        handle: SpeechHandle | None = None
        try:
            while (piece := await self._next_piece(pieces, handle)) is not None:
                safe = self.moderator.check_output(piece, event_id=event.id)
                if safe is None:
                    metrics.extra["moderated_pieces"] = metrics.extra.get("moderated_pieces", 0) + 1
                    continue
                if handle is None:
                    handle = self.handle = self._speech_for(event, line)
                    self.speaker.speak(handle)
                if not handle.push(safe, lang=detect_language(safe) if handle.lang == "auto" else None):
                    break  # the speech ended early: stop writing
                self.events.publish(ReplyPiece(id=event.id, text=safe))
            if handle is None:
                metrics.outcome = "moderated" if metrics.extra.get("moderated_pieces") else "silent"
            else:
                handle.end_input()
                metrics.outcome = _OUTCOMES.get(await handle.wait_played(), "spoken")
                if handle.error:
                    metrics.extra["synthesis_error"] = handle.error
        except asyncio.CancelledError:
            metrics.outcome = "skipped"
            raise
        except SpeakerBusy as error:
            log.warning("reply to %s not spoken: %s", event.id, error)
            metrics.outcome, metrics.extra["error"] = "error", str(error)
        finally:
            if handle is not None and not handle.finished:
                handle.cancel()
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
            now = self.clock.now()
            metrics.total = now - start
            if handle is not None:
                metrics.text = " ".join(handle.played_text)
                metrics.audio_seconds = handle.played_seconds
                if handle.started_at is not None:
                    metrics.first_audio = handle.started_at - start
            if self._fallbacks() > fallbacks_before:
                metrics.source = "fallback"
            if line is not None and handle is None:  # a line that never became speech still ends, for its asker
                state = {"moderated": "moderated", "skipped": str(SpeechState.CANCELLED)}.get(metrics.outcome, "done")
                self.events.publish(SpeechEnded(
                    id=event.id, text=event.text, state=state,
                    source=line.source, reply_to=event.id, frames=0, played_text="", error=None, at=now))
            self._remember(event, metrics.text)
            self.events.publish(ReplyFinished(
                id=event.id, kind=str(event.kind), outcome=metrics.outcome, text=metrics.text,
                queue_wait=metrics.queue_wait, llm_first_token=metrics.llm_first_token,
                first_audio=metrics.first_audio, total=metrics.total, source=metrics.source,
                audio_seconds=metrics.audio_seconds, extra=dict(metrics.extra)))
        return metrics

    def _skipped_before_start(self, item: QueuedEvent) -> ReplyMetrics:
        """A skip (a cancel of its speech id) that came before the reply's task started: nothing was
        said; the line's asker and the metrics still hear that it ended."""
        event = item.event
        metrics = ReplyMetrics(event_id=event.id, kind=str(event.kind), outcome="skipped",
                               source="host" if event.kind is EventKind.HOST else self._source_name(),
                               queue_wait=self.clock.now() - item.enqueued_at)
        line = self._host_lines.pop(event.id, None)
        if line is not None:
            self.events.publish(SpeechEnded(id=event.id, text=event.text, state=str(SpeechState.CANCELLED),
                                            source=line.source, reply_to=event.id, frames=0, played_text="",
                                            error=None, at=self.clock.now()))
        self.events.publish(ReplyFinished(
            id=event.id, kind=str(event.kind), outcome="skipped", text="", queue_wait=metrics.queue_wait,
            llm_first_token=None, first_audio=None, total=0.0, source=metrics.source))
        return metrics

    def _speech_for(self, event: ChatEvent, line: HostLine | None) -> SpeechHandle:
        if line is None:
            return SpeechHandle(id=f"cohost-{next(self._ids)}", voice=self.voice, speed=self.speed,
                                source="reply", reply_to=event.id)
        voice = self.voice if line.voice is False else (line.voice if isinstance(line.voice, Voice) else None)
        return SpeechHandle(id=event.id, voice=voice, lang=line.lang,
                            speed=line.speed if line.speed is not None else self.speed,
                            source=line.source, reply_to=event.id, listener=line.listener)

    @staticmethod
    async def _next_piece(pieces: asyncio.Queue[str | None], handle: SpeechHandle | None) -> str | None:
        """The next piece of text, or None when the text is done or the reply's speech has ended."""
        if handle is None or not pieces.empty():
            return await pieces.get()
        getter = asyncio.ensure_future(pieces.get())
        ended = asyncio.ensure_future(handle.wait_played())
        try:
            await asyncio.wait({getter, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if not getter.done():
                getter.cancel()
        return getter.result() if getter.done() and not getter.cancelled() else None

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

    # Plumbing.
    @staticmethod
    async def _host_line(event: ChatEvent) -> AsyncIterator[str]:
        yield event.text

    def _watch_speech(self, event: LifecycleEvent) -> None:
        """Follow the current reply's speech on the room's stream (the playout reports it)."""
        handle = self.handle
        if handle is not None and isinstance(event, SpeechStarted | SpeechEnded) and event.id == handle.id:
            self._refresh_state()

    def _refresh_state(self) -> None:
        handle = self.handle
        if self.current is None:
            return
        if handle is None or handle.started_at is None:
            self._set_state("thinking")
        elif self.turns.host_speaking and self.turns.policy is not HostSpeechPolicy.DUCK:
            self._set_state("paused")
        else:
            self._set_state("speaking")

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
            self.events.publish(CoHostState(state=state))

    def _on_drop(self, event: ChatEvent, outcome: Outcome) -> None:
        self.events.publish(EventDropped(id=event.id, kind=str(event.kind), user=event.user, text=event.text,
                                         reason=str(outcome)))
        line = self._host_lines.pop(event.id, None)
        if line is not None:  # a host line that never reached the speaker ends here
            self.events.publish(SpeechEnded(id=event.id, text=event.text, state=str(SpeechState.CANCELLED),
                                            source=line.source, reply_to=event.id, frames=0, played_text="",
                                            error=None, at=self.clock.now()))

    def _on_moderated(self, entry: ModerationEntry) -> None:
        self.events.publish(Moderated(entry=entry.as_dict()))

    def pending_lines(self) -> list[dict[str, Any]]:
        """Host lines still waiting in the queue, as speech summaries (id, text, state)."""
        return [{"id": q["id"], "text": q["text"], "state": "queued"} for q in self.queue.snapshot()
                if q["kind"] == str(EventKind.HOST)]

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
