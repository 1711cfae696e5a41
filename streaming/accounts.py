"""Accounts, API tokens and join grants, in the server's SQLite database.

API tokens are random secrets shown once; only their SHA-256 is stored (a token has 256 bits of
entropy, so a slow hash buys nothing). Join grants are short-lived, HMAC-signed statements
"this bearer may join room R as role X until T", minted by the room's host for bots and API use;
the server checks them without a database round trip.

A room's listener link (its listener page and OBS overlay) is a grant of another kind: "this bearer
may listen to room R while its link key is K", with no expiry. The key is stored with the room
(room_store.py); rotating it revokes every link minted with the old one at once (`link_revoked`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import math
import os
import secrets
import sqlite3
import stat
import time
from dataclasses import dataclass
from pathlib import Path

ROLES = ("host", "listener", "bot")
TOKEN_PREFIX = "vxr_"
GRANT_PREFIX = "vxg_"
GRANT_KEY_FILE = "grant.key"  # beside the database, never inside it: a copied database cannot mint grants
# Grants live hours to days (the API allows 7 days); an expiry past this is forged or broken.
MAX_GRANT_LIFETIME_S = 366 * 24 * 3600


@dataclass(frozen=True)
class Account:
    id: str
    name: str


@dataclass(frozen=True)
class Grant:
    room: str
    role: str
    account: str  # who minted it (the room's owner)
    expires: float  # math.inf for a room link: it lasts until the host rotates the room's links
    link: str | None = None  # a room link's key (checked against the room's current one); None for a grant


class AuthError(Exception):
    """The caller is not who they say or may not do this; `status` is the HTTP status to answer and
    `code` the stable error code (None: the one for the status)."""

    def __init__(self, message: str, status: int = 401, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS server_secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""


def open_database(path: Path) -> sqlite3.Connection:
    """The server database; its directory is made private (0700) and its files 0600, because it
    holds token hashes, voice metadata and wrapped keys that no other local user should read."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # create it private before SQLite does
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA secure_delete=ON")
    db.executescript(SCHEMA)
    # SQLite gives the -wal and -shm files the database file's mode, so an old 0644 file is fixed first.
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path.parent / name, 0o600)
    return db


def database_file(db: sqlite3.Connection) -> Path | None:
    """The main database file of a connection (None for an in-memory database)."""
    for _, name, file in db.execute("PRAGMA database_list"):
        if name == "main" and file:
            return Path(file)
    return None


def load_grant_key(path: Path, db: sqlite3.Connection) -> bytes:
    """The grant-signing key from its 0600 file. A key an older version kept in the database is
    moved into the file (grants already handed out stay valid) and then erased from the database."""
    row = db.execute("SELECT value FROM server_secrets WHERE name='grant_key'").fetchone()
    if not path.exists():
        key = bytes(row[0]) if row is not None and len(row[0]) == 32 else secrets.token_bytes(32)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # the file exists whole or not at all, so the database copy is erased only after
    key = path.read_bytes()
    if len(key) != 32:
        raise RuntimeError(f"grant key file {path} must hold exactly 32 bytes, it holds {len(key)}")
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o600)
    if row is not None:
        # secure_delete zeroes the freed page; the checkpoint moves that into the main file now.
        db.execute("DELETE FROM server_secrets WHERE name='grant_key'")
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return key


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, db: sqlite3.Connection, key_file: Path | None = None) -> None:
        """`key_file` holds the grant-signing key; by default `grant.key` beside the database file
        (an in-memory database gets a key for this process only)."""
        self.db = db
        db_file = database_file(db)
        if key_file is None and db_file is not None:
            key_file = db_file.parent / GRANT_KEY_FILE
        self._grant_key: bytes = load_grant_key(key_file, db) if key_file is not None else secrets.token_bytes(32)

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM accounts").fetchone()[0])

    def create(self, name: str) -> tuple[Account, str]:
        """A new account and its first API token (the only time the token is visible)."""
        account = Account(id=secrets.token_hex(8), name=name)
        self.db.execute("INSERT INTO accounts VALUES (?, ?, ?)", (account.id, name, time.time()))
        return account, self.new_token(account)

    def new_token(self, account: Account) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.db.execute("INSERT INTO api_tokens VALUES (?, ?, ?)", (_hash(token), account.id, time.time()))
        return token

    def by_token(self, token: str) -> Account:
        row = self.db.execute(
            "SELECT a.id, a.name FROM api_tokens t JOIN accounts a ON a.id = t.account_id WHERE t.token_hash = ?",
            (_hash(token),),
        ).fetchone()
        if row is None:
            raise AuthError("unknown or revoked API token")
        return Account(*row)

    def get(self, account_id: str) -> Account | None:
        row = self.db.execute("SELECT id, name FROM accounts WHERE id = ?", (account_id,)).fetchone()
        return Account(*row) if row else None

    # -- join grants -------------------------------------------------------------------------
    def mint_grant(self, account: Account, room: str, role: str, ttl: float = 6 * 3600, now: float | None = None) -> str:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        return self._sign({"r": room, "o": role, "a": account.id, "e": round((now or time.time()) + ttl)})

    def room_link(self, owner: str, room: str, link_key: str) -> str:
        """The room's listener link credential for its current `link_key`: the same string every time
        until the key is rotated, so the host can be shown it again (GET /api/rooms/{room}/links)."""
        return self._sign({"r": room, "o": "listener", "a": owner, "k": link_key})

    def _sign(self, claims: dict[str, object]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=")
        sig = base64.urlsafe_b64encode(hmac.digest(self._grant_key, body, "sha256")[:24]).rstrip(b"=")
        return GRANT_PREFIX + body.decode() + "." + sig.decode()

    def check_grant(self, grant: str, now: float | None = None) -> Grant:
        if not grant.startswith(GRANT_PREFIX) or grant.count(".") != 1:
            raise AuthError("malformed join grant")
        body, sig = grant[len(GRANT_PREFIX) :].encode().split(b".")
        want = base64.urlsafe_b64encode(hmac.digest(self._grant_key, body, "sha256")[:24]).rstrip(b"=")
        if not hmac.compare_digest(want, sig):
            raise AuthError("join grant signature does not match")
        try:
            claims = json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
            link = claims.get("k")
            expires = math.inf if link is not None else _expiry(claims["e"])
            result = Grant(room=claims["r"], role=claims["o"], account=claims["a"], expires=expires, link=link)
        except (ValueError, KeyError, TypeError, OverflowError, AttributeError):
            raise AuthError("malformed join grant") from None
        if not all(isinstance(v, str) for v in (result.room, result.role, result.account)) or result.role not in ROLES:
            raise AuthError("malformed join grant")
        if result.link is not None:
            if not isinstance(result.link, str) or result.role != "listener":
                raise AuthError("malformed join grant")
            return result  # a room link: valid while its key is the room's (Access.room_for checks)
        current = now or time.time()
        if result.expires < current:
            raise AuthError("join grant has expired")
        if result.expires > current + MAX_GRANT_LIFETIME_S:
            raise AuthError("malformed join grant")  # no grant we mint lives that long
        return result


def _expiry(value: object) -> float:
    """A grant's `e` claim: a whole or decimal number of seconds, finite. Python's json reads NaN and
    Infinity, and NaN compares false with everything, so a NaN expiry would never expire."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expiry is not a number")
    expires = float(value)  # OverflowError for an int past float range: the caller treats it as malformed
    if not math.isfinite(expires) or expires < 0:
        raise ValueError("expiry is not a finite time")
    return expires
