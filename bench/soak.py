"""Soak test on demand (not a test): a real server under steady load with one room attacked.

For `--minutes` (default 10) after a warm-up (a tenth of that, at most 60 s) under the same load:
`--rooms` rooms (default 5), each with `--listeners` aiortc WHEP listeners (default 10) and the
co-host reading a steady chat. The first room is attacked from the start: a bot sends random bad
protocol messages, an upload storm POSTs random and corrupt files to /api/voices (with
`consent=true`), and a chat flood hits its chat. The server runs in this process; the listeners and
the attackers run in child processes (one per room's listeners, one for the attackers: their own
interpreters, as clients on other machines would), so that making bad input or decoding Opus does
not take the server's GIL.

Prints per-room pacer figures after the warm-up (GET /api/rooms/ID: late ticks, underruns, max lag)
and in it, the listeners' frames and lost connections, the server process's RSS at start, after
warm-up, in the middle, at the end and per minute, errors by code, and the tracebacks found in the
captured log; the last line is

    soak: underruns N, tracebacks N, rss growth N MB

(underruns after the warm-up summed over the rooms that are not attacked; tracebacks in the log;
RSS growth: the median of the server's RSS over the last minute minus that over the first minute
after the warm-up, sampled every 5 s, since analyses and speeches in flight swing it by tens of MB
from one moment to the next). Everything runs on 127.0.0.1.

Run: python bench/soak.py [--minutes 1]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import random
import statistics
import struct
import sys
import tempfile
import time
import tracemalloc
import urllib.error
import urllib.parse
import urllib.request
import wave
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the log capture tests use
from log_capture import LogCapture, capturing_logs, described  # noqa: E402

MAX_REPLY_S = 10.0
SENTENCES = [
    "Hello from the chat, how is everyone doing today?",
    "That last round was amazing.",
    "What game are we playing next?",
    "Greetings from Lisbon!",
    "The music is great tonight.",
    "Can you say hi to my friend?",
    "I just got here, what did I miss?",
]


# -- the server's log ----------------------------------------------------------------------------------
def rss_mb() -> float:
    from voxroom.streaming.native_memory import resident_bytes

    resident = resident_bytes()
    return resident / 2**20 if resident is not None else float("nan")


# -- HTTP ------------------------------------------------------------------------------------------------
def http(base: str, method: str, path: str, token: str, body: bytes | None = None,
         content_type: str = "application/json", headers: dict[str, str] | None = None,
         timeout: float = 60.0) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(base + path, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", content_type)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, dict(res.headers), res.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def error_code(status: int, raw: bytes) -> str:
    try:
        answer = json.loads(raw)
    except ValueError:
        return f"{status}:not-json"
    code = answer.get("code") if isinstance(answer, dict) else None
    return f"{status}:{code}"


@dataclass
class Tally:
    errors: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.counts["problems"] += 1
        if len(self.problems) < 10:
            self.problems.append(text[:300])


# -- listeners (child processes) ----------------------------------------------------------------------
def listeners_main(base: str, joins: list[tuple[str, str]], seconds: float, results: Any, stop: Any) -> None:
    """Runs in a child process: WHEP listeners that read every frame until `stop` (at most `seconds`),
    then leave cleanly."""
    asyncio.run(_listen_all(base, joins, seconds, results, stop))


async def _listen_all(base: str, joins: list[tuple[str, str]], seconds: float, results: Any, stop: Any) -> None:
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from voxroom.streaming.webrtc import configure_ice_addresses

    # aioice never offers 127.0.0.1 and the server drops remote candidates outside its list: in this
    # process (not the server's, which patched its own aioice) the listeners offer loopback too
    configure_ice_addresses(["127.0.0.1"])
    frames: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    connecting = asyncio.Semaphore(3)  # the server allows 4 listeners still connecting per address
    peers: list[tuple[Any, str, str]] = []
    lost: list[int] = []  # seconds into the run at which a listener's connection failed or was closed
    pumps: list[asyncio.Task[None]] = []

    async def join(room: str, grant: str) -> None:
        async with connecting:
            for _attempt in range(40):
                pc = RTCPeerConnection()
                pc.addTransceiver("audio", direction="recvonly")
                connected = asyncio.Event()

                @pc.on("connectionstatechange")
                def on_state(pc: Any = pc) -> None:
                    if pc.connectionState in ("failed", "closed") and not stop.is_set():
                        lost.append(round(time.monotonic() - started))

                @pc.on("track")
                def on_track(track: Any, room: str = room, connected: asyncio.Event = connected) -> None:
                    async def pump() -> None:
                        for _ in range(10_000_000):  # ~55 hours of 20 ms frames; the track ends it
                            try:
                                await track.recv()
                            except Exception:
                                return
                            frames[room] += 1
                            connected.set()
                    pumps.append(asyncio.ensure_future(pump()))

                await pc.setLocalDescription(await pc.createOffer())
                status, headers, answer = await asyncio.to_thread(
                    http, base, "POST", f"/rooms/{room}/whep", grant, pc.localDescription.sdp.encode(),
                    "application/sdp")
                if status == 429:
                    failures["whep:429 (retried)"] += 1
                    await pc.close()
                    await asyncio.sleep(0.5)
                    continue
                if status != 201:
                    failures[f"whep:{status}"] += 1
                    await pc.close()
                    return
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.decode(), type="answer"))
                peers.append((pc, headers.get("location") or headers.get("Location") or "", grant))
                try:
                    await asyncio.wait_for(connected.wait(), 15)
                except TimeoutError:
                    failures["no audio within 15 s"] += 1
                return
            failures["whep: gave up after 40 tries"] += 1

    started = time.monotonic()
    await asyncio.gather(*(join(room, grant) for room, grant in joins))
    joined_s = time.monotonic() - started
    results.put({"joined": len(peers), "joined_s": round(joined_s, 1)})
    for _ in range(int(seconds / 0.5) + 1):
        if stop.is_set():
            break
        await asyncio.sleep(0.5)
    for pc, location, grant in peers:
        if location:
            status, _, _ = await asyncio.to_thread(http, base, "DELETE", location, grant)
            if status != 200:
                failures[f"leave:{status}"] += 1
        await pc.close()
    for task in pumps:
        task.cancel()
    results.put({"frames": dict(frames), "failures": dict(failures), "connections failed or closed": len(lost),
                 "failed at s": lost[:20]})


# -- attackers ------------------------------------------------------------------------------------------
def random_json(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(8 if depth < 3 else 5)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.randint(-(10**30), 10**30)
    if pick == 3:
        return rng.uniform(-1e300, 1e300)
    if pick == 4:
        return "".join(chr(rng.randrange(1, 0xD7FF)) for _ in range(rng.randrange(40)))
    if pick == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["type", "id", "text", "room", "voice", "lang", "speed", "version", "token", "event", "x"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def bad_message(rng: random.Random, room: str) -> str | bytes:
    """One message the protocol must refuse with an `error` (never a say or ping it accepts)."""
    kind = rng.randrange(9)
    if kind == 0:
        value = random_json(rng)
        if isinstance(value, dict) and value.get("type") in ("ping", "say"):
            value["type"] = 7
        return json.dumps(value)
    if kind == 1:
        return json.dumps({"type": rng.choice(["say", "cancel", "ping", "chat", "hello"]), "id": rng.choice([3, [], {}]),
                           "text": random_json(rng)})
    if kind == 2:
        number = rng.choice(["9" * rng.randint(31, 3000), "NaN", "Infinity", "-Infinity", "1e999"])
        return '{"type":"say","id":"n","text":"hi","speed":' + number + "}"
    if kind == 3:
        return '{"type":"say","id":"s","text":"' + rng.choice(["\\ud800", "\\udfff", "a\\ud83d"]) + '"}'
    if kind == 4:
        return json.dumps({"type": "say", "id": "long", "text": "a" * rng.randint(2001, 50_000)})
    if kind == 5:
        return json.dumps({"type": "ping", "id": "p" * rng.randint(70_000, 200_000)})
    if kind == 6:
        return rng.randbytes(rng.randrange(1, 4000))
    if kind == 7:
        return json.dumps({"type": "chat", "room": room, "event": {"type": rng.choice(["idle", "nope", 3])}})
    return "[" * rng.randint(100, 60_000)


async def fuzzing_bot(ws_url: str, token: str, room: str, deadline: float, tally: Tally, seed: int) -> None:
    from websockets.asyncio.client import connect

    rng = random.Random(seed)
    sent = 0
    for _ in range(10_000_000):  # bounded in count too; the deadline ends it
        if time.monotonic() >= deadline:
            break
        async with connect(ws_url, max_size=2**24) as ws:
            await ws.send(json.dumps({"type": "hello", "version": 1, "token": token}))
            await asyncio.wait_for(ws.recv(), MAX_REPLY_S)
            for _ in range(1_000_000):
                if time.monotonic() >= deadline:
                    return
                if rng.random() < 0.01:  # a text frame that is not UTF-8: the server closes with 1007
                    await ws.send(b"\xff\xfe" + rng.randbytes(20), text=True)
                    try:
                        await asyncio.wait_for(ws.recv(), MAX_REPLY_S)
                        tally.problem("invalid UTF-8 did not close the connection")
                    except Exception:
                        tally.errors[f"ws:close {ws.close_code}"] += 1
                    break
                data = bad_message(rng, room)
                await ws.send(data)
                sent += 1
                reply = await asyncio.wait_for(ws.recv(), MAX_REPLY_S)
                msg = json.loads(reply) if isinstance(reply, str) else {}
                if msg.get("type") == "error" and msg.get("code"):
                    tally.errors[f"ws:{msg['code']}"] += 1
                else:
                    tally.problem(f"bot: no error for {data[:120]!r}: {str(reply)[:120]}")
                if sent % 50 == 0:
                    await ws.send(json.dumps({"type": "ping", "id": "alive"}))
                    if json.loads(await asyncio.wait_for(ws.recv(), MAX_REPLY_S)) != {"type": "pong", "id": "alive"}:
                        tally.problem("bot: no pong after bad messages")
                await asyncio.sleep(0.02)
        tally.counts["bot reconnects"] += 1


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


def corrupt_upload(rng: random.Random) -> tuple[bytes, str]:
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, 0.1, 16000 * rng.randint(1, 3)).astype(np.float32)
    good = wav_bytes(noise, 16000)
    kind = rng.randrange(8)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 65536)), "random.bin"
    if kind == 1:
        return good[: rng.randrange(44, len(good))], "truncated.wav"
    if kind == 2:  # a header claiming an absurd sample rate / channel count
        header = bytearray(good[:44])
        struct.pack_into("<H", header, 22, rng.choice([0, 9, 200, 65535]))
        struct.pack_into("<I", header, 24, rng.choice([0, 1, 3999, 10**9]))
        return bytes(header) + good[44:], "header.wav"
    if kind == 3:
        data = bytearray(good)
        for _ in range(rng.randrange(1, 200)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data), "flipped.wav"
    if kind == 4:
        return rng.choice([b"ID3", b"OggS", b"fLaC", b"\x1aE\xdf\xa3", b"RIFF"]) + rng.randbytes(5000), "magic.mp3"
    if kind == 5:
        return b"", "empty.wav"
    if kind == 6:
        return good, "noise.wav"  # decodes and is analysed (the VAD finds no speech)
    return good[:44] + rng.randbytes(4000), "junk.wav"


async def upload_storm(base: str, token: str, deadline: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(10_000_000):  # bounded in count too; the deadline ends it
        if time.monotonic() >= deadline:
            break
        body, name = corrupt_upload(rng)
        query = urllib.parse.urlencode({"name": f"storm {rng.randrange(1000)}", "lang": rng.choice(["en", "zh", "xx"]),
                                        "consent": rng.choice(["true", "true", "true", "false"])})
        status, _, raw = await asyncio.to_thread(http, base, "POST", f"/api/voices?{query}", token, body,
                                                 "application/octet-stream", {"X-Filename": name})
        tally.counts["uploads"] += 1
        if status >= 500:
            tally.problem(f"upload {name}: {status} {raw[:200]!r}")
        tally.errors[f"upload:{error_code(status, raw)}" if status >= 400 else f"upload:{status}"] += 1
        await asyncio.sleep(0.1)


async def chat_flood(base: str, token: str, room: str, deadline: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(10_000_000):  # bounded in count too; the deadline ends it
        if time.monotonic() >= deadline:
            break
        if rng.random() < 0.8:
            event: Any = {"type": rng.choice(["message", "question", "gift", "follow"]), "user": f"flood{rng.randrange(500)}",
                          "text": rng.choice(SENTENCES) + " " + "spam " * rng.randrange(50),
                          "amount": rng.choice([0, 1, 5, 1e9])}
        else:
            event = random_json(rng)
        status, _, raw = await asyncio.to_thread(http, base, "POST", f"/api/rooms/{room}/chat", token,
                                                 json.dumps(event).encode())
        tally.counts["flood posts"] += 1
        if status >= 500:
            tally.problem(f"chat flood: {status} {raw[:200]!r}")
        if status >= 400:
            tally.errors[f"flood:{error_code(status, raw)}"] += 1
        await asyncio.sleep(0.04)


async def steady_chat(base: str, token: str, room: str, deadline: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    n = 0
    for _ in range(10_000_000):  # bounded in count too; the deadline ends it
        if time.monotonic() >= deadline:
            break
        n += 1
        event = {"type": "message", "user": f"viewer{n}", "text": rng.choice(SENTENCES)}
        status, _, raw = await asyncio.to_thread(http, base, "POST", f"/api/rooms/{room}/chat", token,
                                                 json.dumps(event).encode())
        if status != 202:
            tally.errors[f"chat:{error_code(status, raw)}"] += 1
        await asyncio.sleep(4.0)


def attackers_main(base: str, ws_url: str, token: str, room: str, seconds: float, seed: int, results: Any) -> None:
    """Runs in a child process, as an attacker on another machine would: its own interpreter, so that
    making bad input does not take the server's GIL. Puts its `Tally` on `results` when done."""
    async def attack() -> Tally:
        tally = Tally()
        deadline = time.monotonic() + seconds
        tasks = [fuzzing_bot(ws_url, token, room, deadline, tally, seed),
                 upload_storm(base, token, deadline, tally, seed + 1),
                 chat_flood(base, token, room, deadline, tally, seed + 2)]
        for name, outcome in zip(("fuzzing bot", "upload storm", "chat flood"),
                                 await asyncio.gather(*tasks, return_exceptions=True), strict=True):
            if isinstance(outcome, BaseException):  # an attacker that broke is a finding, not the end
                tally.problem(f"{name}: {type(outcome).__name__}: {outcome}")
        return tally

    results.put(asyncio.run(attack()))


