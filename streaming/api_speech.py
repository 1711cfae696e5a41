"""Speech for one HTTP caller: an unpaced playout per request, a server-wide limit, a response body per speech.

The compatibility APIs (OpenAI's `/v1/audio/speech`, GPT-SoVITS' `/tts`, SillyTavern) say text
through `ApiSpeaker`: each request gets its own unpaced `Playout` (the one synthesis driver every
word voxroom says goes through), so callers do not wait for each other, and all of them count toward
one server-wide limit (`MAX_API_SPEECHES` at once; past it `SpeakerBusy`, HTTP 429). Frames leave as
fast as the engine makes them; each speech's frames wait in its `SpeechStream` (up to
`BUFFER_FRAMES`, then its playout waits: back-pressure) until the response body takes them. A
caller that goes away cancels its speech and frees its place.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
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
RETRY_AFTER_S = 2
MIN_SPEED, MAX_SPEED = 0.5, 2.0  # what the engines support; the APIs clamp to it


def clamp_speed(speed: float) -> float:
    return min(MAX_SPEED, max(MIN_SPEED, speed))


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
    """API speech for the whole server: a playout per speech, at most `max_speeches` at once."""

    def __init__(self, engine: Engine, clock: Clock, max_speeches: int = MAX_API_SPEECHES) -> None:
        self.engine = engine
        self.clock = clock
        self.max_speeches = max_speeches
        self._open: dict[SpeechStream, Playout] = {}

    @property
    def active(self) -> int:
        return len(self._open)

    def speak(self, text: str, voice: Voice | None, *, lang: str = "auto", speed: float = 1.0,
              source: str = "api") -> SpeechStream:
        """Queue `text`; SpeakerBusy (HTTP 429) when `max_speeches` are queued or speaking already."""
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
        asyncio.get_running_loop().create_task(self._forget_when_done(stream, done))
        return stream

    async def _forget_when_done(self, stream: SpeechStream, done: asyncio.Event) -> None:
        await done.wait()  # the body has been read or abandoned (`SpeechResponse` always releases)
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


def find_voice(server: VoxroomServer, account: Account, name: str,
               stock_names: frozenset[str] = frozenset()) -> Voice | None:
    """One of `account`'s voices by id, else by name (case-insensitive); None for the stock voice
    ("stock" or one of `stock_names`). LookupError when the caller has no such voice."""
    if name.strip().casefold() in stock_names | {VoiceRef.STOCK_NAME}:
        return None
    try:
        return server.voice(VoiceRef.parse(name), account)
    except VoiceNotFound:
        pass
    except ValueError:
        raise LookupError(f"no such voice: {name[:80]!r}") from None
    wanted = name.strip().casefold()
    for record in server.voices.store.list(account.id):
        if record.name.strip().casefold() == wanted:
            return server.voice(VoiceRef(record.id), account)
    raise LookupError(f"no such voice: {name[:80]!r}")
