"""Rooms over WebRTC: a real aiortc peer joins with WHEP and hears the co-host."""

from __future__ import annotations

import asyncio
import fractions
from typing import Any

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription

from conftest import needs_shared
from speech_check import transcribe, word_error_rate
from voxroom.agent.lifecycle import HostSpeaking
from voxroom.streaming.webrtc import configure_ice_addresses, filter_remote_candidates

SENTENCE = "Thanks for watching the stream tonight, everyone."  # pocketsphinx: WER 0 in 15 of 15 renderings


def receiving_peer() -> tuple[RTCPeerConnection, asyncio.Queue[Any]]:
    """An aiortc peer whose incoming audio frames land in a queue (a listener, a Janus subscriber)."""
    pc = RTCPeerConnection()
    frames: asyncio.Queue[Any] = asyncio.Queue()

    @pc.on("track")
    def on_track(track: Any) -> None:
        async def pump() -> None:
            while True:
                try:
                    frames.put_nowait(await track.recv())
                except Exception:
                    return
        asyncio.ensure_future(pump())

    return pc, frames


async def join(server: Any, room_id: str, grant: str) -> tuple[RTCPeerConnection, str, asyncio.Queue[Any]]:
    pc, frames = receiving_peer()
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    status, headers, answer = await asyncio.to_thread(
        server.request, "POST", f"/rooms/{room_id}/whep", token=grant, content_type="application/sdp",
        raw=pc.localDescription.sdp.encode())
    assert status == 201, answer
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.decode(), type="answer"))
    return pc, headers["location"], frames


def mono(frame: Any) -> np.ndarray:
    data = frame.to_ndarray().astype(np.float32) / 32768.0
    channels = len(frame.layout.channels)
    return data.reshape(-1, channels).mean(axis=1) if channels > 1 else data.reshape(-1)


async def test_aiortc_listener_hears_the_cohost(live_server: Any) -> None:
    _, room = await asyncio.to_thread(live_server.json, "POST", "/api/rooms", {"name": "rtc"})
    pc, location, frames = await join(live_server, room["id"], room["listener_grant"])
    first = await asyncio.wait_for(frames.get(), 10)  # silence flows before anyone speaks
    assert first.sample_rate == 48000
    status, _ = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{room['id']}/say", {"text": SENTENCE})
    assert status == 202
    received: list[np.ndarray] = []
    loud = quiet_run = 0
    async with asyncio.timeout(15):
        while loud < 20 or quiet_run < 25:  # until speech went by and 0.5 s of silence is back
            chunk = mono(await frames.get())
            received.append(chunk)
            rms = float(np.sqrt(np.mean(chunk**2)))
            loud += rms > 0.01
            quiet_run = quiet_run + 1 if rms < 1e-3 else 0
    audio = np.concatenate(received)
    assert loud * 0.02 > 1.0  # more than a second of speech arrived
    heard = await asyncio.to_thread(transcribe, audio, 48000)
    assert word_error_rate(SENTENCE, heard) <= 0.5, heard

    server_room = live_server.server.rooms.get(room["id"])
    assert len(server_room.listeners) == 1
    status, _, _ = await asyncio.to_thread(live_server.request, "DELETE", location, token=room["listener_grant"])
    assert status == 200
    assert len(server_room.listeners) == 0
    await pc.close()


async def test_vanished_listener_is_cleaned_up(live_server: Any) -> None:
    _, room = await asyncio.to_thread(live_server.json, "POST", "/api/rooms", {"name": "vanish-rtc"})
    pc, _, frames = await join(live_server, room["id"], room["listener_grant"])
    await asyncio.wait_for(frames.get(), 10)
    server_room = live_server.server.rooms.get(room["id"])
    assert len(server_room.listeners) == 1
    await pc.close()  # DTLS close_notify / ICE ends: the server notices and drops the session
    for _ in range(100):
        if not server_room.listeners:
            break
        await asyncio.sleep(0.1)
    assert not server_room.listeners and not server_room.fanout.tracks


def test_whep_refuses_bad_offers_and_wrong_grants(live_server: Any) -> None:
    _, room = live_server.json("POST", "/api/rooms", {"name": "whep-errors"})
    _, other = live_server.json("POST", "/api/rooms", {"name": "other"})
    path = f"/rooms/{room['id']}/whep"
    grant = room["listener_grant"]
    assert live_server.request("POST", path, token=grant, content_type="application/sdp", raw=b"not sdp")[0] == 400
    assert live_server.request("POST", path, token=grant, content_type="text/plain", raw=b"v=0")[0] == 415
    assert live_server.request("POST", path, token="", content_type="application/sdp", raw=b"v=0")[0] == 401
    wrong_room = other["listener_grant"]
    assert live_server.request("POST", path, token=wrong_room, content_type="application/sdp", raw=b"v=0")[0] == 403
    assert live_server.request("DELETE", f"{path}/nope", token=grant)[0] == 404
    assert not live_server.server.rooms.get(room["id"]).listeners  # nothing half-made left behind


