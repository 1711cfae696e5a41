"""Wires a room to its co-host: `voxroom.agent.CoHost` speaking into the room's playout.

The agent knows no server: it reads events from its queue and plays `AudioChunk`s into an
`AudioSink`. `PlayoutSink` is that sink for a room: each reply becomes one playout `Speech` whose
audio is the agent's chunks, so replies, typed lines and bot speeches share one real-time
track, one fade-out path and one caption stream.

The host's voice acts twice: the agent stops feeding audio at its next chunk boundary, and the
playout reacts at once (within one 20 ms tick) to what is already queued: held while the host
talks (resume), cancelled with a fade (drop), or turned down (duck).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import numpy as np

from voxroom.agent.clock import SystemClock
from voxroom.agent.cohost import CoHost
from voxroom.agent.events import EventKind, parse_event
from voxroom.agent.moderation import Moderator
from voxroom.agent.replies import DEFAULT_TEMPLATES, LLMReplies, ReadAloud, ReplySource
from voxroom.agent.speech_queue import SpeechQueue
from voxroom.agent.turns import HostSpeechPolicy, TurnTaking
from voxroom.models.engine import AudioChunk, Engine, Voice
from voxroom.models.vad import StreamingVad
from voxroom.streaming.audio import FRAME_MS
from voxroom.streaming.config import ServerConfig
from voxroom.streaming.playout import Playout, Speech

log = logging.getLogger(__name__)

SINK_AHEAD_CHUNKS = 1  # the agent's chunks are 100 ms; hold one, the playout holds 500 ms of frames
LISTENER_KINDS = {EventKind.MESSAGE, EventKind.QUESTION}  # a listener page cannot send gifts or follows
TEMPLATE_FIELDS = {"user", "text", "gift", "amount", "currency", "platform"}
_ids = itertools.count(1)


class PlayoutSink:
    """`AudioSink` for the agent: one playout speech per reply, fed chunk by chunk."""

    def __init__(self, playout: Playout) -> None:
        self.playout = playout
        self.speech: Speech | None = None
        self._chunks: asyncio.Queue[AudioChunk | None] | None = None
        self._handed_s = 0.0  # audio put into the current speech

    async def _source(self, chunks: asyncio.Queue[AudioChunk | None]) -> AsyncIterator[AudioChunk]:
        while (chunk := await chunks.get()) is not None:
            yield chunk

    async def play(self, chunk: AudioChunk) -> None:
        speech = self.speech
        if speech is None or speech.finished or self._chunks is None:
            self._chunks = asyncio.Queue(maxsize=SINK_AHEAD_CHUNKS)
            speech = self.speech = Speech(id=f"cohost-{next(_ids)}", text="", source=self._source(self._chunks))
            self._handed_s = 0.0
            self.playout.say(speech)
        if chunk.text and not speech.text.endswith(chunk.text):
            speech.text = f"{speech.text} {chunk.text}".strip()
        await self._chunks.put(chunk)
        self._handed_s += chunk.duration

    def queued_seconds(self) -> float:
        speech = self.speech
        if speech is None or speech.finished:
            return 0.0
        return max(0.0, self._handed_s - speech.frames_played * FRAME_MS / 1000)

    async def flush(self, fade: bool = True) -> None:
        if self.speech is not None:
            self.playout.cancel(self.speech)
        self.speech, self._chunks = None, None

    async def wait_played(self) -> None:
        speech, chunks = self.speech, self._chunks
        if speech is None or chunks is None:
            return
        self.speech, self._chunks = None, None
        await chunks.put(None)
        await speech.ended.wait()


class RoomCoHost:
    """A room's co-host: the agent loop, its settings, and the host-speaking reactions."""

    def __init__(self, room_id: str, playout: Playout, engine: Engine, config: ServerConfig) -> None:
        clock = SystemClock()
        self.publish: Callable[[dict[str, Any]], None] = lambda event: None  # the room sets it
        self.room_id = room_id
        self.playout = playout
        self.sink = PlayoutSink(playout)
        self.read_aloud = ReadAloud()
        self.llm: LLMReplies | None = None
        if config.openai_base_url:
            self.llm = LLMReplies(base_url=config.openai_base_url, api_key=config.openai_api_key or "none",
                                  model=config.llm_model, fallback=self.read_aloud)
        replies: ReplySource = self.llm if self.llm is not None else self.read_aloud
        self.agent = CoHost(engine=engine, sink=self.sink, replies=replies, clock=clock,
                            queue=SpeechQueue(clock), moderator=Moderator(clock),
                            turns=TurnTaking(clock), cohost_names=["cohost", "voxroom"],
                            question_prefixes=["?", "Q:", "问"])
        self.agent.add_observer(lambda name, data: self.publish({"type": f"cohost.{name}", **data}))
        self.vad = StreamingVad()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"cohost-{self.room_id}")

    async def _run(self) -> None:
        while True:
            try:
                await self.agent.run()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one reply must not silence the room for good
                log.exception("room %s: co-host loop failed; restarting it", self.room_id)
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.sink.flush()

    # -- intake -------------------------------------------------------------------------------
    def submit(self, data: Mapping[str, Any], *, from_listener: bool = False) -> str:
        """Parse and queue one chat event (EventError: ValueError on bad input)."""
        event = parse_event(data, now=self.agent.clock.now(), cohost_names=self.agent.cohost_names,
                            question_prefixes=self.agent.question_prefixes)
        if from_listener and event.kind not in LISTENER_KINDS:
            raise ValueError("a listener page may send messages and questions only")
        return self.agent.submit(event)

    # -- host voice ---------------------------------------------------------------------------
    def host_audio(self, block: np.ndarray) -> None:
        """16 kHz blocks from the host's microphone: silero VAD decides when the host talks."""
        for event in self.vad.push(block):
            self.set_host_speaking(event.kind == "start")

    def set_host_speaking(self, speaking: bool) -> None:
        turns = self.agent.turns
        if speaking == turns.host_speaking:
            return
        self.agent.set_host_speaking(speaking)
        policy = turns.policy
        if policy is HostSpeechPolicy.RESUME:
            self.playout.paused = speaking
        elif policy is HostSpeechPolicy.DUCK:
            self.playout.gain = turns.duck_gain if speaking else 1.0
        elif speaking and self.sink.speech is not None:
            self.playout.cancel(self.sink.speech)

    # -- settings -----------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        turns = self.agent.turns
        return {
            "mode": "llm" if self.llm is not None else "read_aloud",
            "persona": self.llm.persona if self.llm is not None else None,
            "policy": str(turns.policy),
            "idle_after": turns.idle_after,
            "blocked_words": self.agent.moderator.blocked_words,
            "templates": self.read_aloud.templates,
            "voice": self.agent.voice.id if self.agent.voice is not None else "stock",
        }

    def update(self, body: Mapping[str, Any], voice: Voice | None | bool = False) -> None:
        """Apply console settings; `voice` False = unchanged, None = the stock voice."""
        turns = self.agent.turns
        if "persona" in body:
            if not isinstance(body["persona"], str) or len(body["persona"]) > 4000:
                raise ValueError("'persona' must be text of at most 4000 characters")
            if self.llm is None:
                raise ValueError("a persona needs an LLM endpoint (set OPENAI_BASE_URL); read-aloud mode has none")
            self.llm.persona = body["persona"]
        if "policy" in body:
            try:
                policy = HostSpeechPolicy(body["policy"])
            except ValueError:
                raise ValueError("'policy' must be resume, drop or duck") from None
            self.set_host_speaking(False)  # leave the old policy's effect behind cleanly
            turns.policy = policy
        if "idle_after" in body:
            idle = body["idle_after"]
            if idle is not None and (not isinstance(idle, int | float) or not 10 <= idle <= 3600):
                raise ValueError("'idle_after' must be null (off) or 10-3600 seconds")
            turns.idle_after = idle
        if "blocked_words" in body:
            words = body["blocked_words"]
            if not isinstance(words, list) or not all(isinstance(w, str) and 0 < len(w) <= 100 for w in words) \
                    or len(words) > 1000:
                raise ValueError("'blocked_words' must be a list of up to 1000 words")
            for word in list(self.agent.moderator.blocked_words):
                self.agent.moderator.unblock(word)
            for word in words:
                self.agent.moderator.block(word)
        if "templates" in body:
            templates = body["templates"]
            if not isinstance(templates, dict):
                raise ValueError("'templates' must map language -> kind -> template")
            for lang, kinds in templates.items():
                if lang not in DEFAULT_TEMPLATES or not isinstance(kinds, dict):
                    raise ValueError(f"'templates' must map a language ({', '.join(DEFAULT_TEMPLATES)}) "
                                     "to kind -> template")
                for kind, template in kinds.items():
                    if kind not in DEFAULT_TEMPLATES["en"]:
                        raise ValueError(f"unknown template kind {kind!r}; one of {sorted(DEFAULT_TEMPLATES['en'])}")
                    if not isinstance(template, str) or len(template) > 500:
                        raise ValueError("a template is text of at most 500 characters")
                    fields = set(re.findall(r"{([^{}]*)}", template))
                    if not fields <= TEMPLATE_FIELDS:
                        raise ValueError(f"templates may use only {sorted(TEMPLATE_FIELDS)} in braces")
                    self.read_aloud.set_template(lang, kind, template)
        if voice is not False:
            self.agent.voice = voice if isinstance(voice, Voice) else None
