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

For each N (default 10, 50, 100, 200) it prints, voxroom alone and through Janus: listeners without
loss, packets lost, jitter (how late packets arrive, RFC 3550's estimate, in ms), join time (offer
to ICE + DTLS connected), and the CPU that voxroom's process and Janus' process used during the
window, per listener. The last line gives, for each, the largest N at which every listener was
lossless.

Run: python bench/sfu_fanout.py [--listeners 10,50,100,200] [--seconds 15]
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


async def connected(pc: RTCPeerConnection, since: float) -> float:
    """Seconds from `since` until the peer is connected (ICE and DTLS), at most 30."""
    for _ in range(600):
        if pc.connectionState == "connected":
            break
        await asyncio.sleep(0.05)
    return time.monotonic() - since


async def inbound(pcs: list[RTCPeerConnection]) -> list[tuple[int, int, float]]:
    """(packets received, packets lost, jitter in ms) per listener."""
    figures = []
    for pc in pcs:
        received = lost = 0
        jitter_ms = 0.0
        for receiver in pc.getReceivers():
            for stats in (await receiver.getStats()).values():
                if stats.type == "inbound-rtp":
                    received, lost = stats.packetsReceived, stats.packetsLost
                    jitter_ms = stats.jitter / 48.0  # RTP timestamp units of Opus' 48 kHz clock
        figures.append((received, lost, jitter_ms))
    return figures


Figure = tuple[int, int, float, float]  # packets received, lost, jitter ms, join s


def measure(kind: str, target: dict[str, Any], count: int, start_at: float, seconds: float) -> list[Figure]:
    """In a worker process: join `count` listeners, then per listener (received, lost, jitter, join
    time) over the window."""
    async def go() -> list[Figure]:
        pcs, joins = [], []
        for _ in range(count):
            began = time.monotonic()
            if kind == "whep":
                pc = await whep_listener(target["base"], target["room"], target["grant"])
            else:
                sfu = janus_sfu.JanusSfu(Path("/nonexistent"), target["http_port"], 0, 0)
                pc = (await janus_sfu.subscribe(sfu))[0]
            joins.append(await connected(pc, began))
            pcs.append(pc)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        before = await inbound(pcs)
        await asyncio.sleep(seconds)
        after = await inbound(pcs)
        for pc in pcs:
            await pc.close()
        return [(r1 - r0, l1 - l0, jitter, join)
                for (r0, l0, _), (r1, l1, jitter), join in zip(before, after, joins, strict=True)]

    from voxroom.streaming.webrtc import configure_ice_addresses

    configure_ice_addresses(["127.0.0.1", janus_sfu.PRIVATE_ADDRESS])
    return asyncio.run(go())


def process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process has used (this one when `pid` is None)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def listen(kind: str, target: dict[str, Any], n: int, seconds: float, say: Any, janus_pid: int) -> bool:
    """n listeners spread over worker processes (so that listening does not share voxroom's interpreter);
    prints their figures; whether every one was lossless."""
    workers = min(WORKERS, n)
    shares = [n // workers + (i < n % workers) for i in range(workers)]
    start_at = time.time() + 5 + n * 0.3  # time to join everyone
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(measure, kind, target, share, start_at, seconds) for share in shares]
        time.sleep(max(0.0, start_at - time.time() - 0.5))
        say()
        time.sleep(max(0.0, start_at - time.time()))
        cpu0 = process_cpu_seconds(None), process_cpu_seconds(janus_pid)
        time.sleep(seconds)
        cpu1 = process_cpu_seconds(None), process_cpu_seconds(janus_pid)
        got = [figure for future in futures for figure in future.result()]
    expected = seconds * 50  # 20 ms packets
    lossless = sum(lost == 0 and received >= 0.95 * expected for received, lost, _, _ in got)
    voxroom_pct, janus_pct = ((b - a) / seconds * 100 for a, b in zip(cpu0, cpu1, strict=True))
    per = f"voxroom {voxroom_pct:.0f} % of a core ({voxroom_pct / n:.2f} per listener)"
    if kind == "janus":
        per += f", Janus {janus_pct:.0f} % ({janus_pct / n:.2f} per listener)"
    jitters, joins = [j for _, _, j, _ in got], [t for _, _, _, t in got]
    print(f"  N={n:<4} {lossless} of {len(got)} lossless, {sum(lost for _, lost, _, _ in got)} packets lost, "
          f"least served {min((r for r, _, _, _ in got), default=0)} of {expected:.0f}; "
          f"jitter median {median(jitters):.1f} ms (max {max(jitters, default=0):.1f}); "
          f"join median {median(joins):.2f} s (max {max(joins, default=0):.2f}); CPU {per}", flush=True)
    return lossless == n == len(got)


