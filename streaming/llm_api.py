"""The LLM endpoint behind the co-host's replies, set per account and per room from the console.

- `LLMSettings`: an OpenAI-compatible endpoint (base URL, model, API key).
- `LLMStore`: table `llm_settings`, one row per account, and `room_llm_settings`, one row per room
  that has its own endpoint (deleted with the room). The API key is sealed with AES-GCM under a
  server key kept in `DATA_DIR/llm.key` (0600, outside the database), bound to the account or the
  room; it is write-only: no answer contains it.
- `LLMApi`: `GET/PUT /api/llm` (the account's: what is set and where it comes from; set or clear),
  `GET/PUT /api/rooms/ROOM/llm` (one room's own), `POST .../llm/test` (list the endpoint's models and
  time a short streamed completion to its first token, or say plainly what went wrong),
  `POST /api/rooms/ROOM/llm/models` (the endpoint's model list, for the console's model field).

A room without its own endpoint uses its account's; an account without one uses the server's
(OPENAI_BASE_URL / config file); with none, the co-host reads chat aloud.
"""

from __future__ import annotations

import asyncio
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
    from voxroom.streaming.accounts import Account
    from voxroom.streaming.app import VoxroomServer
    from voxroom.streaming.rooms import Room

TEST_TIMEOUT_S = 5.0
URL_SCHEMES = ("http://", "https://")


# What a setting belongs to: its table, key column and the prefix its sealed key is bound to.
_SCOPES = {"account": ("llm_settings", "account_id", "voxroom-llm:"),
           "room": ("room_llm_settings", "room_id", "voxroom-llm-room:")}


class LLMStore:
    def __init__(self, db: sqlite3.Connection, key_path: Path) -> None:
        self.db = db
        self._aead = AESGCM(load_key(key_path))
        db.execute("""CREATE TABLE IF NOT EXISTS llm_settings (
            account_id TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
            base_url TEXT NOT NULL, model TEXT NOT NULL, api_key BLOB, updated REAL NOT NULL)""")
        db.execute("""CREATE TABLE IF NOT EXISTS room_llm_settings (
            room_id TEXT PRIMARY KEY REFERENCES rooms(id) ON DELETE CASCADE,
            base_url TEXT NOT NULL, model TEXT NOT NULL, api_key BLOB, updated REAL NOT NULL)""")

    def get(self, owner_id: str, scope: str = "account") -> LLMSettings | None:
        """The account's (or with scope="room", the room's) own endpoint; None when it has none."""
        table, column, aad = _SCOPES[scope]
        row = self.db.execute(f"SELECT base_url, model, api_key FROM {table} WHERE {column} = ?",
                              (owner_id,)).fetchone()
        if row is None:
            return None
        api_key = ""
        if row[2] is not None:
            sealed = bytes(row[2])
            try:
                api_key = self._aead.decrypt(sealed[:12], sealed[12:], (aad + owner_id).encode()).decode()
            except InvalidTag:
                raise ValueError("the stored LLM API key does not open with this server's key; set it again") from None
        return LLMSettings(row[0], row[1], api_key)

    def put(self, owner_id: str, settings: LLMSettings, scope: str = "account") -> None:
        table, column, aad = _SCOPES[scope]
        sealed = None
        if settings.api_key:
            nonce = secrets.token_bytes(12)
            sealed = nonce + self._aead.encrypt(nonce, settings.api_key.encode(), (aad + owner_id).encode())
        self.db.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?) ON CONFLICT({column}) DO UPDATE SET "
                        "base_url = excluded.base_url, model = excluded.model, api_key = excluded.api_key, "
                        "updated = excluded.updated",
                        (owner_id, settings.base_url, settings.model, sealed, time.time()))

    def clear(self, owner_id: str, scope: str = "account") -> None:
        table, column, _ = _SCOPES[scope]
        self.db.execute(f"DELETE FROM {table} WHERE {column} = ?", (owner_id,))

    def readable(self, owner_id: str, scope: str = "account") -> LLMSettings | None:
        """As `get`, but a key that no longer opens counts as no setting (the caller falls back)."""
        try:
            return self.get(owner_id, scope)
        except ValueError:
            return None


