"""Durable rooms: each room's id, owner, name and co-host settings in the server's SQLite database.

`Rooms` writes a room here when it is made, when its settings change and when it is deleted, and
reads them all back at server start, so a restart (or a crash) brings every room back under the same
id: listener and overlay links minted before it keep working. Each room also keeps its link key: its
listener and OBS overlay links are signed with it and last until the host rotates it. What is live is not kept: queued chat,
the speech on air, listeners' connections, the host's microphone.

The database runs in autocommit mode with WAL, so each write is on disk when the call returns.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StoredRoom:
    id: str
    owner: str  # account id
    name: str
    created: float
    settings: dict[str, Any]  # RoomCoHost.stored_settings(): what `RoomCoHost.restore` takes back
    link_key: str  # the room's listener and overlay links carry it; a new one revokes them


def new_link_key() -> str:
    return secrets.token_urlsafe(12)


class RoomStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.execute("""CREATE TABLE IF NOT EXISTS rooms (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            created REAL NOT NULL,
            settings TEXT NOT NULL DEFAULT '{}',
            link_key TEXT)""")
        if "link_key" not in {row[1] for row in db.execute("PRAGMA table_info(rooms)")}:
            db.execute("ALTER TABLE rooms ADD COLUMN link_key TEXT")  # a database from before room links

    def all(self) -> list[StoredRoom]:
        """Every stored room; one stored before room links gets its link key now."""
        rows = self.db.execute("SELECT id, owner, name, created, settings, link_key FROM rooms "
                               "ORDER BY created").fetchall()
        return [StoredRoom(row[0], row[1], row[2], row[3], _settings(row[4]), row[5] or new_link_key())
                for row in rows]

    def save(self, room: StoredRoom) -> None:
        self.db.execute("INSERT INTO rooms (id, owner, name, created, settings, link_key) VALUES (?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT(id) DO UPDATE SET name = excluded.name, settings = excluded.settings, "
                        "link_key = excluded.link_key",
                        (room.id, room.owner, room.name, room.created, json.dumps(room.settings), room.link_key))

    def delete(self, room_id: str) -> None:
        self.db.execute("DELETE FROM rooms WHERE id = ?", (room_id,))


def _settings(text: str) -> dict[str, Any]:
    """A stored settings row; one that does not parse restores the room with default settings."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