def run(counts: list[int], seconds: float) -> tuple[int, int]:
    """The largest N at which every listener was lossless: voxroom alone, through Janus."""
    engine = PiperVoiceEngine()
    best = {"whep": 0, "janus": 0}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "janus"
        sfu = janus_sfu.JanusSfu(folder, janus_sfu.free_port(), janus_sfu.free_port(), janus_sfu.free_port())
        janus_sfu.write_janus_config(folder, sfu.http_port, sfu.ws_port)
        config = ServerConfig(host="127.0.0.1", port=0, data_dir=Path(tmp) / "voxroom",
                              ice_addresses=["127.0.0.1", janus_sfu.PRIVATE_ADDRESS])
        try:
            sfu.start_janus()
            sfu.start_whip_server()
            assert sfu.janus is not None
            endpoint = sfu.create_endpoint("bench")
            with serve_in_thread(config, engine) as server:
                base, token = f"http://127.0.0.1:{server.port}", server.server.owner_token
                alone_room = json.loads(request(base, "POST", "/api/rooms", token, b'{"name": "alone"}')[2])
                sfu_room = json.loads(request(base, "POST", "/api/rooms", token, b'{"name": "through janus"}')[2])
                body = json.dumps({"endpoints": [{"url": endpoint, "token": janus_sfu.WHIP_TOKEN}]}).encode()
                request(base, "PUT", f"/api/rooms/{sfu_room['id']}/sfu", token, body)

                def say_in(room: dict[str, Any]) -> Any:
                    return lambda: request(base, "POST", f"/api/rooms/{room['id']}/say", token,
                                           json.dumps({"text": TEXT}).encode())

                whep_target = {"base": base, "room": alone_room["id"], "grant": alone_room["listener_grant"]}
                for kind, title, target, room in (
                        ("whep", "voxroom alone (WHEP listeners)", whep_target, alone_room),
                        ("janus", "through Janus (VideoRoom subscribers)", {"http_port": sfu.http_port}, sfu_room)):
                    print(f"{title}, {seconds:.0f} s of speech each:", flush=True)
                    for n in counts:
                        if listen(kind, target, n, seconds, say_in(room), sfu.janus.pid):
                            best[kind] = max(best[kind], n)
                    if kind == "whep":  # its queued speech would cost CPU during the Janus runs
                        request(base, "DELETE", f"/api/rooms/{alone_room['id']}", token)
        finally:
            sfu.close()
    return best["whep"], best["janus"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listeners", default="10,50,100,200", help="comma-separated listener counts")
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    counts = [int(n) for n in args.listeners.split(",") if n.strip()]
    if not janus_sfu.inside_private_network():
        setup = janus_sfu.NAMESPACE_SETUP
        command = f"{setup} && exec {sys.executable} {Path(__file__).resolve()} " \
                  f"--listeners {args.listeners} --seconds {args.seconds}"
        sys.exit(subprocess.run(["unshare", "-n", "sh", "-c", command],
                                env={**os.environ, janus_sfu.INSIDE: "1"}).returncode)
    alone, through = run(counts, args.seconds)
    print(f"listeners with zero loss: voxroom alone {alone}, through Janus {through}")


if __name__ == "__main__":
    main()