def test_remote_candidates_outside_the_allowed_addresses_are_dropped() -> None:
    configure_ice_addresses(["127.0.0.1"])  # as every test server does (alone, this test ran with none set)
    sdp = "\r\n".join([
        "v=0",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host",
        "a=candidate:2 1 udp 2130706431 10.1.2.3 50001 typ host",
        "a=candidate:3 1 udp 2130706431 abcd.local 50002 typ host",
        "a=candidate:4 1 udp 33562623 198.51.100.7 50003 typ relay raddr 0.0.0.0 rport 0",
        "a=end-of-candidates",
    ]) + "\r\n"
    kept = filter_remote_candidates(sdp)
    assert "127.0.0.1" in kept and "10.1.2.3" not in kept and ".local" not in kept and "end-of-candidates" in kept
    assert "198.51.100.7 50003 typ relay" in kept  # on a TURN server: reachable through it whatever the list says


async def test_host_microphone_reaches_the_server_as_16k_audio(live_server: Any) -> None:
    from aiortc.mediastreams import AudioStreamTrack

    _, room = await asyncio.to_thread(live_server.json, "POST", "/api/rooms", {"name": "mic"})
    server_room = live_server.server.rooms.get(room["id"])
    received: list[np.ndarray] = []
    server_room.host_audio.append(received.append)

    class Tone(AudioStreamTrack):
        """aiortc's paced silence track, with a 440 Hz tone instead of zeros."""

        async def recv(self) -> Any:
            frame = await super().recv()
            n = frame.samples
            t = (frame.pts + np.arange(n)) / frame.sample_rate
            pcm = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16).reshape(1, -1)
            out = type(frame).from_ndarray(pcm, format="s16", layout="mono")
            out.sample_rate, out.pts, out.time_base = frame.sample_rate, frame.pts, frame.time_base
            return out

    pc = RTCPeerConnection()
    pc.addTrack(Tone())
    await pc.setLocalDescription(await pc.createOffer())
    grant_status, grant = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{room['id']}/grants",
                                                  {"role": "host"})
    assert grant_status == 201
    # a listener grant may not send the host's microphone
    status, _, _ = await asyncio.to_thread(live_server.request, "POST", f"/rooms/{room['id']}/whip",
                                           token=room["listener_grant"], content_type="application/sdp",
                                           raw=pc.localDescription.sdp.encode())
    assert status == 403
    status, headers, answer = await asyncio.to_thread(
        live_server.request, "POST", f"/rooms/{room['id']}/whip", token=grant["grant"],
        content_type="application/sdp", raw=pc.localDescription.sdp.encode())
    assert status == 201, answer
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.decode(), type="answer"))
    async with asyncio.timeout(15):
        while sum(b.size for b in received) < 16000:
            await asyncio.sleep(0.05)
    audio = np.concatenate(received)[-8000:]
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    assert abs(np.argmax(spectrum) * 16000 / audio.size - 440) < 5
    status, _, _ = await asyncio.to_thread(live_server.request, "DELETE", headers["location"], token=grant["grant"])
    assert status == 200 and server_room.host_mic is None
    await pc.close()


@needs_shared("speech", "debian_codec2_examples__speech_orig_16k.wav")
async def test_host_speech_on_the_microphone_makes_the_cohost_yield(live_server: Any) -> None:
    """Real speech into the host microphone (aiortc peer) -> silero VAD -> the co-host yields."""
    from aiortc.mediastreams import AudioStreamTrack

    from conftest import SHARED
    from voxroom.models.audio_decode import decode_audio

    speech = decode_audio(SHARED / "speech" / "debian_codec2_examples__speech_orig_16k.wav", sample_rate=48000).samples
    _, room = await asyncio.to_thread(live_server.json, "POST", "/api/rooms", {"name": "vad"})
    server_room = live_server.server.rooms.get(room["id"])
    changes: list[bool] = []
    server_room.events.subscribe(lambda e: changes.append(e.speaking) if isinstance(e, HostSpeaking) else None)

    class Speech(AudioStreamTrack):
        """Paced 20 ms frames: 3 s of the recording, then silence."""

        sent = 0

        async def recv(self) -> Any:
            frame = await super().recv()  # paces us every 20 ms (its own frames are 8 kHz silence)
            start, self.sent = self.sent, self.sent + 960
            chunk = speech[start:start + 960] if start < 48000 * 3 else np.zeros(0, np.float32)
            pcm = np.zeros(960, np.int16)
            pcm[: len(chunk)] = (chunk * 32767).astype(np.int16)
            out = type(frame).from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            out.sample_rate, out.pts, out.time_base = 48000, start, fractions.Fraction(1, 48000)
            return out

    pc = RTCPeerConnection()
    pc.addTrack(Speech())
    await pc.setLocalDescription(await pc.createOffer())
    _, grant = await asyncio.to_thread(live_server.json, "POST", f"/api/rooms/{room['id']}/grants", {"role": "host"})
    status, _, answer = await asyncio.to_thread(
        live_server.request, "POST", f"/rooms/{room['id']}/whip", token=grant["grant"],
        content_type="application/sdp", raw=pc.localDescription.sdp.encode())
    assert status == 201
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.decode(), type="answer"))
    async with asyncio.timeout(20):
        while changes[:2] != [True, False]:
            await asyncio.sleep(0.05)
    assert server_room.cohost.agent.turns.interruptions >= 1
    await pc.close()
