"""`voxroom serve` as a user runs it: Ctrl+C or SIGTERM mid-speech exits 0 within 3 s with no traceback,
an idle Ctrl+C too, and a port already in use is one line and exit code 2."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

SERVE = [sys.executable, "-m", "voxroom.streaming.cli", "serve", "--host", "127.0.0.1", "--ice-address", "127.0.0.1"]


@contextmanager
def serving(tmp_path: Path, port: int = 0, umask: int | None = None) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """`voxroom serve` on `tmp_path`; `umask`: the server process's (None: this one's)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*SERVE, "--port", str(port), "--data-dir", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=None if umask is None else (lambda: os.umask(umask) and None))
    try:
        url = ""
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if "/console#token=" in line:
                url = line.strip()
                break
        match = re.match(r"http://([^/]+)/console#token=(\S+)", url)
        assert match, f"no console URL; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        yield proc, f"http://{match.group(1)}", match.group(2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def call(base: str, token: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.loads(res.read())


def stop(proc: subprocess.Popen[str], sig: int) -> tuple[int, float, str]:
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("the server did not exit within 10 s of the signal")
    took = time.monotonic() - sent
    assert proc.stderr is not None
    return proc.returncode, took, proc.stderr.read()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_speech_exits_cleanly_within_3s(tmp_path: Path, sig: int) -> None:
    with serving(tmp_path) as (proc, base, token):
        room = call(base, token, "POST", "/api/rooms", {"name": "show"})
        text = " ".join(["This sentence keeps the co-host talking for a good while longer."] * 8)  # ~20 s
        call(base, token, "POST", f"/api/rooms/{room['id']}/say", {"text": text})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            queue = call(base, token, "GET", f"/api/rooms/{room['id']}")["queue"]
            if any(s["state"] == "speaking" for s in queue):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the speech never started")
        time.sleep(0.5)
        code, took, stderr = stop(proc, sig)
    assert code == 0, stderr
    assert took < 3.0, f"exit took {took:.2f} s"
    assert "Traceback" not in stderr, stderr


def test_idle_ctrl_c_prints_no_traceback(tmp_path: Path) -> None:
    with serving(tmp_path) as (proc, _, _):
        code, took, stderr = stop(proc, signal.SIGINT)
    assert code == 0 and took < 3.0
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr


def test_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([*SERVE, "--port", str(port), "--data-dir", str(tmp_path)], capture_output=True,
                                text=True, timeout=60)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(port) in lines[0] and "--port" in lines[0] and "Traceback" not in result.stderr
