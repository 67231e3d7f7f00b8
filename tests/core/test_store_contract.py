"""The store contract against memory and SQLite; SQLite's own faults (a lost file, read only, migrations)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core import StoreError, StoreUnavailable
from core.store import ConversationStore, MemoryStore, SQLiteStore
from tests.contracts.store_contract import HISTORY_LIMIT, KEY, MetaContract, StoreContract, conv, turn
from tests.helpers import fill, immutable, tmpfs


class TestMemoryStore(StoreContract, MetaContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[ConversationStore]:
        async with MemoryStore(history_limit=HISTORY_LIMIT) as s:
            yield s


class TestSQLiteStore(StoreContract, MetaContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[ConversationStore]:
        async with SQLiteStore(tmp_path / "store" / "ccbridge.db", history_limit=HISTORY_LIMIT) as s:
            yield s


async def test_sqlite_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "persist.db"
    async with SQLiteStore(path) as first:
        await first.put(conv(message_count=2))
        await first.put_turn(turn())
        store_id = await first.store_id()
    async with SQLiteStore(path) as second:
        loaded = await second.get(KEY)
        assert loaded is not None and loaded.message_count == 2
        assert len(await second.turns(KEY)) == 1
        assert await second.store_id() == store_id


async def test_sqlite_unopened_or_unwritable_is_a_clear_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not open"):
        await SQLiteStore(tmp_path / "x.db").get(KEY)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable, match="cannot open the SQLite store"):
        await SQLiteStore(blocker / "sub" / "x.db").open()


async def test_a_version_1_database_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE conversations (key TEXT PRIMARY KEY, platform TEXT NOT NULL, owner TEXT NOT NULL, thread TEXT,
            session_id TEXT NOT NULL, cwd TEXT NOT NULL, model TEXT, created_at REAL NOT NULL,
            last_active_at REAL NOT NULL, message_count INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'idle', metadata TEXT NOT NULL DEFAULT '{}');
        CREATE TABLE turns (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, session_id TEXT NOT NULL,
            user_id TEXT NOT NULL, user_text TEXT NOT NULL, reply_text TEXT NOT NULL,
            tool_calls TEXT NOT NULL DEFAULT '[]', cost_usd REAL, duration_ms INTEGER, status TEXT NOT NULL,
            error TEXT, started_at REAL NOT NULL, finished_at REAL);
        INSERT INTO conversations VALUES ('telegram:42', 'telegram', '42', NULL, 's-old', '/ws', NULL, 1, 2, 3,
            'running', '{}');
        INSERT INTO turns (key, session_id, user_id, user_text, reply_text, status, started_at)
            VALUES ('telegram:42', 's-old', '42', 'old question', 'old answer', 'ok', 1);
        PRAGMA user_version=1;
        """
    )
    db.close()
    async with SQLiteStore(path) as store:
        loaded = await store.get(KEY)
        assert loaded is not None and (loaded.session_id, loaded.message_count) == ("s-old", 3)
        [old] = await store.turns(KEY)
        assert (old.user_text, old.reply_text, old.turn_id) == ("old question", "old answer", "legacy-1")
        assert await store.mark_interrupted("any") == 1  # recorded without an instance: anyone's to mark
        await store.put_turn(turn(text="new"))
        assert [t.user_text for t in await store.turns(KEY)] == ["old question", "new"]


async def test_a_deleted_database_file_is_unavailable_and_a_restored_one_is_used_again(tmp_path: Path) -> None:
    path = tmp_path / "data" / "ccbridge.db"
    async with SQLiteStore(path) as store:
        await store.put(conv())
        backup = tmp_path / "backup.db"
        backup.write_bytes(path.read_bytes())
        for suffix in ("", "-wal", "-shm"):
            (path.parent / f"ccbridge.db{suffix}").unlink(missing_ok=True)
        with pytest.raises(StoreUnavailable, match="deleted"):
            await store.put(conv(session="s-2"))
        with pytest.raises(StoreUnavailable):
            await store.ping(write=True)
        assert not path.exists()  # never silently recreated
        path.write_bytes(backup.read_bytes())
        await store.ping(write=True)  # back by itself
        await store.put(conv(session="s-3"))
        assert (await store.get(KEY)).session_id == "s-3"  # type: ignore[union-attr]


async def test_a_read_only_database_is_unavailable_for_writes_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    async with SQLiteStore(path) as store:
        await store.put(conv())
        # the database and its log, not the shared-memory index SQLite maps (that would be a SIGBUS)
        with immutable(path, path.with_name("ro.db-wal")):
            assert (await store.get(KEY)) is not None  # reads still work
            with pytest.raises(StoreUnavailable):
                await store.put(conv(session="s-2"))
            with pytest.raises(StoreUnavailable):
                await store.ping(write=True)
        await store.ping(write=True)  # writable again: back by itself
        await store.put(conv(session="s-3"))
        assert (await store.get(KEY)).session_id == "s-3"  # type: ignore[union-attr]


async def test_a_full_disk_is_unavailable_and_recovers(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "mnt", size="512k") as mnt:
        async with SQLiteStore(mnt / "full.db") as store:
            await store.put(conv())
            filler = fill(mnt)
            with pytest.raises(StoreUnavailable, match="full"):
                for i in range(100):
                    await store.put_turn(turn(text=f"{i} " + "y" * 8000))
            filler.unlink()
            await store.ping(write=True)
            await store.put_turn(turn(text="after"))
            assert (await store.turns(KEY, limit=1))[0].user_text == "after"
