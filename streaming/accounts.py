"""Accounts, API tokens and join grants, in the server's SQLite database.

API tokens are random secrets shown once; only their SHA-256 is stored (a token has 256 bits of
entropy, so a slow hash buys nothing). Join grants are short-lived, HMAC-signed statements
"this bearer may join room R as role X until T", minted by the room's host for listener pages,
OBS sources and bots; the server checks them without a database round trip.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

ROLES = ("host", "listener", "bot")
TOKEN_PREFIX = "vxr_"
GRANT_PREFIX = "vxg_"


@dataclass(frozen=True)
class Account:
    id: str
    name: str


@dataclass(frozen=True)
class Grant:
    room: str
    role: str
    account: str  # who minted it (the room's owner)
    expires: float


class AuthError(Exception):
    """The caller is not who they say or may not do this; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


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
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA secure_delete=ON")
    db.executescript(SCHEMA)
    return db


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        row = db.execute("SELECT value FROM server_secrets WHERE name='grant_key'").fetchone()
        if row is None:
            key = secrets.token_bytes(32)
            db.execute("INSERT INTO server_secrets VALUES ('grant_key', ?)", (key,))
        else:
            key = row[0]
        self._grant_key: bytes = key

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
        claims = {"r": room, "o": role, "a": account.id, "e": round((now or time.time()) + ttl)}
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
            result = Grant(room=claims["r"], role=claims["o"], account=claims["a"], expires=float(claims["e"]))
        except (ValueError, KeyError, TypeError):
            raise AuthError("malformed join grant") from None
        if result.expires < (now or time.time()):
            raise AuthError("join grant has expired")
        return result
