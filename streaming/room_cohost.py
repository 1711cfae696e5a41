"""Wires a room to its co-host: `voxroom.agent.CoHost` speaking through the room's playout.

The agent knows no server: it reads events from its queue and pushes text into speech handles
that the room's `Playout` says. Replies, lines the host types (console, REST, a bot's `say` into the
room) and their cancellation all go through the agent, so they share its priorities, output
moderation and the host policies. The host's voice (the microphone's VAD, `POST .../host-speaking`,
the console button) only sets the room's `TurnTaking`; the playout reads it at every tick and acts
on the audio there, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import string
from collections.abc import Mapping
from typing import Any

import numpy as np

from voxroom.agent.clock import Clock
from voxroom.agent.cohost import CoHost
from voxroom.agent.events import EventKind, parse_event
from voxroom.agent.lifecycle import EventBus
from voxroom.agent.moderation import Moderator
from voxroom.agent.paid_rules import PaidEventRules
from voxroom.agent.replies import DEFAULT_TEMPLATES, LLMReplies, ReadAloud, ReplySource
from voxroom.agent.speech_queue import SpeechQueue
from voxroom.agent.turns import HostSpeechPolicy, TurnTaking
from voxroom.models.engine import Voice, VoiceRef
from voxroom.models.vad import StreamingVad
from voxroom.streaming.config import LLMSettings, ServerConfig
from voxroom.streaming.playout import Playout

log = logging.getLogger(__name__)

LISTENER_KINDS = {EventKind.MESSAGE, EventKind.QUESTION}  # a listener page cannot send gifts or follows
TEMPLATE_FIELDS = {"user", "text", "gift", "amount", "currency", "platform"}


class RoomCoHost:
    """A room's co-host: the agent loop, its settings, and the host-speaking reactions."""

    def __init__(self, room_id: str, playout: Playout, turns: TurnTaking, events: EventBus, clock: Clock,
                 config: ServerConfig, llm: LLMSettings | None | bool = False) -> None:
        """`llm`: the endpoint for replies (None: read-aloud; False: the server's, from `config`)."""
        self.room_id = room_id
        self.playout = playout
        self.read_aloud = ReadAloud()
        self.persona = ""  # kept in read-aloud mode too, for when an LLM is set
        # The voice the host chose. Without a cloning engine a recorded voice speaks as the stock voice
        # (agent.voice is None), but the choice is kept, shown and stored for when cloning is set up.
        self.voice_choice = VoiceRef()
        self.llm: LLMReplies | None = None
        # Batching small gifts holds them back for a window: a room opts in (PATCH cohost paid_rules).
        self.paid_rules = PaidEventRules(batch_window_s=0.0)
        self.read_aloud.apply_rules(self.paid_rules)
        self.agent = CoHost(speaker=playout, replies=self.read_aloud, clock=clock, events=events,
                            queue=SpeechQueue(clock, paid_rules=self.paid_rules), moderator=Moderator(clock),
                            turns=turns, cohost_names=["cohost", "voxroom"],
                            question_prefixes=["?", "Q:", "问"])
        self.use_llm(config.llm_settings() if llm is False else llm if isinstance(llm, LLMSettings) else None)
        self.vad = StreamingVad()
        self._task: asyncio.Task[None] | None = None

    def use_llm(self, settings: LLMSettings | None) -> None:
        """Answer with this endpoint from the next reply on (None: read-aloud); the persona carries over,
        the model's short memory starts afresh."""
        if settings is None:
            self.llm = None
        else:
            self.llm = LLMReplies(base_url=settings.base_url, api_key=settings.api_key or "none",
                                  model=settings.model, persona=self.persona, fallback=self.read_aloud,
                                  name=f"room {self.room_id}")
        replies: ReplySource = self.llm if self.llm is not None else self.read_aloud
        self.agent.replies = replies

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
        if speaking != self.agent.turns.host_speaking:
            self.agent.set_host_speaking(speaking)  # the playout reads it at its next tick

    # -- settings -----------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        turns = self.agent.turns
        return {
            "mode": "llm" if self.llm is not None else "read_aloud",
            "persona": self.persona if self.llm is not None else None,
            "policy": str(turns.policy),
            "idle_after": turns.idle_after,
            "blocked_words": self.agent.moderator.blocked_words,
            "templates": self.read_aloud.templates,
            "voice": str(self.voice_choice),
            "paid_rules": self.paid_rules.as_dict(),
        }

    def update(self, body: Mapping[str, Any], voice: Voice | None | bool = False) -> None:
        """Apply console settings; `voice` (the body's "voice", looked up by the caller) False = unchanged,
        None = the stock voice's sound."""
        turns = self.agent.turns
        if "persona" in body:
            if not isinstance(body["persona"], str) or len(body["persona"]) > 4000:
                raise ValueError("'persona' must be text of at most 4000 characters")
            if self.llm is None:
                raise ValueError("a persona needs an LLM endpoint (set one in the console or OPENAI_BASE_URL); "
                                 "read-aloud mode has none")
            self.persona = self.llm.persona = body["persona"]
        if "policy" in body:
            try:
                policy = HostSpeechPolicy(body["policy"])
            except ValueError:
                raise ValueError("'policy' must be resume, drop or duck") from None
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
                    try:  # a stray brace would fail every reply made with it, later and silently
                        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
                    except ValueError:
                        raise ValueError("a template's braces must pair up around a field name; "
                                         "write {{ or }} for a brace itself") from None
                    if not fields <= TEMPLATE_FIELDS:
                        raise ValueError(f"templates may use only {sorted(TEMPLATE_FIELDS)} in braces")
                    self.read_aloud.set_template(lang, kind, template)
        if "paid_rules" in body:
            if not isinstance(body["paid_rules"], dict):
                raise ValueError("'paid_rules' must be an object (see docs/connectors.md)")
            self.paid_rules = PaidEventRules.from_dict(body["paid_rules"], base=self.paid_rules)
            self.agent.queue.paid_rules = self.paid_rules
            self.read_aloud.apply_rules(self.paid_rules)
        if voice is not False:
            self.agent.voice = voice if isinstance(voice, Voice) else None
            self.voice_choice = VoiceRef.parse(body.get("voice")) if "voice" in body else VoiceRef.of(self.agent.voice)

    # -- durable settings (streaming/room_store.py) ---------------------------------------------
    def stored_settings(self) -> dict[str, Any]:
        """What a restart brings back: every setting the host chose, the voice by its reference."""
        turns = self.agent.turns
        return {
            "persona": self.persona,
            "policy": str(turns.policy),
            "idle_after": turns.idle_after,
            "blocked_words": self.agent.moderator.blocked_words,
            # Only what the host changed: a later version's better defaults still reach old rooms.
            "templates": {lang: changed for lang, table in self.read_aloud.templates.items()
                          if (changed := {kind: text for kind, text in table.items()
                                          if DEFAULT_TEMPLATES.get(lang, {}).get(kind) != text})},
            "voice": str(self.voice_choice),
            "paid_rules": self.paid_rules.as_dict(),
        }

    def restore(self, stored: Mapping[str, Any], voice: Voice | None) -> None:
        """Settings read back at server start; `voice` is the stored choice looked up (None: its sound is
        the stock voice's). Each is applied on its own, so one that no longer
        passes (a template field since removed) costs only itself, with a warning."""
        persona = stored.get("persona")
        if isinstance(persona, str):
            self.persona = persona[:4000]
            if self.llm is not None:
                self.llm.persona = self.persona
        for name in ("policy", "idle_after", "blocked_words", "templates", "paid_rules"):
            if name in stored:
                try:
                    self.update({name: stored[name]})
                except ValueError as exc:
                    log.warning("room %s: stored setting %r not restored: %s", self.room_id, name, exc)
        try:
            self.voice_choice = VoiceRef.parse(stored.get("voice"))
        except ValueError:
            self.voice_choice = VoiceRef()
        self.agent.voice = voice
