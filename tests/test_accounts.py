"""Join grants under forgery, the grant key's home (a 0600 file, not the database) and the data
directory's permissions."""

from __future__ import annotations

import base64
import hmac
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from voxroom.streaming.accounts import GRANT_KEY_FILE, GRANT_PREFIX, Accounts, AuthError, open_database


def _forge(key: bytes, claims: object) -> str:
    """A grant signed with the real key but with claims the server would never mint (what someone
    holding a leaked key, or a bug in minting, would produce)."""
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    sig = base64.urlsafe_b64encode(hmac.digest(key, body, "sha256")[:24]).rstrip(b"=")
    return GRANT_PREFIX + body.decode() + "." + sig.decode()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("expiry", [float("nan"), float("inf"), float("-inf"), 10**400, 1e300, -5, "2000000000",
                                    None, True, [2000000000], {"t": 1}])
def test_a_grant_whose_expiry_is_not_a_sane_time_is_refused(tmp_path: Path, expiry: object) -> None:
    accounts = Accounts(open_database(tmp_path / "db.sqlite3"))
    key = (tmp_path / GRANT_KEY_FILE).read_bytes()
    grant = _forge(key, {"r": "room1", "o": "listener", "a": "acct", "e": expiry})
    with pytest.raises(AuthError, match="malformed|expired"):
        accounts.check_grant(grant, now=1000)


def test_forged_claims_of_the_wrong_shape_are_refused(tmp_path: Path) -> None:
    accounts = Accounts(open_database(tmp_path / "db.sqlite3"))
    key = (tmp_path / GRANT_KEY_FILE).read_bytes()
    for claims in ([1, 2], {"r": 1, "o": "listener", "a": "acct", "e": 2000},
                   {"r": "room1", "o": "admin", "a": "acct", "e": 2000}):
        with pytest.raises(AuthError, match="malformed"):
            accounts.check_grant(_forge(key, claims), now=1000)
    assert accounts.check_grant(_forge(key, {"r": "room1", "o": "bot", "a": "acct", "e": 2000.5}), now=1000).expires == 2000.5


def test_the_grant_key_lives_in_a_private_file_not_in_the_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    accounts = Accounts(open_database(data / "voxroom.sqlite3"))
    account, _ = accounts.create("alice")
    key_file = data / GRANT_KEY_FILE
    key = key_file.read_bytes()
    assert len(key) == 32 and _mode(key_file) == 0o600
    assert _mode(data) == 0o700 and _mode(data / "voxroom.sqlite3") == 0o600
    assert all(_mode(p) == 0o600 for p in data.glob("voxroom.sqlite3*"))
    on_disk = b"".join(p.read_bytes() for p in data.glob("voxroom.sqlite3*"))
    assert key not in on_disk
    grant = accounts.mint_grant(account, "room1", "listener")
    again = Accounts(open_database(data / "voxroom.sqlite3"))  # a restart reads the same key
    assert again.check_grant(grant).room == "room1"


def test_a_key_kept_in_the_database_by_an_older_version_moves_to_the_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    old_key = os.urandom(32)
    db_path = data / "voxroom.sqlite3"
    old = sqlite3.connect(db_path, isolation_level=None)
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE server_secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL)")
    old.execute("INSERT INTO server_secrets VALUES ('grant_key', ?)", (old_key,))
    old.close()
    os.chmod(db_path, 0o644)
    grant_from_before = _forge(old_key, {"r": "room1", "o": "listener", "a": "acct", "e": 2000})

    db = open_database(db_path)
    accounts = Accounts(db)
    assert (data / GRANT_KEY_FILE).read_bytes() == old_key
    assert accounts.check_grant(grant_from_before, now=1000).room == "room1"  # links already shared keep working
    assert db.execute("SELECT COUNT(*) FROM server_secrets").fetchone()[0] == 0
    db.close()
    assert old_key not in b"".join(p.read_bytes() for p in data.glob("voxroom.sqlite3*"))
    assert _mode(data) == 0o700 and _mode(db_path) == 0o600


def test_a_damaged_key_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / GRANT_KEY_FILE).write_bytes(b"short")
    with pytest.raises(RuntimeError, match="32 bytes"):
        Accounts(open_database(tmp_path / "db.sqlite3"))
