"""The voice store: isolation between owners, encryption at rest, deletion that leaves nothing, tampering."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from voxroom.models import voice_store as voice_store_module
from voxroom.models.voice_store import (
    Consent,
    VoiceDataCorrupted,
    VoiceNotFound,
    VoiceStore,
    VoiceStoreError,
    load_server_key,
)

TRANSCRIPT = "Every evening, the old harbour fills with people who come to watch the boats return."


def _audio(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(16000 * 2) / 16000
    return (0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture
def store(tmp_path: Path) -> VoiceStore:
    key = load_server_key(tmp_path / "secrets" / "server.key")
    s = VoiceStore(tmp_path / "data" / "voxroom.db", tmp_path / "data", key)
    yield s
    s.close()


def _create(store: VoiceStore, owner: str = "alice", seed: int = 0):
    return store.create(
        owner, "My voice", _audio(seed), 16000, {"start": 100, "end": 50000}, TRANSCRIPT,
        Consent(who="Alice Example", statement="This is my own voice and I agree to clone it."),
    )


def _disk_bytes(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_server_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "k" / "server.key"
    key = load_server_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_server_key(path) == key
    path.write_bytes(b"short")
    with pytest.raises(VoiceStoreError, match="32 bytes"):
        load_server_key(path)


def test_create_get_list_rename_and_read_back(store: VoiceStore) -> None:
    rec = _create(store)
    assert rec.owner == "alice" and rec.duration == pytest.approx(2.0)
    got = store.get("alice", rec.id)
    assert got.transcript == TRANSCRIPT and got.reference == {"start": 100, "end": 50000}
    assert [v.id for v in store.list("alice")] == [rec.id]
    assert store.rename("alice", rec.id, "Studio").name == "Studio"
    audio, rate = store.load_audio("alice", rec.id)
    assert rate == 16000 and np.array_equal(audio, _audio(0))
    assert store.get_prompt("alice", rec.id) is None
    store.put_prompt("alice", rec.id, b"\x01\x02 prompt tensors")
    assert store.get_prompt("alice", rec.id) == b"\x01\x02 prompt tensors"


def test_consent_record_is_kept(store: VoiceStore) -> None:
    import hashlib

    rec = _create(store)
    consent = store.get("alice", rec.id).consent
    assert consent.who == "Alice Example"
    assert "own voice" in consent.statement
    assert consent.at is not None and consent.at > 1.7e9
    assert consent.recording_sha256 == hashlib.sha256(_audio(0).astype("<f4").tobytes()).hexdigest()


def test_other_owner_can_do_nothing_and_learns_nothing(store: VoiceStore) -> None:
    rec = _create(store, "alice")
    assert store.list("mallory") == []
    for action in (
        lambda: store.get("mallory", rec.id),
        lambda: store.load_audio("mallory", rec.id),
        lambda: store.get_prompt("mallory", rec.id),
        lambda: store.put_prompt("mallory", rec.id, b"x"),
        lambda: store.rename("mallory", rec.id, "mine now"),
        lambda: store.delete("mallory", rec.id),
    ):
        with pytest.raises(VoiceNotFound) as foreign:
            action()
        # Same error as for an id that does not exist: no way to tell that the voice is there.
        with pytest.raises(VoiceNotFound) as missing:
            store.get("mallory", "v_doesnotexist")
        assert type(foreign.value) is type(missing.value)
    assert store.get("alice", rec.id).name == "My voice"  # untouched


def test_prompt_cache_does_not_bypass_ownership(store: VoiceStore) -> None:
    rec = _create(store)
    store.put_prompt("alice", rec.id, b"cached prompt")
    assert store.get_prompt("alice", rec.id) == b"cached prompt"
    with pytest.raises(VoiceNotFound):
        store.get_prompt("mallory", rec.id)


def test_nothing_is_stored_in_plaintext(store: VoiceStore, tmp_path: Path) -> None:
    rec = _create(store)
    store.put_prompt("alice", rec.id, b"PROMPT-PLAINTEXT-MARKER" * 4)
    pcm = _audio(0).astype("<f4").tobytes()
    for path, data in _disk_bytes(tmp_path / "data").items():
        assert pcm[1000:1064] not in data, path
        assert TRANSCRIPT.encode() not in data, path
        assert b"PROMPT-PLAINTEXT-MARKER" not in data, path


def test_delete_leaves_no_trace(tmp_path: Path) -> None:
    key = load_server_key(tmp_path / "server.key")
    db_path = tmp_path / "data" / "voxroom.db"
    db_path.parent.mkdir()
    conn = sqlite3.connect(db_path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    store = VoiceStore(conn, tmp_path / "data", key)
    keep = _create(store, "alice", seed=1)
    rec = _create(store, "alice", seed=0)
    store.put_prompt("alice", rec.id, b"PROMPT-PLAINTEXT-MARKER" * 4)
    wrapped = conn.execute("SELECT wrapped_key FROM voices WHERE id=?", (rec.id,)).fetchone()[0]
    sealed_audio = (tmp_path / "data" / "voices" / rec.id / "audio.bin").read_bytes()
    dropped: list[str] = []
    store.on_delete(dropped.append)

    store.delete("alice", rec.id)

    assert dropped == [rec.id]
    with pytest.raises(VoiceNotFound):
        store.get("alice", rec.id)
    with pytest.raises(VoiceNotFound):
        store.get_prompt("alice", rec.id)  # the in-memory cache is gone too
    assert not (tmp_path / "data" / "voices" / rec.id).exists()
    assert conn.execute("SELECT count(*) FROM voice_consents WHERE voice_id=?", (rec.id,)).fetchone()[0] == 0
    pcm = _audio(0).astype("<f4").tobytes()
    files = _disk_bytes(tmp_path / "data")
    assert any(p.name.startswith("voxroom.db") for p in files)
    for path, data in files.items():
        assert rec.id.encode() not in data, path
        assert wrapped not in data, path  # the key is destroyed, not just unlinked
        assert sealed_audio[100:164] not in data, path
        assert pcm[1000:1064] not in data, path
        assert TRANSCRIPT.encode() not in data, path
    # The other voice is intact.
    assert np.array_equal(store.load_audio("alice", keep.id)[0], _audio(1))
    store.close()


def test_tampered_audio_is_detected(store: VoiceStore) -> None:
    rec = _create(store)
    path = store.data_dir / "voices" / rec.id / "audio.bin"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(VoiceDataCorrupted, match="integrity"):
        store.load_audio("alice", rec.id)


def test_ciphertext_moved_to_another_voice_does_not_open(store: VoiceStore) -> None:
    a, b = _create(store, seed=0), _create(store, seed=1)
    folder = store.data_dir / "voices"
    (folder / b.id / "audio.bin").write_bytes((folder / a.id / "audio.bin").read_bytes())
    with pytest.raises(VoiceDataCorrupted):
        store.load_audio("alice", b.id)


def test_wrong_server_key_cannot_open_voices(tmp_path: Path) -> None:
    key = load_server_key(tmp_path / "server.key")
    store = VoiceStore(tmp_path / "db.sqlite", tmp_path / "data", key)
    rec = _create(store)
    store.close()
    other = VoiceStore(tmp_path / "db.sqlite", tmp_path / "data", bytes(32))
    with pytest.raises(VoiceDataCorrupted, match="server key"):
        other.load_audio("alice", rec.id)
    other.close()


def test_path_tricks_in_ids_find_nothing(store: VoiceStore) -> None:
    _create(store)
    for bad in ("../voxroom.db", "", "v_/../../x"):
        with pytest.raises(VoiceNotFound):
            store.load_audio("alice", bad)


def test_names_file_names_reference_text_and_consent_are_sealed(store: VoiceStore, tmp_path: Path) -> None:
    """The issue: transcripts inside the reference clips, voice names and upload file names were in clear."""
    rec = store.create(
        "alice", "Grandma-Rosalind-voice", _audio(0), 16000,
        {"main": {"start": 0, "end": 16000, "transcript": "Quixotic-zephyr-sentence"}}, TRANSCRIPT,
        Consent(who="Rosalind-Q-Person", statement="I-agree-statement"), meta={"source": "secret-take-name.m4a"},
    )
    got = store.get("alice", rec.id)
    assert got.name == "Grandma-Rosalind-voice" and got.meta["source"] == "secret-take-name.m4a"
    assert got.reference["main"]["transcript"] == "Quixotic-zephyr-sentence"
    assert (got.consent.who, got.consent.statement) == ("Rosalind-Q-Person", "I-agree-statement")
    store.rename("alice", rec.id, "Renamed-Zanzibar")
    assert store.get("alice", rec.id).name == "Renamed-Zanzibar"
    for path, data in _disk_bytes(tmp_path / "data").items():
        for clear in (b"Grandma-Rosalind", b"secret-take-name", b"Quixotic-zephyr", b"Rosalind-Q-Person",
                      b"I-agree-statement", b"Renamed-Zanzibar"):
            assert clear not in data, (path, clear)


def test_rows_an_older_version_wrote_in_clear_are_sealed_on_open(tmp_path: Path) -> None:
    key = load_server_key(tmp_path / "server.key")
    db_path = tmp_path / "data" / "voxroom.db"
    store = VoiceStore(db_path, tmp_path / "data", key)
    rec = _create(store)
    store.close()
    old = sqlite3.connect(db_path)  # what the previous version kept: clear text in these columns
    old.execute("UPDATE voices SET name='Old-Clear-Name', reference='{\"t\": \"Old-Clear-Ref\"}', "
                "meta='{\"source\": \"old-clear-file.wav\"}' WHERE id=?", (rec.id,))
    old.execute("UPDATE voice_consents SET who='Old-Clear-Who', statement='stmt', recording_sha256='abc'")
    old.commit()
    old.close()

    store = VoiceStore(db_path, tmp_path / "data", key)
    got = store.get("alice", rec.id)
    assert (got.name, got.reference, got.meta, got.consent.who) == (
        "Old-Clear-Name", {"t": "Old-Clear-Ref"}, {"source": "old-clear-file.wav"}, "Old-Clear-Who")
    store.close()
    for path, data in _disk_bytes(tmp_path / "data").items():
        for clear in (b"Old-Clear-Name", b"Old-Clear-Ref", b"old-clear-file", b"Old-Clear-Who"):
            assert clear not in data, (path, clear)


# A child process opens the store and is killed with SIGKILL at one step of a deletion (or of a
# creation); the parent then opens the store as a restarted server would.
_CRASH_CHILD = """
import os, signal, sys
import numpy as np
from voxroom.models import voice_store as vs

