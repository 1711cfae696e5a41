"""The store of cloned voices: encrypted at rest, owned by one account, gone for good when deleted.

Layout: rows in SQLite (`voices`, `voice_consents`), audio and engine prompts as files under
`data_dir/voices/<voice id>/`. Every voice has its own random 256-bit data key; files and every
column that says something about the person (name, transcript, reference clips with their text,
metadata such as the upload's file name, the consent's who/statement/recording hash) are AES-GCM
ciphertext under it, with associated data naming the voice, its owner and the purpose, so a value
copied onto another voice, owner or column fails to decrypt. Rows written in clear by an older
version are sealed when the store opens. The data key
is stored only wrapped (AES key wrap, RFC 3394) by the server key, which lives in its own file
outside the database (`load_server_key`), so a leaked database or data directory alone reveals
nothing.

Ownership: every call names the owner; a voice of another owner is reported exactly like a voice
that does not exist (`VoiceNotFound`), so nobody can probe which voice ids exist.

Deletion, in an order a crash at any point leaves completable: (1) one transaction marks the row
`deleting` and overwrites the wrapped key and sealed columns (from here the voice is gone for
every reader, and its ciphertext is unreadable), the WAL is checkpointed; (2) files are overwritten
and unlinked; (3) rows are deleted with `PRAGMA secure_delete=ON` (SQLite zeroes freed content)
and the WAL is checkpointed again. Opening the store finishes any deletion a crash interrupted and
removes voice folders with no row (a creation that crashed before its row was committed). In-memory
caches are dropped and `on_delete` listeners (engine-side cached tensors) are told. Without the key,
any copy that escaped (a backup, a flash block the overwrite missed) stays unreadable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

log = logging.getLogger(__name__)

_FORMAT = b"VXV1"  # file header: format version, so a future format can be told apart
_NONCE = 12


class VoiceStoreError(RuntimeError):
    """Base of the store's errors; messages are for humans."""


class VoiceNotFound(VoiceStoreError, KeyError):
    """No such voice for this owner (also what other owners' voices look like)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "voice not found"


class VoiceDataCorrupted(VoiceStoreError):
    """Stored ciphertext or its key failed authentication: tampered with, or damaged."""


def load_server_key(path: str | os.PathLike[str]) -> bytes:
    """Read the 32-byte server key from `path`, creating it (mode 0600, random) on first use."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = p.read_bytes()
        if len(key) != 32:
            raise VoiceStoreError(f"server key file {p} must hold exactly 32 bytes, it holds {len(key)}") from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


@dataclass(frozen=True)
class Consent:
    """The owner's statement that the voice is theirs (or that they may clone it)."""

    who: str  # the person who consented, as they identified themselves
    statement: str  # the text they agreed to
    recording_sha256: str = ""  # which upload; the store hashes the audio when left empty
    at: float | None = None  # unix time; now when left empty


@dataclass(frozen=True)
class VoiceRecord:
    id: str
    owner: str
    name: str
    created_at: float
    sample_rate: int
    n_samples: int
    reference: dict[str, Any]  # reference clip offsets (samples at sample_rate), see enrollment/reference.py
    transcript: str
    consent: Consent
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.n_samples / self.sample_rate


_SCHEMA = """
CREATE TABLE IF NOT EXISTS voices (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at REAL NOT NULL,
    sample_rate INTEGER NOT NULL,
    n_samples INTEGER NOT NULL,
    reference TEXT NOT NULL,
    transcript BLOB NOT NULL,
    meta TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    deleting INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS voices_owner ON voices(owner);
CREATE TABLE IF NOT EXISTS voice_consents (
    voice_id TEXT PRIMARY KEY REFERENCES voices(id) ON DELETE CASCADE,
    owner TEXT NOT NULL,
    who TEXT NOT NULL,
    statement TEXT NOT NULL,
    recording_sha256 TEXT NOT NULL,
    at REAL NOT NULL
);
"""


