"""Every file the server writes under its data directory, listed with its mode: a real `voxroom serve`
on a fresh directory, run with umask 000 so that nothing is private by accident, does what writes each
kind of file (a room and its settings, rotated links, grants, the LLM key, a chat connector's
credentials, a voice upload), and then every directory must be 0700 and every file 0600. A file of a
kind this list does not know fails the test: add it here, on purpose, with its reason."""

from __future__ import annotations

import fnmatch
import json
import signal
import stat
import urllib.request
from pathlib import Path

from conftest import SHARED
from tests.test_cli_signals import call, serving

# Every kind of file the data directory holds (glob patterns, relative to it).
KNOWN_FILES = {
    "voxroom.sqlite3": "the database: accounts, token hashes, rooms and their link keys, sealed secrets",
    "voxroom.sqlite3-wal": "SQLite's write-ahead log (while the server runs)",
    "voxroom.sqlite3-shm": "SQLite's shared-memory index of the log (while the server runs)",
    "grant.key": "the key join grants and room links are signed with",
    "owner-token": "the owner's API token, so every start can print the console URL",
    "llm.key": "seals the LLM API keys set in the console",
    "connectors.key": "seals chat-connector and SFU credentials",
    "voice-store.key": "wraps each voice's own key",
    "voices/*/*": "a voice: its sealed reference audio and metadata",
}
SPEECH = SHARED / "speech" / "pysptk__cmu_arctic_awb_a0007.wav"


def listing(data: Path) -> dict[str, str]:
    """Every directory and file under `data` (itself included), with its mode in octal."""
    found = {".": oct(stat.S_IMODE(data.stat().st_mode))}
    for path in sorted(data.rglob("*")):
        found[str(path.relative_to(data)) + ("/" if path.is_dir() else "")] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


def check(found: dict[str, str]) -> None:
    loose = {name: mode for name, mode in found.items() if mode != ("0o700" if name.endswith("/") or name == "."
                                                                     else "0o600")}
    assert not loose, f"looser than 0700/0600: {loose}\nall: {json.dumps(found, indent=1)}"
    unknown = [name for name in found if not name.endswith("/") and name != "."
               and not any(fnmatch.fnmatch(name, pattern) for pattern in KNOWN_FILES)]
    assert not unknown, f"files of a kind the test does not know (add them to KNOWN_FILES): {unknown}"


def upload_voice(base: str, token: str) -> None:
    from test_voices_server import recording

    req = urllib.request.Request(f"{base}/api/voices?name=me&lang=en&consent=true", data=recording()[0],
                                 method="POST", headers={"Authorization": f"Bearer {token}", "X-Filename": "take.wav",
                                                         "Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req, timeout=180) as res:
        assert res.status == 201


def test_every_file_in_the_data_directory_is_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serving(data, umask=0) as (proc, base, token):
        room = call(base, token, "POST", "/api/rooms", {"name": "modes"})
        call(base, token, "PATCH", f"/api/rooms/{room['id']}/cohost", {"policy": "duck", "blocked_words": ["spoiler"]})
        call(base, token, "POST", f"/api/rooms/{room['id']}/links/rotate")
        call(base, token, "POST", f"/api/rooms/{room['id']}/grants", {"role": "bot"})
        call(base, token, "PUT", "/api/llm", {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key": "sk-secret"})
        call(base, token, "POST", f"/api/rooms/{room['id']}/connectors",
             {"platform": "twitch", "channel": "somebody", "url": "ws://127.0.0.1:9", "nick": "bot", "token": "oauth:abc"})
        voice = SPEECH.is_file()  # a voice upload needs a real recording (../shared/speech)
        if voice:
            upload_voice(base, token)
        running = listing(data)
        check(running)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    stopped = listing(data)
    check(stopped)
    # What each step wrote is there (so the walk above saw every kind of file it checks).
    for name in ("voxroom.sqlite3", "grant.key", "owner-token", "llm.key", "connectors.key", "voice-store.key"):
        assert name in stopped, (name, stopped)
    assert "voxroom.sqlite3-wal" in running
    if voice:
        assert any(fnmatch.fnmatch(name, "voices/*/*") for name in stopped), stopped
    print("\n".join(f"{mode}  {name}" for name, mode in stopped.items()))
