"""The host's microphone into the server over WebRTC (WHIP-style ingest).

The host console POSTs an SDP offer with a send-only audio track to /rooms/ROOM/whip; aiortc
decodes the Opus stream to 48 kHz stereo s16, and `HostMicrophone` turns it into 16 kHz mono
float32 blocks for whoever listens (the voice-activity detector that tells the co-host to yield).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable

import numpy as np
from aiortc import MediaStreamTrack, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from voxroom.models.pcm import Resampler
from voxroom.streaming.webrtc import filter_remote_candidates, new_peer_connection

log = logging.getLogger(__name__)

INPUT_RATE = 16_000
AudioCallback = Callable[[np.ndarray], None]


class HostMicrophone:
    """One ingest session: a peer connection receiving the host's audio."""

    def __init__(self, on_audio: list[AudioCallback], on_closed: Callable[[HostMicrophone], None]) -> None:
        self.id = secrets.token_urlsafe(12)
        self.pc = new_peer_connection()
        self.on_audio = on_audio
        self.samples_in = 0  # 16 kHz samples delivered
        self._on_closed = on_closed
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

        @self.pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and self._reader is None:
                self._reader = asyncio.ensure_future(self._read(track))

        @self.pc.on("connectionstatechange")
        async def _state() -> None:
            if self.pc.connectionState in ("failed", "closed"):
                await self.close()

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=filter_remote_candidates(offer_sdp), type="offer"))
        audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise ValueError("the offer has no audio track to send the host's microphone")
        for transceiver in audio:
            transceiver.direction = "recvonly"
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def _read(self, track: MediaStreamTrack) -> None:
        resampler = Resampler(0, INPUT_RATE)  # the track's rate is whatever each frame says
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            block = resampler.push_frame(frame)  # type: ignore[arg-type]
            if not block.size:
                continue
            self.samples_in += block.size
            for callback in list(self.on_audio):
                try:
                    callback(block)
                except Exception:
                    log.exception("host audio consumer failed; removing it")
                    self.on_audio.remove(callback)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.pc.close()
        self._on_closed(self)