_CONSENT_FIELDS = ("who", "statement", "recording_sha256")


class VoiceStore:
    """Voices of many owners in one SQLite database and one data directory (see the module docstring)."""

    def __init__(
        self, db: str | os.PathLike[str] | sqlite3.Connection, data_dir: str | os.PathLike[str], server_key: bytes
    ) -> None:
        if len(server_key) not in (16, 24, 32):
            raise VoiceStoreError("the server key must be 16, 24 or 32 bytes")
        self._kek = bytes(server_key)
        if not isinstance(db, sqlite3.Connection):
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        self._db = db if isinstance(db, sqlite3.Connection) else sqlite3.connect(db, check_same_thread=False)
        self._lock = threading.RLock()
        self.data_dir = Path(data_dir)
        (self.data_dir / "voices").mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._lock:
            # Freed pages are zeroed, not left readable. Connection-wide, which suits a shared accounts
            # database too (deleting a token should not leave it in a free page either).
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(_SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(voices)")}
            if "deleting" not in columns:  # a database from before crash-safe deletion
                self._db.execute("ALTER TABLE voices ADD COLUMN deleting INTEGER NOT NULL DEFAULT 0")
            self._db.commit()
        self._prompts: dict[str, bytes] = {}  # decrypted prompt blobs, by voice id
        self._listeners: list[Callable[[str], None]] = []
        self._recover()
        self._seal_clear_rows()

    # -- creating and reading -------------------------------------------------------------------

    def create(
        self,
        owner: str,
        name: str,
        audio: np.ndarray,
        sample_rate: int,
        reference: dict[str, Any] | None,
        transcript: str,
        consent: Consent,
        meta: dict[str, Any] | None = None,
    ) -> VoiceRecord:
        """Store a new voice for `owner`: `audio` is mono float32 PCM (the enrollment recording)."""
        if not owner:
            raise VoiceStoreError("a voice needs an owner")
        pcm = np.ascontiguousarray(audio, dtype="<f4").reshape(-1)
        voice_id = "v_" + secrets.token_urlsafe(12)
        data_key = AESGCM.generate_key(bit_length=256)
        consent = Consent(
            who=consent.who,
            statement=consent.statement,
            recording_sha256=consent.recording_sha256 or hashlib.sha256(pcm.tobytes()).hexdigest(),
            at=consent.at if consent.at is not None else time.time(),
        )
        record = VoiceRecord(
            voice_id, owner, name, time.time(), int(sample_rate), len(pcm), dict(reference or {}), transcript,
            consent, dict(meta or {}),
        )
        folder = self._folder(voice_id)
        folder.mkdir(mode=0o700, parents=True)
        try:
            self._write(folder / "audio.bin", self._seal(data_key, voice_id, owner, "audio", pcm.tobytes()))
            with self._lock:
                self._db.execute(
                    "INSERT INTO voices (id, owner, name, created_at, sample_rate, n_samples, reference, transcript,"
                    " meta, wrapped_key) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        voice_id, owner, self._seal_text(data_key, voice_id, owner, "name", name),
                        record.created_at, record.sample_rate, record.n_samples,
                        self._seal_text(data_key, voice_id, owner, "reference", json.dumps(record.reference)),
                        self._seal_text(data_key, voice_id, owner, "transcript", transcript),
                        self._seal_text(data_key, voice_id, owner, "meta", json.dumps(record.meta)),
                        aes_key_wrap(self._kek, data_key),
                    ),
                )
                self._db.execute(
                    "INSERT INTO voice_consents VALUES (?,?,?,?,?,?)",
                    (voice_id, owner, *self._seal_consent(data_key, voice_id, owner, consent.who, consent.statement,
                                                          consent.recording_sha256), consent.at),
                )
                self._db.commit()
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return record

    def list(self, owner: str) -> list[VoiceRecord]:
        """The owner's voices, oldest first."""
        with self._lock:
            ids = [r[0] for r in self._db.execute(
                "SELECT id FROM voices WHERE owner=? AND deleting=0 ORDER BY created_at, id", (owner,))]
        return [self.get(owner, i) for i in ids]

    def get(self, owner: str, voice_id: str) -> VoiceRecord:
        row, key = self._row(owner, voice_id)
        with self._lock:
            c = self._db.execute(
                "SELECT who, statement, recording_sha256, at FROM voice_consents WHERE voice_id=?", (voice_id,)
            ).fetchone()
        if c:
            who, statement, sha = (self._open_text(key, voice_id, owner, f"consent:{field}", value)
                                   for field, value in zip(_CONSENT_FIELDS, c[:3], strict=True))
            consent = Consent(who, statement, sha, c[3])
        else:
            consent = Consent("", "")

        def text(column: str) -> str:
            return self._open_text(key, voice_id, owner, column, row[column])

        return VoiceRecord(
            voice_id, owner, text("name"), row["created_at"], row["sample_rate"], row["n_samples"],
            json.loads(text("reference")), text("transcript"), consent, json.loads(text("meta")),
        )

    def rename(self, owner: str, voice_id: str, name: str) -> VoiceRecord:
        _, key = self._row(owner, voice_id)
        with self._lock:
            self._db.execute("UPDATE voices SET name=? WHERE id=? AND owner=?",
                             (self._seal_text(key, voice_id, owner, "name", name), voice_id, owner))
            self._db.commit()
        return self.get(owner, voice_id)

    def set_reference(self, owner: str, voice_id: str, reference: dict[str, Any], transcript: str) -> VoiceRecord:
        """Replace the chosen reference clip(s) and transcript; engine prompts made from the old one go."""
        _, key = self._row(owner, voice_id)
        with self._lock:
            self._db.execute(
                "UPDATE voices SET reference=?, transcript=? WHERE id=? AND owner=?",
                (self._seal_text(key, voice_id, owner, "reference", json.dumps(reference)),
                 self._seal_text(key, voice_id, owner, "transcript", transcript), voice_id, owner),
            )
            self._db.commit()
            for k in [k for k in self._prompts if k.startswith(voice_id + "/")]:
                del self._prompts[k]
        for path in self._folder(voice_id).glob("prompt-*.bin"):
            _shred(path)
        return self.get(owner, voice_id)

    def load_audio(self, owner: str, voice_id: str) -> tuple[np.ndarray, int]:
        """The enrollment recording: (float32 mono samples, sample rate)."""
        row, key = self._row(owner, voice_id)
        blob = self._read(voice_id, "audio.bin")
        pcm = self._open(key, voice_id, owner, "audio", blob)
        return np.frombuffer(pcm, dtype="<f4").copy(), int(row["sample_rate"])

    def put_prompt(self, owner: str, voice_id: str, blob: bytes, engine: str = "default") -> None:
        """Store the engine's precomputed prompt for this voice (serialised tensors, opaque here)."""
        _, key = self._row(owner, voice_id)
        purpose = f"prompt:{engine}"
        self._write(self._folder(voice_id) / f"prompt-{_safe(engine)}.bin", self._seal(key, voice_id, owner, purpose, blob))
        with self._lock:
            self._prompts[f"{voice_id}/{engine}"] = bytes(blob)

    def get_prompt(self, owner: str, voice_id: str, engine: str = "default") -> bytes | None:
        """The engine's prompt, or None when none was stored yet."""
        _, key = self._row(owner, voice_id)  # checks ownership even when the prompt is cached
        cache_key = f"{voice_id}/{engine}"
        with self._lock:
            if cache_key in self._prompts:
                return self._prompts[cache_key]
        path = self._folder(voice_id) / f"prompt-{_safe(engine)}.bin"
        if not path.exists():
            return None
        blob = self._open(key, voice_id, owner, f"prompt:{engine}", path.read_bytes())
        with self._lock:
            self._prompts[cache_key] = blob
        return blob

    # -- deleting ---------------------------------------------------------------------------------

    def on_delete(self, listener: Callable[[str], None]) -> None:
        """Call `listener(voice_id)` after a voice is deleted (to drop engine-side caches)."""
        self._listeners.append(listener)

    def delete(self, owner: str, voice_id: str) -> None:
        """Destroy the voice's key, then its files, then its rows (see the module docstring)."""
        self._row(owner, voice_id)
        with self._lock:
            # The commit point: after it the voice is unreadable and a restart completes the rest.
            self._db.execute(
                "UPDATE voices SET deleting=1, wrapped_key=zeroblob(length(wrapped_key)), "
                "name=zeroblob(length(name)), reference=zeroblob(length(reference)), "
                "transcript=zeroblob(length(transcript)), meta=zeroblob(length(meta)) WHERE id=? AND owner=?",
                (voice_id, owner),
            )
            self._db.commit()
            self._checkpoint()  # the key must not survive even in a WAL frame
            for k in [k for k in self._prompts if k.startswith(voice_id + "/")]:
                del self._prompts[k]
        self._finish_deletion(voice_id)
        for listener in self._listeners:
            listener(voice_id)

    def _finish_deletion(self, voice_id: str) -> None:
        """Steps 2 and 3 of a deletion whose key is already destroyed; safe to run again."""
        folder = self._folder(voice_id)
        if folder.exists():
            for f in folder.iterdir():
                _shred(f)
            shutil.rmtree(folder, ignore_errors=True)
        with self._lock:
            self._db.execute("DELETE FROM voice_consents WHERE voice_id=?", (voice_id,))
            self._db.execute("DELETE FROM voices WHERE id=? AND deleting=1", (voice_id,))
            self._db.commit()
            self._checkpoint()

    def _recover(self) -> None:
        """Finish deletions a crash interrupted; remove voice folders no row owns (a creation that
        crashed before its row was committed) and half-written files."""
        with self._lock:
            deleting = [r[0] for r in self._db.execute("SELECT id FROM voices WHERE deleting=1")]
            known = {r[0] for r in self._db.execute("SELECT id FROM voices WHERE deleting=0")}
        for voice_id in deleting:
            log.info("finishing the deletion of voice %s that was interrupted", voice_id)
            self._finish_deletion(voice_id)
        for entry in (self.data_dir / "voices").iterdir():
            if not entry.is_dir():
                _shred(entry)  # nothing but voice folders belongs here
            elif entry.name in known:
                for partial in entry.glob("*.tmp"):  # a write cut off before its rename
                    _shred(partial)
            else:
                log.info("removing %s: no voice owns it", entry)
                for f in entry.iterdir():
                    _shred(f)
                shutil.rmtree(entry, ignore_errors=True)

    def _seal_clear_rows(self) -> None:
        """Seal values an older version stored in clear (names, reference clips, metadata, consent)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT v.id, v.owner, v.name, v.reference, v.meta, v.wrapped_key, "
                "c.who, c.statement, c.recording_sha256 FROM voices v LEFT JOIN voice_consents c ON c.voice_id = v.id "
                "WHERE v.deleting=0 AND (typeof(v.name)='text' OR typeof(v.reference)='text' OR typeof(v.meta)='text' "
                "OR typeof(c.who)='text')"
            ).fetchall()
            if not rows:
                return
            for voice_id, owner, name, reference, meta, wrapped, who, statement, sha in rows:
                try:
                    key = aes_key_unwrap(self._kek, wrapped)
                except InvalidUnwrap:
                    log.warning("voice %s: cannot seal its old clear-text columns: its key does not open with "
                                "this server key", voice_id)
                    continue
                self._db.execute(
                    "UPDATE voices SET name=?, reference=?, meta=? WHERE id=?",
                    (*(value if isinstance(value, bytes) else self._seal_text(key, voice_id, owner, column, value)
                       for column, value in (("name", name), ("reference", reference), ("meta", meta))), voice_id),
                )
                if isinstance(who, str):
                    self._db.execute(
                        "UPDATE voice_consents SET who=?, statement=?, recording_sha256=? WHERE voice_id=?",
                        (*self._seal_consent(key, voice_id, owner, who, statement, sha), voice_id),
                    )
            self._db.commit()
            self._checkpoint()  # no clear copy left in the WAL; secure_delete zeroed the old cells
        log.info("sealed the clear-text columns of %d voice(s)", len(rows))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- internals --------------------------------------------------------------------------------

    def _folder(self, voice_id: str) -> Path:
        return self.data_dir / "voices" / _safe(voice_id)

    def _checkpoint(self) -> None:
        if self._db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _row(self, owner: str, voice_id: str) -> tuple[sqlite3.Row, bytes]:
        with self._lock:
            cur = self._db.execute(
                "SELECT name, created_at, sample_rate, n_samples, reference, transcript, meta, wrapped_key "
                "FROM voices WHERE id=? AND owner=? AND deleting=0",
                (voice_id, owner),
            )
            cur.row_factory = sqlite3.Row
            row = cur.fetchone()
        if row is None:
            raise VoiceNotFound(f"no voice {voice_id!r}")
        try:
            key = aes_key_unwrap(self._kek, row["wrapped_key"])
        except InvalidUnwrap as exc:
            raise VoiceDataCorrupted(
                f"the key of voice {voice_id!r} does not open with this server key (wrong key file, or tampered)"
            ) from exc
        return row, key

    @staticmethod
    def _aad(voice_id: str, owner: str, purpose: str) -> bytes:
        return json.dumps(["voxroom-voice", 1, voice_id, owner, purpose]).encode()

    def _seal(self, key: bytes, voice_id: str, owner: str, purpose: str, plaintext: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return _FORMAT + nonce + AESGCM(key).encrypt(nonce, plaintext, self._aad(voice_id, owner, purpose))

    def _seal_text(self, key: bytes, voice_id: str, owner: str, purpose: str, text: str) -> bytes:
        return self._seal(key, voice_id, owner, purpose, text.encode())

    def _open_text(self, key: bytes, voice_id: str, owner: str, purpose: str, blob: bytes) -> str:
        return self._open(key, voice_id, owner, purpose, blob).decode()

    def _seal_consent(self, key: bytes, voice_id: str, owner: str, who: str, statement: str,
                      sha: str) -> tuple[bytes, ...]:
        return tuple(self._seal_text(key, voice_id, owner, f"consent:{field}", value)
                     for field, value in zip(_CONSENT_FIELDS, (who, statement, sha), strict=True))

    def _open(self, key: bytes, voice_id: str, owner: str, purpose: str, blob: bytes) -> bytes:
        if blob[:4] != _FORMAT:
            raise VoiceDataCorrupted(f"stored {purpose} of voice {voice_id!r} is not in a known format")
        nonce, body = blob[4 : 4 + _NONCE], blob[4 + _NONCE :]
        try:
            return AESGCM(key).decrypt(nonce, body, self._aad(voice_id, owner, purpose))
        except InvalidTag as exc:
            raise VoiceDataCorrupted(
                f"stored {purpose} of voice {voice_id!r} failed its integrity check (modified or damaged)"
            ) from exc

    def _read(self, voice_id: str, name: str) -> bytes:
        path = self._folder(voice_id) / name
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise VoiceDataCorrupted(f"the {name} file of voice {voice_id!r} is missing") from exc

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def _safe(part: str) -> str:
    """Ids and engine names become path parts: allow nothing that could leave the folder."""
    cleaned = "".join(c for c in part if c.isalnum() or c in "-_")
    if not cleaned:
        raise VoiceNotFound(f"no voice {part!r}")
    return cleaned


def _shred(path: Path) -> None:
    """Overwrite a file in place before unlinking it (best effort: the key's destruction is the real guard)."""
    try:
        size = path.stat().st_size
        with open(path, "r+b") as f:
            f.write(secrets.token_bytes(size))
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        pass
    path.unlink(missing_ok=True)