def parse_settings(body: dict[str, Any], before: LLMSettings | None) -> LLMSettings | None:
    """A PUT body: {base_url, model, api_key?}; base_url null clears the setting. An absent api_key keeps
    the one stored (the page never sees it) for the same base URL only (a key never travels to an
    address it was not set for), "" removes it."""
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
        api_key = before.api_key if before is not None and before.base_url == base_url.rstrip("/") else ""
    elif not isinstance(api_key, str) or len(api_key) > 4096 or not api_key.isprintable():
        raise ValueError("'api_key' must be text of at most 4096 characters")
    return LLMSettings(base_url.rstrip("/"), model.strip(), api_key)


async def list_models(settings: LLMSettings, timeout: float = TEST_TIMEOUT_S) -> dict[str, Any]:
    """The endpoint's models ({"models", "error"}: error "" when it answered)."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=settings.base_url, api_key=settings.api_key or "none", max_retries=0,
                         timeout=timeout)
    try:
        page = await client.models.list()
        return {"models": [m.id for m in page.data][:200], "error": ""}
    except Exception as exc:  # whatever the endpoint or the network did, it is the answer, not a crash
        return {"models": [], "error": _plain_error(exc, settings, timeout)}
    finally:
        await client.close()


async def first_token(settings: LLMSettings, timeout: float = TEST_TIMEOUT_S) -> float:
    """Seconds from asking to the first text of a short streamed chat completion (what a reply waits for)."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=settings.base_url, api_key=settings.api_key or "none", max_retries=0,
                         timeout=timeout)
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            stream = await client.chat.completions.create(
                model=settings.model, max_tokens=8, stream=True,
                messages=[{"role": "user", "content": "Say hello in three words."}])
            try:
                async for chunk in stream:
                    if any(getattr(getattr(c, "delta", None), "content", None) for c in chunk.choices or ()):
                        return time.monotonic() - started
            finally:
                await stream.close()
        raise LLMTestError(f"{settings.base_url} finished the answer without any text (model {settings.model!r})")
    except TimeoutError:
        raise LLMTestError(f"{settings.base_url} did not answer within {timeout:g} s") from None
    finally:
        await client.close()


class LLMTestError(Exception):
    pass


async def test_endpoint(settings: LLMSettings, timeout: float = TEST_TIMEOUT_S) -> dict[str, Any]:
    """List the endpoint's models, then time a short streamed completion to its first token:
    {"ok", "error", "models", "model_listed", "first_token_ms"} in plain words."""
    listing = await list_models(settings, timeout)
    models = listing["models"]
    result = {"ok": False, "error": listing["error"], "models": models, "model_listed": settings.model in models,
              "first_token_ms": None}
    if listing["error"] and "refused the API key" in listing["error"]:
        return result  # the completion would be refused the same way
    try:
        result["first_token_ms"] = round(await first_token(settings, timeout) * 1000)
    except LLMTestError as exc:
        result["error"] = str(exc)
        return result
    except Exception as exc:
        result["error"] = _plain_error(exc, settings, timeout)
        return result
    result["ok"] = True
    if listing["error"]:
        result["error"] = f"replies work, but the model list did not: {listing['error']}"
    elif models and not result["model_listed"]:
        result["error"] = f"the endpoint answered but does not list model {settings.model!r}"
    return result


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
        return (f"{settings.base_url} answered HTTP 404: {str(exc)[:150]}; check the address (it usually ends "
                f"in /v1) and the model name")
    if status is not None:
        return f"{settings.base_url} answered HTTP {status}: {str(exc)[:200]}"
    return f"{name}: {str(exc)[:200]}"


