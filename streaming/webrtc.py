"""WebRTC playback: one Opus encoder per room, fanned out to every listener's peer connection.

The pacer hands each 20 ms frame to `OpusFanout`, which encodes it once; every listener track
returns the same packets to aiortc, which packs pre-encoded packets without re-encoding. A slow
listener's queue drops its oldest packets instead of holding up the room.

ICE: aioice offers every non-loopback interface and never 127.0.0.1; `configure_ice_addresses`
replaces that choice with the configured list (a same-machine setup, a public IP behind NAT), and
remote candidates outside that list are dropped before aiortc sees them, so connectivity checks
never go to an address the operator did not choose, except relay candidates: those are on the TURN
servers the operator configured (`configure_ice_servers`), which every peer of voxroom's uses too.
"""

from __future__ import annotations

import asyncio
import fractions
import ipaddress
import logging
import re
import secrets
from collections.abc import Callable

import aioice.ice
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from voxroom.models.pcm import to_pcm16
from voxroom.streaming.audio import FRAME_SAMPLES, SAMPLE_RATE
from voxroom.streaming.ice_servers import IceServer, for_aiortc

log = logging.getLogger(__name__)

LISTENER_QUEUE = 50  # 1 s of packets; past that a listener is too slow and loses the oldest
_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
_original_host_addresses = aioice.ice.get_host_addresses
_ice_addresses: list[str] = []
_ice_servers: list[IceServer] = []


def configure_ice_addresses(addresses: list[str]) -> None:
    """Offer exactly these host addresses in ICE (empty list: aioice's own choice)."""
    global _ice_addresses
    _ice_addresses = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        if not _ice_addresses:
            return _original_host_addresses(use_ipv4, use_ipv6)
        return [a for a in _ice_addresses if (ipaddress.ip_address(a).version == 4 and use_ipv4)
                or (ipaddress.ip_address(a).version == 6 and use_ipv6)]

    aioice.ice.get_host_addresses = host_addresses


def configure_ice_servers(servers: list[IceServer]) -> None:
    """The STUN/TURN servers every peer connection of voxroom's uses (WHEP, WHIP, the host's microphone)."""
    global _ice_servers
    _ice_servers = list(servers)


def new_peer_connection(ice_servers: list[RTCIceServer] | None = None) -> RTCPeerConnection:
    """A peer connection with `ice_servers`, else the configured ones (TURN credentials minted fresh)."""
    servers = ice_servers or for_aiortc(_ice_servers)
    return RTCPeerConnection(RTCConfiguration(iceServers=servers)) if servers else RTCPeerConnection()


_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ (\S+).*$")


def filter_remote_candidates(sdp: str) -> str:
    """Drop candidate lines whose address is not an allowed ICE address (all kept if none set)."""
    if not _ice_addresses:
        return sdp
    kept = []
    for line in sdp.splitlines():
        match = _CANDIDATE.match(line)
        if match and match.group(1) not in _ice_addresses and match.group(2) != "relay":
            continue
        kept.append(line)
    return "\r\n".join(kept) + "\r\n"


class OpusFanout:
    """Frame sink: encodes each 20 ms mono frame once and queues the packet for every listener."""

    def __init__(self) -> None:
        self._codec = av.CodecContext.create("libopus", "w")
        self._codec.sample_rate = SAMPLE_RATE
        self._codec.layout = "mono"
        self._codec.format = "s16"
        self._codec.bit_rate = 64000
        self._codec.time_base = _TIME_BASE
        self._codec.options = {"application": "audio", "frame_duration": "20"}
        self._pts = 0
        self.tracks: set[ListenerTrack] = set()

    def __call__(self, frame: np.ndarray) -> None:
        if not self.tracks:
            self._pts += FRAME_SAMPLES  # keep the clock running; nobody to encode for
            return
        pcm = to_pcm16(frame).reshape(1, -1)
        av_frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        av_frame.sample_rate = SAMPLE_RATE
        av_frame.pts = self._pts
        av_frame.time_base = _TIME_BASE
        self._pts += FRAME_SAMPLES
        for packet in self._codec.encode(av_frame):
            packet.time_base = _TIME_BASE
            for track in list(self.tracks):
                track.offer(packet)


class ListenerTrack(MediaStreamTrack):
    """The room's co-host audio as one listener's outgoing track (pre-encoded Opus packets)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: asyncio.Queue[av.Packet] = asyncio.Queue(maxsize=LISTENER_QUEUE)
        self.dropped = 0

    def offer(self, packet: av.Packet) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(packet)

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        return await self._queue.get()


class ListenerSession:
    """One WHEP playback session: a peer connection receiving the room's track.

    Until ICE and DTLS complete it is *pending*: it holds a room slot while nobody listens. aioice
    gives up on a peer that never answers only after tens of seconds, so `close_unless_connected`
    sets a much shorter deadline for admission to enforce."""

    def __init__(self, fanout: OpusFanout, on_closed: Callable[[ListenerSession], None],
                 admitted_as: tuple[str, ...] = ()) -> None:
        self.id = secrets.token_urlsafe(12)
        self.pc = new_peer_connection()
        self.track = ListenerTrack()
        self.admitted_as = admitted_as  # who asked to join (opaque keys the admission policy counts by)
        self.connected = asyncio.Event()  # set once; a listener that connected is no longer pending
        self._fanout = fanout
        self._on_closed = on_closed
        self._closed = False
        self._deadline: asyncio.Task[None] | None = None

        @self.pc.on("connectionstatechange")
        async def _state() -> None:
            if self.pc.connectionState == "connected":
                self.connected.set()
            elif self.pc.connectionState in ("failed", "closed"):
                await self.close()

    @property
    def pending(self) -> bool:
        return not self._closed and not self.connected.is_set()

    def close_unless_connected(self, timeout: float) -> None:
        """Close this session if it has not connected within `timeout` seconds."""
        async def deadline() -> None:
            try:
                await asyncio.wait_for(self.connected.wait(), timeout)
            except TimeoutError:
                log.info("listener %s did not connect within %.0f s; its slot is freed", self.id, timeout)
                await self.close()

        self._deadline = asyncio.get_running_loop().create_task(deadline())

    async def answer(self, offer_sdp: str) -> str:
        """Take the listener's offer (WHEP: receive-only audio) and return our answer SDP."""
        offer = RTCSessionDescription(sdp=filter_remote_candidates(offer_sdp), type="offer")
        await self.pc.setRemoteDescription(offer)
        audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise ValueError("the offer has no audio section to receive the co-host on")
        audio[0].sender.replaceTrack(self.track)
        audio[0].direction = "sendonly"
        for extra in audio[1:]:
            extra.direction = "inactive"
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._fanout.tracks.add(self.track)
        return self.pc.localDescription.sdp

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._deadline is not None and self._deadline is not asyncio.current_task():
            self._deadline.cancel()
        self._fanout.tracks.discard(self.track)
        self.track.stop()
        await self.pc.close()
        self._on_closed(self)
