"""A real SFU for tests: Janus (VideoRoom, HTTP + WebSocket transports) and Meetecho's
simple-whip-server in front of it, each started on free ports and torn down after.

Janus (libnice) never gathers a loopback address, whatever `ice_enforce_list` says, so these tests
run inside a private network namespace (`unshare -n`, as root): its loopback plus one veth pair
whose address, PRIVATE_ADDRESS, is the only one Janus may use for ICE. Nothing in that namespace can
reach any other machine; `rerun_in_private_network` runs the marked tests there.

Janus comes from Debian (`apt-get install janus`); simple-whip-server from Debian's package unpacked
into SIMPLE_WHIP_SERVER_DIR (default: build/simple-whip-server in this repository, see .ci/run) with
its node dependencies installed there. Tests skip with the reason when either is missing, unless
VOXROOM_REQUIRE_BROWSER is set (CI), where they fail instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from test_webrtc import receiving_peer
from voxroom.streaming.webrtc import filter_remote_candidates

JANUS_LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
WHIP_SERVER_DIR = Path(os.environ.get("SIMPLE_WHIP_SERVER_DIR",
                                      Path(__file__).resolve().parents[1] / "build" / "simple-whip-server"))
JANUS_ROOM = 4242  # the VideoRoom room the co-host is published into (in the plugin's config: survives restarts)
SECOND_JANUS_ROOM = 4243  # for a room publishing to two endpoints
WHIP_TOKEN = "whip-test-token"


PRIVATE_ADDRESS = "10.77.0.1"
INSIDE = "VOXROOM_IN_PRIVATE_NETWORK"
NAMESPACE_SETUP = ("ip link set lo up && ip link add vx0 type veth peer name vx1 && "
                    f"ip addr add {PRIVATE_ADDRESS}/32 dev vx0 && ip link set vx1 up && ip link set vx0 up")


def inside_private_network() -> bool:
    return os.environ.get(INSIDE) == "1"


def rerun_in_private_network(target: str, timeout: float = 600) -> None:
    """Run pytest on `target` inside a fresh private network namespace; fail with its output unless it
    passed (skipped counts as a failure: the point is to run them)."""
    require_janus()
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        reason = "needs root, unshare and ip (iproute2) for a private network namespace"
        if os.environ.get("VOXROOM_REQUIRE_BROWSER"):
            pytest.fail(reason + " (VOXROOM_REQUIRE_BROWSER is set)")
        pytest.skip(reason)
    root = Path(__file__).resolve().parents[1]
    command = f"{NAMESPACE_SETUP} && exec {sys.executable} -m pytest -q -p no:cacheprovider -rA {target}"
    done = subprocess.run(["unshare", "-n", "sh", "-c", command], cwd=root, env={**os.environ, INSIDE: "1"},
                          capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and " skipped" not in output.splitlines()[-1], output[-8000:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_janus() -> None:
    missing = []
    if shutil.which("janus") is None:
        missing.append("janus (apt-get install janus)")
    if shutil.which("node") is None:
        missing.append("node")
    if not (WHIP_SERVER_DIR / "src" / "server.js").is_file() or not (WHIP_SERVER_DIR / "node_modules").is_dir():
        missing.append(f"simple-whip-server in {WHIP_SERVER_DIR} (see .ci/run)")
    if missing:
        reason = "needs " + ", ".join(missing)
        if os.environ.get("VOXROOM_REQUIRE_BROWSER"):
            pytest.fail(reason + " (VOXROOM_REQUIRE_BROWSER is set)")
        pytest.skip(reason)


def write_janus_config(folder: Path, http_port: int, ws_port: int) -> None:
    """Only what the tests use: the VideoRoom plugin, the HTTP API (subscribers) and the WebSocket API
    (simple-whip-server); ICE offers and accepts 127.0.0.1 only."""
    for kind, names in (("plugins", ["libjanus_videoroom.so"]),
                        ("transports", ["libjanus_http.so", "libjanus_websockets.so"]),
                        ("events", []), ("loggers", [])):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for name in names:
            (folder / kind / name).symlink_to(JANUS_LIB / kind / name)
    (folder / "janus.jcfg").write_text(f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{folder}/plugins"
    transports_folder = "{folder}/transports"
    events_folder = "{folder}/events"
    loggers_folder = "{folder}/loggers"
    debug_level = 3
    admin_secret = "unused-admin-secret"
    session_timeout = 0
}}
media: {{
    rtp_port_range = "40000-60000"
}}
nat: {{
    nice_debug = false
    full_trickle = false
    ice_lite = false
    ice_enforce_list = "{PRIVATE_ADDRESS}"
    ignore_mdns = true
}}
plugins: {{}}
transports: {{}}
events: {{ broadcast = false }}
loggers: {{}}
""")
    (folder / "janus.transport.http.jcfg").write_text(f"""general: {{
    json = "indented"
    base_path = "/janus"
    http = true
    port = {http_port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{ admin_http = false }}
cors: {{}}
""")
    (folder / "janus.transport.websockets.jcfg").write_text(f"""general: {{
    json = "indented"
    ws = true
    ws_port = {ws_port}
    ws_ip = "127.0.0.1"
    wss = false
}}
admin: {{ admin_ws = false }}
""")
    (folder / "janus.plugin.videoroom.jcfg").write_text(f"""general: {{}}
room-{JANUS_ROOM}: {{
    description = "voxroom co-host"
    publishers = 6
    audiocodec = "opus"
}}
room-{SECOND_JANUS_ROOM}: {{
    description = "voxroom co-host, second endpoint"
    publishers = 6
    audiocodec = "opus"
}}
""")