class LLMApi:
    def __init__(self, server: VoxroomServer, store: LLMStore,
                 server_default: LLMSettings | None, apply: Callable[[str, str | None], None]) -> None:
        """`server_default`: the server's own endpoint (config), for accounts without one; `apply(account,
        room)` switches that account's rooms (room None) or one room to what `effective` says now."""
        self.server = server
        self.store = store
        self.server_default = server_default
        self.apply = apply

    def routes(self) -> list[Any]:
        return [
            Route("/api/llm", self.get, methods=["GET"]),
            Route("/api/llm", self.put, methods=["PUT"]),
            Route("/api/llm/test", self.test, methods=["POST"]),
            Route("/api/rooms/{room}/llm", self.get_room, methods=["GET"]),
            Route("/api/rooms/{room}/llm", self.put_room, methods=["PUT"]),
            Route("/api/rooms/{room}/llm/test", self.test_room, methods=["POST"]),
            Route("/api/rooms/{room}/llm/models", self.models_room, methods=["POST"]),
        ]

    def effective(self, account_id: str, room_id: str | None = None) -> LLMSettings | None:
        """The endpoint a room uses: its own, else its account's, else the server's, else none (read-aloud).
        Without a room: the account's rooms' default."""
        own = self.store.readable(room_id, "room") if room_id is not None else None
        if own is not None:
            return own
        account = self.store.readable(account_id)
        return account if account is not None else self.server_default

    def describe(self, account_id: str, room_id: str | None = None) -> str:
        settings = self.effective(account_id, room_id)
        return settings.describe() if settings is not None else "read-aloud (no LLM set)"

    def _view(self, account_id: str, room: Room | None = None) -> dict[str, Any]:
        own = self.store.get(room.id, "room") if room is not None else None
        account = self.store.get(account_id) if own is None else None
        settings = own or account or self.server_default
        source = "room" if own else "console" if account else "server" if settings else "none"
        view = {
            "source": source if room is None or source != "console" else "account",
            "mode": "llm" if settings is not None else "read_aloud",
            "base_url": settings.base_url if settings is not None else None,
            "model": settings.model if settings is not None else None,
            "has_api_key": bool(settings and settings.api_key),
        }
        if room is not None:  # how the room's replies are going: shown in the console for that room
            replies = room.cohost.llm
            view.update(failing=bool(replies and replies.failing),
                        last_error=replies.stats.last_error if replies else "",
                        last_first_token_ms=round(replies.stats.last_first_token_s * 1000)
                        if replies and replies.stats.last_first_token_s is not None else None)
        return view

    def _room(self, request: Request) -> tuple[Account, Room]:
        account = self.server.account(request)
        return account, self.server.rooms.owned(request.path_params["room"], account.id)

    async def get(self, request: Request) -> Response:
        return await guard(lambda: self._view(self.server.account(request).id))

    async def get_room(self, request: Request) -> Response:
        def run() -> Any:
            account, room = self._room(request)
            return self._view(account.id, room)
        return await guard(run)

    async def put(self, request: Request) -> Response:
        async def run() -> Any:
            account = self.server.account(request)
            self._store(await json_body(request), account.id, "account")
            self.apply(account.id, None)
            return self._view(account.id)
        return await guard(run)

    async def put_room(self, request: Request) -> Response:
        """A room's own endpoint; base_url null: the room uses its account's again."""
        async def run() -> Any:
            account, room = self._room(request)
            self._store(await json_body(request), room.id, "room")
            self.apply(account.id, room.id)
            return self._view(account.id, room)
        return await guard(run)

    def _store(self, body: dict[str, Any], owner_id: str, scope: str) -> None:
        settings = parse_settings(body, self.store.readable(owner_id, scope))
        if settings is None:
            self.store.clear(owner_id, scope)
        else:
            self.store.put(owner_id, settings, scope)

    def _to_test(self, body: dict[str, Any], account_id: str, room_id: str | None) -> LLMSettings:
        """The body's endpoint (before saving it; the stored key for the same address), or with an
        empty body the one in use."""
        if body:
            before = self.store.readable(room_id, "room") if room_id is not None else None
            settings = parse_settings(body, before or self.store.readable(account_id))
        else:
            settings = self.effective(account_id, room_id)
        if settings is None:
            raise ValueError("no LLM endpoint is set; give base_url and model")
        return settings

    async def test(self, request: Request) -> Response:
        async def run() -> Any:
            account = self.server.account(request)
            return await test_endpoint(self._to_test(await json_body(request), account.id, None))
        return await guard(run)

    async def test_room(self, request: Request) -> Response:
        async def run() -> Any:
            account, room = self._room(request)
            return await test_endpoint(self._to_test(await json_body(request), account.id, room.id))
        return await guard(run)

    async def models_room(self, request: Request) -> Response:
        """The model list of the body's endpoint ({base_url, api_key?}) or the room's, for the console."""
        async def run() -> Any:
            account, room = self._room(request)
            body = await json_body(request)
            if body:
                body = {"model": "any", **body}  # only the address and key matter here
            return await list_models(self._to_test(body, account.id, room.id))
        return await guard(run)