# -- the run --------------------------------------------------------------------------------------------
def pacer(base: str, token: str, room: str) -> dict[str, Any]:
    """The room's pacer figures, and its listener count as `listeners`."""
    status, _, raw = http(base, "GET", f"/api/rooms/{room}", token)
    if status != 200:
        return {"error": status}
    answer = json.loads(raw)
    return {**answer["pacer"], "listeners": answer.get("listeners")}


async def soak(args: argparse.Namespace, base: str, ws_url: str, token: str, capture: LogCapture) -> tuple[int, int, float]:
    tally = Tally()
    rss: dict[str, float] = {"start": rss_mb()}
    rooms: list[dict[str, Any]] = []
    for i in range(args.rooms):
        status, _, raw = http(base, "POST", "/api/rooms", token, json.dumps({"name": f"soak {i}"}).encode())
        assert status == 201, raw
        rooms.append(json.loads(raw))
    attacked = rooms[0]["id"]
    total_s = args.minutes * 60
    warmup_s = min(60.0, max(10.0, total_s * 0.1))

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    stop = ctx.Event()
    # One process per room's listeners: a browser answers ICE consent checks within milliseconds, and
    # one interpreter decoding every listener's Opus falls seconds behind on 2 cores (the server then
    # rightly drops listeners that stopped answering).
    children = [ctx.Process(target=listeners_main, daemon=True,
                            args=(base, [(room["id"], room["listener_grant"])] * args.listeners,
                                  total_s + warmup_s + 600, results, stop)) for room in rooms]
    for child in children:
        child.start()
    joined = [await asyncio.to_thread(results.get, True, 180) for _ in children]
    print(f"listeners: {sum(j['joined'] for j in joined)} of {args.rooms * args.listeners} joined in "
          f"{max(j['joined_s'] for j in joined)} s, {len(children)} processes", flush=True)

    # The whole load, attack included, runs from the start; the warm-up is its first part, so that what
    # loads once (the enrollment models, the attack's code paths, the allocator's arenas) is in the
    # baseline, and what is counted afterwards is what the load keeps or loses.
    start = time.monotonic()
    warm_end = start + warmup_s
    deadline = warm_end + total_s
    chats = [asyncio.create_task(steady_chat(base, token, room["id"], deadline, tally, i))
             for i, room in enumerate(rooms)]
    attack_results = ctx.Queue()
    attackers = None if args.no_attack else ctx.Process(
        target=attackers_main, args=(base, ws_url, token, attacked, warmup_s + total_s, args.seed, attack_results),
        daemon=True)
    if attackers is not None:
        attackers.start()
    await asyncio.sleep(max(0.0, warm_end - time.monotonic()))
    rss["after warm-up"] = rss_mb()
    baseline = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
    warm = {room["id"]: await asyncio.to_thread(pacer, base, token, room["id"]) for room in rooms}
    samples: list[tuple[float, float]] = []  # (seconds after the warm-up, RSS) every 5 s
    middle = warm_end + total_s / 2
    for _ in range(int(total_s / 5) + 10):
        now = time.monotonic()
        if now >= deadline:
            break
        if "middle" not in rss and now >= middle:
            rss["middle"] = rss_mb()
        samples.append((now - warm_end, rss_mb()))
        await asyncio.sleep(min(5.0, deadline - now))
    for task in chats:
        try:
            await asyncio.wait_for(task, MAX_REPLY_S * 3)
        except Exception as exc:  # a client that broke is a finding, not the end of the report
            tally.problem(f"steady chat: {type(exc).__name__}: {exc}")
    if attackers is not None:
        try:
            attack: Tally = await asyncio.to_thread(attack_results.get, True, MAX_REPLY_S * 6)
        except Exception as exc:
            tally.problem(f"the attackers did not report: {type(exc).__name__}")
        else:
            tally.errors.update(attack.errors)
            tally.counts.update(attack.counts)
            for text in attack.problems:
                tally.problem(text)
        attackers.join(10)
    stats = {room["id"]: await asyncio.to_thread(pacer, base, token, room["id"]) for room in rooms}
    rss.setdefault("middle", rss_mb())
    rss["end"] = rss_mb()
    if baseline is not None:
        grown = tracemalloc.take_snapshot().compare_to(baseline, "lineno")
        print(f"python allocations after warm-up: {sum(d.size_diff for d in grown) / 2**20:+.1f} MB; most grown:")
        for diff in grown[:10]:
            print(f"  {diff.size_diff / 2**20:+.1f} MB in {diff.count_diff:+d} blocks at {diff.traceback[0]}")
    stop.set()
    heard: dict[str, Any] = {"frames": Counter(), "failures": Counter(), "connections failed or closed": 0,
                             "failed at s": []}
    for _ in children:
        part = await asyncio.to_thread(results.get, True, 120)
        heard["frames"].update(part["frames"])
        heard["failures"].update(part["failures"])
        heard["connections failed or closed"] += part["connections failed or closed"]
        heard["failed at s"] = sorted(heard["failed at s"] + part["failed at s"])[:20]
    for child in children:
        child.join(30)

    print(f"soak: {args.minutes:g} min after a {warmup_s:.0f} s warm-up under the same load, {args.rooms} rooms x "
          f"{args.listeners} listeners" + (", no attack" if args.no_attack else ", room 0 attacked from the start"))
    underruns = 0
    for room in rooms:
        s, w = stats[room["id"]], warm[room["id"]]
        role = "attacked" if room["id"] == attacked and not args.no_attack else "steady"
        frames = heard["frames"].get(room["id"], 0)
        after = {key: int(s.get(key) or 0) - int(w.get(key) or 0) for key in ("ticks", "late_ticks", "underruns")}
        print(f"room {room['name']} ({role}), after warm-up: ticks {after['ticks']}, late ticks {after['late_ticks']}, "
              f"underruns {after['underruns']}; in warm-up: late ticks {w.get('late_ticks')}, underruns "
              f"{w.get('underruns')}; max lag {float(s.get('max_lag_ms') or 0):.0f} ms; listener frames {frames} "
              f"({frames / max(1, args.listeners):.0f} each); listeners at the end {s.get('listeners')}")
        if role == "steady":
            underruns += after["underruns"]
    print("listeners:", {k: dict(v) if isinstance(v, Counter) else v for k, v in heard.items() if k != "frames"})
    print("rss MB:", ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))
    minutes = [statistics.median(v for t, v in samples if m * 60 <= t < (m + 1) * 60)
               for m in range(int(total_s // 60)) if any(m * 60 <= t < (m + 1) * 60 for t, _ in samples)]
    print("rss MB after warm-up, median of each minute:", " ".join(f"{v:.0f}" for v in minutes))
    print("counts:", dict(tally.counts))
    print("errors by code:", dict(sorted(tally.errors.items())))
    for text in tally.problems:
        print("problem:", text)
    # Analyses and speeches in flight swing RSS by ±50 MB from one moment to the next: the growth is
    # the median of the last minute's samples minus the first minute's (every 5 s).
    first = [v for t, v in samples if t < 60] or [rss["after warm-up"]]
    last = [v for t, v in samples if t >= total_s - 60] or [rss["end"]]
    return underruns, len(capture.tracebacks()), statistics.median(last) - statistics.median(first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rooms", type=int, default=5)
    parser.add_argument("--listeners", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-attack", action="store_true", help="the same load without the attacked room's attackers")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also print where Python allocations grew after the warm-up (slows the server)")
    args = parser.parse_args()

    from voxroom.models.piper_voice import PiperVoiceEngine
    from voxroom.streaming.config import ServerConfig
    from voxroom.streaming.embedded import serve_in_thread
    from voxroom.streaming.native_memory import limit_malloc_arenas

    limit_malloc_arenas()  # as `voxroom serve` does
    if args.tracemalloc:
        tracemalloc.start()

    with capturing_logs() as capture, tempfile.TemporaryDirectory() as tmp:
        config = ServerConfig(host="127.0.0.1", port=0, data_dir=Path(tmp), ice_addresses=["127.0.0.1"])
        with serve_in_thread(config, PiperVoiceEngine()) as running:
            ws_url = f"ws://127.0.0.1:{running.port}/ws"
            underruns, _, growth = asyncio.run(soak(args, running.base_url, ws_url, running.server.owner_token,
                                                    capture))
    found = capture.tracebacks()
    for record in found[:3]:
        print("traceback:", described(record))
    print(f"soak: underruns {underruns}, tracebacks {len(found)}, rss growth {growth:.0f} MB", flush=True)


if __name__ == "__main__":
    main()
