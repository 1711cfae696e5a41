"""Listeners served by voxroom alone vs through Janus, printed as figures (not a test).

N aiortc listeners join a room directly (WHEP), then N subscribe to the same room through Janus (the
room publishes once over WHIP to simple-whip-server, Janus fans out), while the co-host speaks. Each
listener's inbound RTP stats say how many packets it lost; a listener counts as lossless when it
received packets and lost none. voxroom, Janus, simple-whip-server and every listener share this
machine, so the figures say how far one box goes, not what a separate SFU host would do.

Janus never gathers loopback, so the run happens inside a private network namespace (root; see
tests/janus_sfu.py). Needs what the SFU tests need: janus, node and build/simple-whip-server (.ci/run).

Run: python bench/sfu_fanout.py [--listeners 50] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import janus_sfu  # noqa: E402  (the test helpers that start Janus and simple-whip-server)
from voxroom.models.piper_voice import PiperVoiceEngine  # noqa: E402
from voxroom.streaming.config import ServerConfig  # noqa: E402
from voxroom.streaming.embedded import serve_in_thread  # noqa: E402
from voxroom.streaming.webrtc import filter_remote_candidates  # noqa: E402

TEXT = ("Welcome back everyone, this is the co-host reading a long announcement so that every listener "
        "has something to hear for a while. ") * 6


def request(base: str, method: str, path: str, token: str, body: bytes | None = None,
            content_type: str = "application/json") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(base + path, data=body, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=30) as res:
        return res.status, dict(res.headers), res.read()


async def drain(pc: RTCPeerConnection) -> None:
    @pc.on("track")
    def on_track(track: Any) -> None:
        async def pump() -> None:
            while True:
                try:
                    await track.recv()
                except Exception:
                    return
        asyncio.ensure_future(pump())


async def whep_listener(base: str, room_id: str, grant: str) -> RTCPeerConnection:
    pc = RTCPeerConnection()
    await drain(pc)
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    _, _, answer = await asyncio.to_thread(request, base, "POST", f"/rooms/{room_id}/whep", grant,
                                           pc.localDescription.sdp.encode(), "application/sdp")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=filter_remote_candidates(answer.decode()), type="answer"))
    return pc


async def losses(pcs: list[RTCPeerConnection]) -> list[tuple[int, int]]:
    """(packets received, packets lost) per listener."""
    figures = []
    for pc in pcs:
        received = lost = 0
        for receiver in pc.getReceivers():
            for stats in (await receiver.getStats()).values():
                if stats.type == "inbound-rtp":
                    received, lost = stats.packetsReceived, stats.packetsLost
        figures.append((received, lost))
    return figures


async def listen(base: str, token: str, room_id: str, pcs: list[RTCPeerConnection], seconds: float) -> int:
    await asyncio.sleep(2)  # ICE and DTLS settle
    await asyncio.to_thread(request, base, "POST", f"/api/rooms/{room_id}/say", token,
                            json.dumps({"text": TEXT}).encode())
    await asyncio.sleep(seconds)
    figures = await losses(pcs)
    for pc in pcs:
        await pc.close()
    lossless = sum(received > 0 and lost == 0 for received, lost in figures)
    total_lost = sum(lost for _, lost in figures)
    print(f"  {len(pcs)} listeners: {lossless} lossless, {total_lost} packets lost in all, "
          f"{min((r for r, _ in figures), default=0)} packets received by the least served")
    return lossless


async def run(n: int, seconds: float) -> tuple[int, int]:
    engine = PiperVoiceEngine()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "janus"
        sfu = janus_sfu.JanusSfu(folder, janus_sfu.free_port(), janus_sfu.free_port(), janus_sfu.free_port())
        janus_sfu.write_janus_config(folder, sfu.http_port, sfu.ws_port)
        config = ServerConfig(host="127.0.0.1", port=0, data_dir=Path(tmp) / "voxroom",
                              ice_addresses=["127.0.0.1", janus_sfu.PRIVATE_ADDRESS])
        try:
            sfu.start_janus()
            sfu.start_whip_server()
            endpoint = sfu.create_endpoint("bench")
            with serve_in_thread(config, engine) as server:
                base, token = f"http://127.0.0.1:{server.port}", server.server.owner_token
                room = json.loads(request(base, "POST", "/api/rooms", token, b'{"name": "bench"}')[2])
                print(f"voxroom alone: {n} WHEP listeners, {seconds:.0f} s of speech")
                t = time.monotonic()
                direct = [await whep_listener(base, room["id"], room["listener_grant"]) for _ in range(n)]
                print(f"  joined in {time.monotonic() - t:.1f} s")
                alone = await listen(base, token, room["id"], direct, seconds)

                body = json.dumps({"endpoints": [{"url": endpoint, "token": janus_sfu.WHIP_TOKEN}]}).encode()
                request(base, "PUT", f"/api/rooms/{room['id']}/sfu", token, body)
                print(f"through Janus: {n} VideoRoom subscribers, {seconds:.0f} s of speech")
                t = time.monotonic()
                subscribers = [(await janus_sfu.subscribe(sfu))[0] for _ in range(n)]
                print(f"  joined in {time.monotonic() - t:.1f} s")
                through = await listen(base, token, room["id"], subscribers, seconds)
        finally:
            sfu.close()
    return alone, through


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listeners", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    if not janus_sfu.inside_private_network():
        setup = janus_sfu.NAMESPACE_SETUP
        command = f"{setup} && exec {sys.executable} {Path(__file__).resolve()} " \
                  f"--listeners {args.listeners} --seconds {args.seconds}"
        sys.exit(subprocess.run(["unshare", "-n", "sh", "-c", command],
                                env={**os.environ, janus_sfu.INSIDE: "1"}).returncode)
    alone, through = asyncio.run(run(args.listeners, args.seconds))
    print(f"listeners with zero loss: voxroom alone {alone}, through Janus {through}")


if __name__ == "__main__":
    main()
