"""The LLM endpoint behind the co-host's replies, set per account from the console.

- `LLMSettings`: an OpenAI-compatible endpoint (base URL, model, API key).
- `LLMStore`: table `llm_settings`, one row per account. The API key is sealed with AES-GCM under a
  server key kept in `DATA_DIR/llm.key` (0600, outside the database), bound to the account; it is
  write-only: no answer contains it.
- `LLMApi`: `GET /api/llm` (what is set and where it comes from), `PUT /api/llm` (set or clear;
  every room of the account switches at once), `POST /api/llm/test` (ask the endpoint for its models
  with a short timeout and say plainly what went wrong).

An account without its own setting uses the server's (OPENAI_BASE_URL / config file); with neither,
the co-host reads chat aloud.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from voxroom.streaming.config import LLMSettings
from voxroom.streaming.connectors_api import load_key
from voxroom.streaming.http_errors import guard, json_body

if TYPE_CHECKING:
    from voxroom.streaming.app import VoxroomServer

TEST_TIMEOUT_S = 5.0
URL_SCHEMES = ("http://", "https://")


class LLMStore:
    def __init__(self, db: sqlite3.Connection, key_path: Path) -> None:
        self.db = db
        self._aead = AESGCM(load_key(key_path))
        db.execute("""CREATE TABLE IF NOT EXISTS llm_settings (
            account_id TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
            base_url TEXT NOT NULL, model TEXT NOT NULL, api_key BLOB, updated REAL NOT NULL)""")

    @staticmethod
    def _aad(account_id: str) -> bytes:
        return f"voxroom-llm:{account_id}".encode()

    def get(self, account_id: str) -> LLMSettings | None:
        row = self.db.execute("SELECT base_url, model, api_key FROM llm_settings WHERE account_id = ?",
                              (account_id,)).fetchone()
        if row is None:
            return None
        api_key = ""
        if row[2] is not None:
            sealed = bytes(row[2])
            try:
                api_key = self._aead.decrypt(sealed[:12], sealed[12:], self._aad(account_id)).decode()
            except InvalidTag:
                raise ValueError("the stored LLM API key does not open with this server's key; set it again") from None
        return LLMSettings(row[0], row[1], api_key)

    def put(self, account_id: str, settings: LLMSettings) -> None:
        sealed = None
        if settings.api_key:
            nonce = secrets.token_bytes(12)
            sealed = nonce + self._aead.encrypt(nonce, settings.api_key.encode(), self._aad(account_id))
        self.db.execute("INSERT INTO llm_settings VALUES (?, ?, ?, ?, ?) ON CONFLICT(account_id) DO UPDATE SET "
                        "base_url = excluded.base_url, model = excluded.model, api_key = excluded.api_key, "
                        "updated = excluded.updated",
                        (account_id, settings.base_url, settings.model, sealed, time.time()))

    def clear(self, account_id: str) -> None:
        self.db.execute("DELETE FROM llm_settings WHERE account_id = ?", (account_id,))


def parse_settings(body: dict[str, Any], before: LLMSettings | None) -> LLMSettings | None:
    """A PUT body: {base_url, model, api_key?}; base_url null clears the setting. An absent api_key keeps
    the one stored (the page never sees it), "" removes it."""
    base_url = body.get("base_url")
    if base_url is None:
        return None
    if not isinstance(base_url, str) or not base_url.startswith(URL_SCHEMES) or len(base_url) > 500 \
            or not base_url.isprintable():
        raise ValueError("'base_url' must be an http:// or https:// address of at most 500 characters, or null")
    model = body.get("model")
    if not isinstance(model, str) or not 0 < len(model.strip()) <= 200:
        raise ValueError("'model' must be a model name of 1 to 200 characters")
    api_key = body.get("api_key")
    if api_key is None:
        api_key = before.api_key if before is not None else ""
    elif not isinstance(api_key, str) or len(api_key) > 4096 or not api_key.isprintable():
        raise ValueError("'api_key' must be text of at most 4096 characters")
    return LLMSettings(base_url.rstrip("/"), model.strip(), api_key)


async def test_endpoint(settings: LLMSettings, timeout: float = TEST_TIMEOUT_S) -> dict[str, Any]:
    """Ask the endpoint for its models; {"ok", "error", "models", "model_listed"} in plain words."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=settings.base_url, api_key=settings.api_key or "none", max_retries=0,
                         timeout=timeout)
    try:
        page = await client.models.list()
        models = [m.id for m in page.data][:200]
    except Exception as exc:  # whatever the endpoint or the network did, it is the answer, not a crash
        return {"ok": False, "error": _plain_error(exc, settings, timeout), "models": [], "model_listed": False}
    finally:
        await client.close()
    listed = settings.model in models
    note = "" if listed or not models else f"the endpoint answered but does not list model {settings.model!r}"
    return {"ok": True, "error": note, "models": models, "model_listed": listed}


