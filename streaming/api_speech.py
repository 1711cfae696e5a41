"""Speech for one HTTP caller: an unpaced playout per request, fair-use limits, a response body per speech.

The compatibility APIs (OpenAI's `/v1/audio/speech`, GPT-SoVITS' `/tts`, SillyTavern) say text
through `ApiSpeaker`: each request gets its own unpaced `Playout` (the one synthesis driver every
word voxroom says goes through), so callers do not wait for each other. Fair use, checked in this
order, each refusal a `SpeakerBusy` (HTTP 429 with `Retry-After`):

- per account, a rate (`FairUse.rate_per_min` requests a minute, bursts of `burst`: a token bucket);
- per account, `max_per_account` speeches queued or speaking at once, so one API client cannot take
  every place;
- server-wide, `max_speeches` at once: at most half of what the cloning engine takes at once
  (its batch plus its line, 16), so a live room's playout always finds room in the engine.

Frames leave as fast as the engine makes them; each speech's frames wait in its `SpeechStream` (up
to `BUFFER_FRAMES`, then its playout waits: back-pressure) until the response body takes them. A
caller that goes away cancels its speech and frees its place.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from voxroom.agent.clock import Clock
from voxroom.agent.speech import SpeakerBusy, SpeechHandle, SpeechState
from voxroom.models.engine import Engine, SynthesisError, Voice, VoiceRef
from voxroom.models.voice_store import VoiceNotFound
from voxroom.streaming.accounts import Account
from voxroom.streaming.audio_encoding import StreamEncoder
from voxroom.streaming.playout import Playout

if TYPE_CHECKING:
    from voxroom.streaming.app import VoxroomServer

MAX_API_SPEECHES = 8  # queued or speaking at once, server-wide
BUFFER_FRAMES = 1500  # 30 s of audio made ahead of a slow reader before the playout waits
MIN_SPEED, MAX_SPEED = 0.5, 2.0  # what the engines support; the APIs clamp to it


def clamp_speed(speed: float) -> float:
    return min(MAX_SPEED, max(MIN_SPEED, speed))


class ApiLimited(SpeakerBusy):
    """One account asked for more than its share; `retry_after` says when its next place frees."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class FairUse:
    """Per-account limits on API speech (ServerConfig.api_*; docs/compat.md, "Limits")."""

    max_per_account: int = 4  # queued or speaking at once
    rate_per_min: float = 120.0  # requests a minute, on average

    @property
    def burst(self) -> int:
        """Requests at once after a quiet spell: half a minute's worth."""
        return max(1, int(self.rate_per_min // 2))


class RateBuckets:
    """A token bucket per account: `burst` places, refilled at `rate_per_min`. Buckets that have
    refilled completely are forgotten, so the table holds only accounts that called lately."""

    def __init__(self, clock: Clock, fair: FairUse) -> None:
        self.clock, self.fair = clock, fair
        self._buckets: dict[str, tuple[float, float]] = {}  # account -> (places left, when counted)

    def take(self, account_id: str) -> None:
        now, per_s = self.clock.now(), self.fair.rate_per_min / 60.0
        for key, (left, at) in list(self._buckets.items()):
            if left + (now - at) * per_s >= self.fair.burst:
                del self._buckets[key]
        left, at = self._buckets.get(account_id, (float(self.fair.burst), now))
        left = min(float(self.fair.burst), left + (now - at) * per_s)
        if left < 1.0:
            self._buckets[account_id] = (left, now)
            raise ApiLimited(f"more than {self.fair.rate_per_min:g} API requests a minute from this account; "
                             "slow down", (1.0 - left) / per_s)
        self._buckets[account_id] = (left - 1.0, now)


class SpeechStream:
    """One API speech's frames on their way to its response body (a `FrameListener`)."""

    def __init__(self, handle: SpeechHandle, on_done: asyncio.Event) -> None:
        self.handle = handle
        self._frames: deque[np.ndarray] = deque()
        self._arrived = asyncio.Event()
        self._taken = asyncio.Event()
        self._taken.set()
        self._done = on_done

    # -- FrameListener, called by the playout ---------------------------------------------------
    def speech_frame(self, handle: SpeechHandle, frame: np.ndarray) -> None:
        self._frames.append(frame)
        self._arrived.set()

    @property
    def buffered(self) -> int:
        return len(self._frames)

    async def writable(self) -> None:
        while len(self._frames) >= BUFFER_FRAMES and not self.handle.finished:
            self._taken.clear()
            await self._taken.wait()

    # -- for the response -------------------------------------------------------------------------
    async def _next(self) -> np.ndarray | None:
        """The next frame; None once the speech has ended and every frame was taken."""
        while not self._frames:
            if self.handle.finished:
                return None
            self._arrived.clear()
            ended = asyncio.ensure_future(self.handle.wait_played())
            arrived = asyncio.ensure_future(self._arrived.wait())
            try:
                await asyncio.wait({ended, arrived}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ended.cancel()
                arrived.cancel()
        frame = self._frames.popleft()
        self._taken.set()
        return frame

    async def first_frame(self) -> np.ndarray:
        """Wait for audio before answering, so a speech that cannot be said is an error, not an empty body."""
        frame = await self._next()
        if frame is None:
            state = self.handle.state
            if state is SpeechState.FAILED or self.handle.error:
                raise SynthesisError(self.handle.error or "nothing could be said")
            raise SynthesisError(f"the speech ended before any audio ({state})")
        self._frames.appendleft(frame)
        return frame

    async def frames(self) -> AsyncIterator[np.ndarray]:
        while (frame := await self._next()) is not None:
            yield frame

    async def encoded(self, encoder: StreamEncoder) -> AsyncIterator[bytes]:
        """The body: encoded bytes as the frames come. Leaving early (the caller went away) cancels the speech."""
        try:
            async for frame in self.frames():
                data = encoder.push(frame)
                if data:
                    yield data
            tail = encoder.close()
            if tail:
                yield tail
        finally:
            self.release()

    async def collect(self, encoder: StreamEncoder) -> bytes:
        return b"".join([chunk async for chunk in self.encoded(encoder)])

    def release(self) -> None:
        if not self.handle.finished:
            self.handle.listener = None
            self.handle.cancel()
        self._frames.clear()
        self._taken.set()  # a playout waiting in `writable` for this reader moves on to the next speech
        self._done.set()


class SpeechResponse(StreamingResponse):
    """A chunked body of one speech, encoded as it is said; however the response ends (done, the
    caller gone before or during the body), the speech is released."""

    def __init__(self, stream: SpeechStream, encoder: StreamEncoder, headers: dict[str, str] | None = None,
                 media_type: str | None = None) -> None:
        super().__init__(stream.encoded(encoder), media_type=media_type or encoder.content_type, headers=headers)
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.stream.release()


class ApiSpeaker:
    """API speech for the whole server: a playout per speech, within the fair-use limits above."""

    def __init__(self, engine: Engine, clock: Clock, max_speeches: int = MAX_API_SPEECHES,
                 fair: FairUse | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.max_speeches = max_speeches
        self.fair = fair or FairUse()
        self.rates = RateBuckets(clock, self.fair)
        self._open: dict[SpeechStream, Playout] = {}
        self._owner: dict[SpeechStream, str] = {}

    @property
    def active(self) -> int:
        return len(self._open)

    def active_for(self, account_id: str) -> int:
        return sum(1 for owner in self._owner.values() if owner == account_id)

    def admit(self, account_id: str) -> None:
        """Count one API request against `account_id`'s rate (ApiLimited past it). Calls that say
        nothing (set_refer_audio, …) count too; `speak` counts its own."""
        self.rates.take(account_id)

    def speak(self, text: str, voice: Voice | None, *, account_id: str, lang: str = "auto", speed: float = 1.0,
              source: str = "api") -> SpeechStream:
        """Queue `text` for `account_id`; SpeakerBusy (HTTP 429) past the account's rate or share, or
        when `max_speeches` are queued or speaking already."""
        self.rates.take(account_id)
        if self.active_for(account_id) >= self.fair.max_per_account:
            raise ApiLimited(f"this account has {self.fair.max_per_account} API speeches being said already; "
                             "try again when one has ended", 1.0)
        if len(self._open) >= self.max_speeches:
            raise SpeakerBusy(f"{self.max_speeches} API speeches are being said already; try again shortly")
        handle = SpeechHandle(voice=voice, lang=lang, speed=clamp_speed(speed), source=source)
        done = asyncio.Event()
        stream = SpeechStream(handle, done)
        handle.listener = stream
        playout = Playout(self.engine, self.clock, name=f"api-{handle.id}", paced=False, max_speeches=1)
        playout.start()
        playout.speak(handle.say(text))
        self._open[stream] = playout
        self._owner[stream] = account_id
        asyncio.get_running_loop().create_task(self._forget_when_done(stream, done))
        return stream

    async def _forget_when_done(self, stream: SpeechStream, done: asyncio.Event) -> None:
        await done.wait()  # the body has been read or abandoned (`SpeechResponse` always releases)
        self._owner.pop(stream, None)
        playout = self._open.pop(stream, None)
        if playout is not None:
            with contextlib.suppress(Exception):
                await playout.close()

    async def close(self) -> None:
        for stream in list(self._open):
            stream.release()
        for playout in list(self._open.values()):
            await playout.close()
        self._open.clear()
        self._owner.clear()


def voice_ref(server: VoxroomServer, account: Account, name: str,
              stock_names: frozenset[str] = frozenset()) -> VoiceRef:
    """One of `account`'s voices by id, else by name (case-insensitive); the stock voice for "stock" or
    one of `stock_names`. LookupError when the caller has no such voice."""
    wanted = name.strip()
    if wanted.casefold() in stock_names | {VoiceRef.STOCK_NAME}:
        return VoiceRef()
    records = server.voices.store.list(account.id)
    for record in records:
        if record.id == wanted:
            return VoiceRef(record.id)
    for record in records:
        if record.name.strip().casefold() == wanted.casefold():
            return VoiceRef(record.id)
    raise LookupError(f"no such voice: {name[:80]!r}")


def find_voice(server: VoxroomServer, account: Account, name: str,
               stock_names: frozenset[str] = frozenset()) -> Voice | None:
    """The voice `voice_ref` names, ready to speak with (None: the stock voice)."""
    try:
        return server.voice(voice_ref(server, account, name, stock_names), account)
    except VoiceNotFound:  # deleted a moment ago
        raise LookupError(f"no such voice: {name[:80]!r}") from None