def _wait_http(url: str, deadline_s: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {deadline_s} s:\n{log.read_text()[-3000:]}")


@dataclass
class JanusSfu:
    folder: Path
    http_port: int
    ws_port: int
    whip_port: int
    janus: subprocess.Popen[bytes] | None = None
    whip: subprocess.Popen[bytes] | None = None

    @property
    def janus_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/janus"

    @property
    def whip_base(self) -> str:
        return f"http://127.0.0.1:{self.whip_port}/whip"

    def start_janus(self) -> None:
        log = self.folder / "janus.log"
        with log.open("ab") as out:
            self.janus = subprocess.Popen(["janus", "-o", "-F", str(self.folder), "-C", str(self.folder / "janus.jcfg"),
                                           "-L", str(log)], stdout=out, stderr=subprocess.STDOUT)
        _wait_http(f"{self.janus_url}/info", 20, self.janus, log)

    def stop_janus(self) -> None:
        if self.janus is not None and self.janus.poll() is None:
            self.janus.kill()
            self.janus.wait(10)
        self.janus = None

    def start_whip_server(self) -> None:
        run_dir = self.folder / "whip-server"
        shutil.copytree(WHIP_SERVER_DIR / "src", run_dir / "src", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("config.js"))  # Debian links it to /etc
        (run_dir / "node_modules").unlink(missing_ok=True)
        (run_dir / "node_modules").symlink_to(WHIP_SERVER_DIR / "node_modules")
        (run_dir / "src" / "config.js").write_text(
            "module.exports = " + json.dumps({"janus": {"address": f"ws://127.0.0.1:{self.ws_port}"},
                                              "port": self.whip_port, "rest": "/whip", "allowTrickle": True,
                                              "strictETags": False, "iceServers": []}) + ";\n")
        log = self.folder / "whip-server.log"
        with log.open("ab") as out:
            self.whip = subprocess.Popen(["node", "src/server.js"], cwd=run_dir, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, "DEBUG": "whip:error,whip:warn,whip:info"})
        _wait_http(f"{self.whip_base}/healthcheck", 20, self.whip, log)

    def create_endpoint(self, endpoint_id: str, token: str = WHIP_TOKEN, room: int = JANUS_ROOM,
                        ice_servers: list[str] | None = None) -> str:
        """A WHIP endpoint publishing into a VideoRoom room (announcing `ice_servers` in Link headers);
        returns its URL."""
        fields: dict[str, Any] = {"id": endpoint_id, "room": room, "token": token}
        if ice_servers:
            fields["iceServers"] = [{"uri": uri} for uri in ice_servers]
        body = json.dumps(fields).encode()
        req = urllib.request.Request(f"{self.whip_base}/create", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as res:
            assert res.status == 200
        return f"{self.whip_base}/endpoint/{endpoint_id}"

    def logs(self) -> str:
        return "\n".join((self.folder / name).read_text(errors="replace")[-4000:]
                         for name in ("janus.log", "whip-server.log") if (self.folder / name).exists())

    def close(self) -> None:
        for proc in (self.whip, self.janus):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)


def janus_api(url: str, body: dict[str, Any]) -> dict[str, Any]:
    """One Janus HTTP API request (blocking)."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as res:
        answer: dict[str, Any] = json.loads(res.read())
    return answer


def janus_poll(url: str) -> dict[str, Any]:
    """The session's next event (long poll, at most ~30 s; Janus answers a keepalive when idle)."""
    with urllib.request.urlopen(f"{url}?maxev=1", timeout=40) as res:
        answer: dict[str, Any] = json.loads(res.read())
    return answer


def _tx() -> str:
    return secrets.token_hex(6)


def _publishers(janus: JanusSfu, room: int) -> list[dict[str, Any]]:
    session = janus_api(janus.janus_url, {"janus": "create", "transaction": _tx()})["data"]["id"]
    url = f"{janus.janus_url}/{session}"
    handle = janus_api(url, {"janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": _tx()})["data"]["id"]
    answer = janus_api(f"{url}/{handle}", {"janus": "message", "transaction": _tx(),
                                           "body": {"request": "listparticipants", "room": room}})
    janus_api(url, {"janus": "destroy", "transaction": _tx()})
    return [p for p in answer["plugindata"]["data"].get("participants", []) if p.get("publisher")]


async def subscribe(janus: JanusSfu, room: int = JANUS_ROOM) -> tuple[RTCPeerConnection, asyncio.Queue[Any]]:
    """Join the VideoRoom as a subscriber of its publisher, the way a Janus client does over HTTP."""
    async with asyncio.timeout(30):
        while not (feeds := await asyncio.to_thread(_publishers, janus, room)):
            await asyncio.sleep(0.2)
    created = await asyncio.to_thread(janus_api, janus.janus_url, {"janus": "create", "transaction": _tx()})
    session_url = f"{janus.janus_url}/{created['data']['id']}"
    attached = await asyncio.to_thread(janus_api, session_url, {"janus": "attach", "transaction": _tx(),
                                                                "plugin": "janus.plugin.videoroom"})
    handle_url = f"{session_url}/{attached['data']['id']}"
    await asyncio.to_thread(janus_api, handle_url, {"janus": "message", "transaction": _tx(), "body": {
        "request": "join", "ptype": "subscriber", "room": room, "streams": [{"feed": feeds[0]["id"]}]}})
    async with asyncio.timeout(20):
        while "jsep" not in (event := await asyncio.to_thread(janus_poll, session_url)):
            pass
    pc, frames = receiving_peer()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=filter_remote_candidates(event["jsep"]["sdp"]),
                                                        type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    await asyncio.to_thread(janus_api, handle_url, {"janus": "message", "transaction": _tx(),
                                                    "body": {"request": "start"},
                                                    "jsep": {"type": "answer", "sdp": pc.localDescription.sdp}})
    return pc, frames
