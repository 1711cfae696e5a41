"""A listener that can only use a TURN relay (as behind a strict NAT) still hears the room: coturn on
127.0.0.1 with a shared secret (`use-auth-secret`), voxroom configured with it (`ice_servers` with
`secret`, `ice_transport_policy = "relay"`), and a real Chromium page whose peer may use relay
candidates only; voxroom's own peer goes through the same TURN server."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import RunningServer, chromium, start_server

SECRET = "turn-test-secret"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers_stun(port: int) -> bool:
    """A STUN binding request (RFC 8489) to 127.0.0.1:port gets an answer within 0.2 s."""
    request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + secrets.token_bytes(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        s.sendto(request, ("127.0.0.1", port))
        try:
            return s.recv(1024)[8:20] == request[8:20]
        except OSError:
            return False


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[int]:
    if shutil.which("turnserver") is None:
        if os.environ.get("VOXROOM_REQUIRE_BROWSER"):
            pytest.fail("turnserver is missing: apt-get install coturn (VOXROOM_REQUIRE_BROWSER is set)")
        pytest.skip("needs coturn (apt-get install coturn)")
    port = free_udp_port()
    log = tmp_path / "turnserver.log"
    # allow-loopback-peers: the relay forwards to voxroom on 127.0.0.1 (coturn refuses loopback peers by default)
    args = ["turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
            "--min-port=50000", "--max-port=50999", "--use-auth-secret", f"--static-auth-secret={SECRET}",
            "--realm=voxroom.test", "--allow-loopback-peers", "--no-cli", "--no-tls", "--no-dtls", "--fingerprint",
            f"--pidfile={tmp_path / 'turnserver.pid'}", f"--db={tmp_path / 'turndb'}", "--log-file=stdout", "--simple-log"]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not answers_stun(port):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
        yield port
    except BaseException:
        print(log.read_text(errors="replace")[-4000:])
        raise
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def relay_only_server(tmp_path: Path, stock_engine: Any, coturn: int) -> Iterator[RunningServer]:
    yield from start_server(tmp_path / "voxroom", stock_engine, ice_transport_policy="relay",
                            ice_servers=[{"urls": [f"turn:127.0.0.1:{coturn}?transport=udp"], "secret": SECRET}])


def test_a_relay_only_listener_hears_the_room_through_coturn(relay_only_server: RunningServer) -> None:
    server = relay_only_server
    _, room = server.json("POST", "/api/rooms", {"name": "behind a NAT"})
    status, plan = server.json("GET", f"/rooms/{room['id']}/playback", None, room["listener_grant"])
    assert status == 200 and plan["ice_transport_policy"] == "relay"
    (turn,) = plan["ice_servers"]
    assert re.fullmatch(r"\d+:voxroom", turn["username"]) and turn["credential"]  # minted: the secret stays home
    assert SECRET not in str(plan)
    with chromium() as browser:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server.base + room["listen_url"] + "&autojoin=1")
        page.wait_for_function("window.voxroomStats.state === 'connected' && window.voxroomStats.candidateType",
                               timeout=30000)
        assert page.evaluate("window.voxroomStats.candidateType") == "relay"
        assert server.json("POST", f"/api/rooms/{room['id']}/say", {"text": "Heard through the relay."})[0] == 202
        page.wait_for_function("window.voxroomStats.loudFrames > 10", timeout=20000)
        assert page.evaluate("window.voxroomStats.error") is None and not errors
    assert server.json("DELETE", f"/api/rooms/{room['id']}")[0] == 200