data, key_path, voice_id, point = sys.argv[1:5]
store = vs.VoiceStore(os.path.join(data, "voxroom.db"), data, vs.load_server_key(key_path))
calls = {"n": 0}

def die_on(nth, real):
    def step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return step

if point == "create":
    vs.aes_key_wrap = die_on(1, vs.aes_key_wrap)  # audio file written, row not yet committed
    store.create("alice", "new", np.zeros(16000, np.float32), 16000, {}, "t", vs.Consent("a", "b"))
else:
    if point == "before_checkpoint":
        vs.VoiceStore._checkpoint = die_on(1, vs.VoiceStore._checkpoint)
    elif point == "before_files":
        vs._shred = die_on(1, vs._shred)
    elif point == "between_files":
        vs._shred = die_on(2, vs._shred)
    elif point == "before_rows":
        vs.shutil.rmtree = die_on(1, vs.shutil.rmtree)
    store.delete("alice", voice_id)
sys.exit(3)  # not reached: the kill point was missed
"""


@pytest.mark.parametrize("point", ["before_checkpoint", "before_files", "between_files", "before_rows", "create"])
def test_a_crash_during_deletion_or_creation_leaves_no_orphans_after_a_restart(tmp_path: Path, point: str) -> None:
    import subprocess
    import sys

    data = tmp_path / "data"
    key_path = tmp_path / "server.key"
    key = load_server_key(key_path)
    db_path = data / "voxroom.db"
    data.mkdir()
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")  # as the server's database is
    conn.close()
    store = VoiceStore(db_path, data, key)
    keep = _create(store, seed=1)
    victim = _create(store, seed=0)
    store.put_prompt("alice", victim.id, b"PROMPT-PLAINTEXT-MARKER" * 4)
    wrapped = store._db.execute("SELECT wrapped_key FROM voices WHERE id=?", (victim.id,)).fetchone()[0]
    sealed_audio = (data / "voices" / victim.id / "audio.bin").read_bytes()
    store.close()

    child = subprocess.run([sys.executable, "-c", _CRASH_CHILD, str(data), str(key_path), victim.id, point],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -9, child.stderr

    store = VoiceStore(db_path, data, key)  # the restart
    expected = {keep.id} if point != "create" else {keep.id, victim.id}
    assert {v.id for v in store.list("alice")} == expected
    assert {p.name for p in (data / "voices").iterdir()} == expected  # no orphan folders
    assert np.array_equal(store.load_audio("alice", keep.id)[0], _audio(1))
    store.close()
    if point != "create":
        for path, blob in _disk_bytes(data).items():
            assert wrapped not in blob, path  # no usable key anywhere, so no usable ciphertext
            assert sealed_audio[100:164] not in blob, path
            assert victim.id.encode() not in blob, path


class _SimulatedCrash(BaseException):
    """Stands for the process dying: nothing after it runs (not even `except Exception`)."""


class VoiceStoreLifecycle(RuleBasedStateMachine):
    """Creations, renames, deletions, deletions cut short at any step, and restarts, in any order:
    the store always lists exactly the voices the model holds, and after a restart the disk holds a
    folder for exactly those voices and no half-deleted row."""

    CRASH_POINTS = ("_checkpoint", "_shred", "rmtree")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="voxroom-store-"))
        self.key = load_server_key(self.tmp / "server.key")
        self.store = self._open()
        self.model: dict[str, str] = {}  # voice id -> name
        self.owners: dict[str, str] = {}  # voice id -> owner
        self.serial = 0

    def _open(self) -> VoiceStore:
        return VoiceStore(self.tmp / "data" / "voxroom.db", self.tmp / "data", self.key)

    @rule(owner=st.sampled_from(["alice", "bob"]))
    def create(self, owner: str) -> None:
        self.serial += 1
        name = f"voice-{self.serial}"
        rec = self.store.create(owner, name, np.full(1600, 0.1, np.float32), 16000, {"n": self.serial}, "words",
                                Consent("who", "statement"))
        self.model[rec.id] = name
        self.owners[rec.id] = owner

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def rename(self, data: st.DataObject) -> None:
        voice_id = data.draw(st.sampled_from(sorted(self.model)))
        self.serial += 1
        self.store.rename(self.owners[voice_id], voice_id, f"renamed-{self.serial}")
        self.model[voice_id] = f"renamed-{self.serial}"

    @precondition(lambda self: self.model)
    @rule(data=st.data(), crash_at=st.one_of(st.none(), st.sampled_from(CRASH_POINTS)), nth=st.integers(1, 2))
    def delete(self, data: st.DataObject, crash_at: str | None, nth: int) -> None:
        voice_id = data.draw(st.sampled_from(sorted(self.model)))
        if crash_at is None:
            self.store.delete(self.owners[voice_id], voice_id)
        else:
            with pytest.MonkeyPatch.context() as patch:
                calls = {"n": 0}
                target: Any = {"_checkpoint": (VoiceStore, "_checkpoint"),
                               "_shred": (voice_store_module, "_shred"),
                               "rmtree": (voice_store_module.shutil, "rmtree")}[crash_at]
                real = getattr(*target)

                def step(*args: Any, **kwargs: Any) -> Any:
                    calls["n"] += 1
                    if calls["n"] == nth:
                        raise _SimulatedCrash
                    return real(*args, **kwargs)

                patch.setattr(*target, step)
                with contextlib.suppress(_SimulatedCrash):
                    self.store.delete(self.owners[voice_id], voice_id)
        del self.model[voice_id]  # every crash point is after the key was destroyed: the voice is gone

    @rule()
    def restart(self) -> None:
        self.store.close()
        self.store = self._open()
        folders = {p.name for p in (self.tmp / "data" / "voices").iterdir()}
        assert folders == set(self.model)
        deleting = self.store._db.execute("SELECT COUNT(*) FROM voices WHERE deleting=1").fetchone()[0]
        assert deleting == 0

    @invariant()
    def lists_what_the_model_holds(self) -> None:
        listed = {v.id: v.name for owner in ("alice", "bob") for v in self.store.list(owner)}
        assert listed == self.model

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


VoiceStoreLifecycle.TestCase.settings = settings(max_examples=25, stateful_step_count=12, deadline=None)
test_voice_store_lifecycle = VoiceStoreLifecycle.TestCase
