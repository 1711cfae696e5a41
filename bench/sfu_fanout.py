"""Listeners served by voxroom alone vs through Janus, printed as figures (not a test).

N aiortc listeners join a room directly (WHEP), then N subscribe to the same room through Janus (the
room publishes once over WHIP to simple-whip-server, Janus fans out), while the co-host speaks. Each
listener's inbound RTP stats say how many packets it lost; a listener counts as lossless when, over
the speaking time, it lost none and received at least 95 % of the packets sent in that time (a
listener voxroom found too slow has its oldest packets dropped before they are numbered: no RTP gap
shows them, only the missing count). voxroom, Janus, simple-whip-server and every listener share this
machine, so the figures say how far one box goes, not what a separate SFU host would do.

Janus never gathers loopback, so the run happens inside a private network namespace (root; see
tests/janus_sfu.py). Needs what the SFU tests need: janus, node and build/simple-whip-server (.ci/run).

Run: python bench/sfu_fanout.py [--listeners 50] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
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

WORKERS = max(1, (os.cpu_count() or 2) - 1)  # listener processes; voxroom and Janus keep the rest
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


def measure(kind: str, target: dict[str, Any], count: int, start_at: float, seconds: float) -> list[tuple[int, int]]:
    """In a worker process: join `count` listeners, then (received, lost) per listener over the window."""
    async def go() -> list[tuple[int, int]]:
        if kind == "whep":
            pcs = [await whep_listener(target["base"], target["room"], target["grant"]) for _ in range(count)]
        else:
            sfu = janus_sfu.JanusSfu(Path("/nonexistent"), target["http_port"], 0, 0)
            pcs = [(await janus_sfu.subscribe(sfu))[0] for _ in range(count)]
        await asyncio.sleep(max(0.0, start_at - time.time()))
        before = await losses(pcs)
        await asyncio.sleep(seconds)
        after = await losses(pcs)
        for pc in pcs:
            await pc.close()
        return [(r1 - r0, l1 - l0) for (r0, l0), (r1, l1) in zip(before, after, strict=True)]

    from voxroom.streaming.webrtc import configure_ice_addresses

    configure_ice_addresses(["127.0.0.1", janus_sfu.PRIVATE_ADDRESS])
    return asyncio.run(go())


def listen(kind: str, target: dict[str, Any], n: int, seconds: float, say: Any) -> int:
    """n listeners spread over worker processes (so that listening does not share voxroom's interpreter)."""
    workers = min(WORKERS, n)
    shares = [n // workers + (i < n % workers) for i in range(workers)]
    start_at = time.time() + 5 + n * 0.25  # time to join everyone
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(measure, kind, target, share, start_at, seconds) for share in shares]
        time.sleep(max(0.0, start_at - time.time() - 0.5))
        say()
        got = [figure for future in futures for figure in future.result()]
    expected = seconds * 50  # 20 ms packets
    lossless = sum(lost == 0 and received >= 0.95 * expected for received, lost in got)
    print(f"  {len(got)} listeners: {lossless} lossless; {sum(lost for _, lost in got)} packets lost in all; "
          f"least served received {min((r for r, _ in got), default=0)} of {expected:.0f} packets")
    return lossless


def run(n: int, seconds: float) -> tuple[int, int]:
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

                def say() -> None:
                    request(base, "POST", f"/api/rooms/{room['id']}/say", token, json.dumps({"text": TEXT}).encode())

                print(f"voxroom alone: {n} WHEP listeners, {seconds:.0f} s of speech")
                alone = listen("whep", {"base": base, "room": room["id"], "grant": room["listener_grant"]},
                               n, seconds, say)

                body = json.dumps({"endpoints": [{"url": endpoint, "token": janus_sfu.WHIP_TOKEN}]}).encode()
                request(base, "PUT", f"/api/rooms/{room['id']}/sfu", token, body)
                print(f"through Janus: {n} VideoRoom subscribers, {seconds:.0f} s of speech")
                through = listen("janus", {"http_port": sfu.http_port}, n, seconds, say)
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
    alone, through = run(args.listeners, args.seconds)
    print(f"listeners with zero loss: voxroom alone {alone}, through Janus {through}")


if __name__ == "__main__":
    main()