def _plain_error(exc: Exception, settings: LLMSettings, timeout: float) -> str:
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    if "Timeout" in name:
        return f"{settings.base_url} did not answer within {timeout:g} s"
    if "Connection" in name:
        return f"cannot connect to {settings.base_url} (is it running, and is the address right?)"
    if status in (401, 403):
        return f"{settings.base_url} refused the API key (HTTP {status})"
    if status == 404:
        return f"{settings.base_url} has no /models here (HTTP 404); check the address (it usually ends in /v1)"
    if status is not None:
        return f"{settings.base_url} answered HTTP {status}: {str(exc)[:200]}"
    return f"{name}: {str(exc)[:200]}"


class LLMApi:
    def __init__(self, server: VoxroomServer, store: LLMStore,
                 server_default: LLMSettings | None, apply: Callable[[str, LLMSettings | None], None]) -> None:
        """`server_default`: the server's own endpoint (config), for accounts without one; `apply(account,
        settings)` switches that account's rooms."""
        self.server = server
        self.store = store
        self.server_default = server_default
        self.apply = apply

    def routes(self) -> list[Any]:
        return [
            Route("/api/llm", self.get, methods=["GET"]),
            Route("/api/llm", self.put, methods=["PUT"]),
            Route("/api/llm/test", self.test, methods=["POST"]),
        ]

    def effective(self, account_id: str) -> LLMSettings | None:
        """The endpoint an account's rooms use: its own, else the server's, else none (read-aloud)."""
        try:
            own = self.store.get(account_id)
        except ValueError:
            own = None
        return own if own is not None else self.server_default

    def describe(self, account_id: str) -> str:
        settings = self.effective(account_id)
        return settings.describe() if settings is not None else "read-aloud (no LLM set)"

    def _view(self, account_id: str) -> dict[str, Any]:
        own = self.store.get(account_id)
        settings = own if own is not None else self.server_default
        return {
            "source": "console" if own is not None else ("server" if settings is not None else "none"),
            "mode": "llm" if settings is not None else "read_aloud",
            "base_url": settings.base_url if settings is not None else None,
            "model": settings.model if settings is not None else None,
            "has_api_key": bool(settings and settings.api_key),
        }

    async def get(self, request: Request) -> Response:
        return await guard(lambda: self._view(self.server.account(request).id))

    async def put(self, request: Request) -> Response:
        async def run() -> Any:
            account = self.server.account(request)
            body = await json_body(request)
            try:
                before = self.store.get(account.id)
            except ValueError:
                before = None
            settings = parse_settings(body, before)
            if settings is None:
                self.store.clear(account.id)
            else:
                self.store.put(account.id, settings)
            self.apply(account.id, self.effective(account.id))
            return self._view(account.id)
        return await guard(run)

    async def test(self, request: Request) -> Response:
        """Test the body's endpoint (before saving it) or, with an empty body, the one in use."""
        async def run() -> Any:
            account = self.server.account(request)
            body = await json_body(request)
            settings = parse_settings(body, self.store.get(account.id)) if body else self.effective(account.id)
            if settings is None:
                raise ValueError("no LLM endpoint is set; give base_url and model")
            return await test_endpoint(settings)
        return await guard(run)

