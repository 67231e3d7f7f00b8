"""SQLite store (the embedded default), through aiosqlite so the loop never blocks.

The schema is versioned (``PRAGMA user_version``) and migrated forward on open.
Faults are told apart: a database that cannot be written (read only, disk
full, I/O errors) or whose file was deleted while running raises
:class:`~core.errors.StoreUnavailable`; the store checks that its file is still
the one it opened before every operation, so a deleted data directory is noticed
at once (instead of writing into a file nobody can see) and a restored file is
reopened by itself.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any, Unpack

import aiosqlite

from ..errors import Fenced, StoreError, StoreUnavailable
from ..keys import ConversationKey
from .base import ConversationStore, ListFilter, check_filter
from .codec import (
    CONVERSATION_FIELDS,
    TURN_FIELDS,
    conversation_from_row,
    conversation_to_row,
    turn_from_row,
    turn_to_row,
)
from .records import Conversation, TurnRecord

# Each entry migrates the schema from version i to i + 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS conversations (
        key TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        owner TEXT NOT NULL,
        thread TEXT,
        session_id TEXT NOT NULL,
        cwd TEXT NOT NULL,
        model TEXT,
        created_at REAL NOT NULL,
        last_active_at REAL NOT NULL,
        message_count INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'idle',
        metadata TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX IF NOT EXISTS conversations_session ON conversations(session_id);
    CREATE INDEX IF NOT EXISTS conversations_owner ON conversations(platform, owner);
    CREATE INDEX IF NOT EXISTS conversations_thread ON conversations(platform, thread);
    CREATE TABLE IF NOT EXISTS turns (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL,
        session_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        user_text TEXT NOT NULL,
        reply_text TEXT NOT NULL,
        tool_calls TEXT NOT NULL DEFAULT '[]',
        cost_usd REAL,
        duration_ms INTEGER,
        status TEXT NOT NULL,
        error TEXT,
        started_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE INDEX IF NOT EXISTS turns_key ON turns(key, id);
    """,
    """
    ALTER TABLE conversations ADD COLUMN bot TEXT;
    ALTER TABLE conversations ADD COLUMN instance_id TEXT;
    ALTER TABLE conversations ADD COLUMN total_cost_usd REAL NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN cli_cost_usd REAL NOT NULL DEFAULT 0;
    CREATE INDEX IF NOT EXISTS conversations_active ON conversations(last_active_at);
    ALTER TABLE turns ADD COLUMN turn_id TEXT;
    ALTER TABLE turns ADD COLUMN instance_id TEXT;
    UPDATE turns SET turn_id = 'legacy-' || id WHERE turn_id IS NULL;
    CREATE UNIQUE INDEX IF NOT EXISTS turns_turn_id ON turns(turn_id);
    CREATE INDEX IF NOT EXISTS turns_running ON turns(status) WHERE status = 'running';
    CREATE TABLE IF NOT EXISTS seen_keys (key TEXT PRIMARY KEY, expires_at REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    """
    ALTER TABLE conversations ADD COLUMN fence INTEGER NOT NULL DEFAULT 0;
    """,
    # the transcript store's tables (core.transcripts.sqlite)
    """
    CREATE TABLE IF NOT EXISTS transcript_sessions (
        project_key TEXT NOT NULL,
        session_id TEXT NOT NULL,
        subpath TEXT NOT NULL DEFAULT '',
        mtime INTEGER NOT NULL,
        PRIMARY KEY (project_key, session_id, subpath)
    );
    CREATE TABLE IF NOT EXISTS transcript_entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        project_key TEXT NOT NULL,
        session_id TEXT NOT NULL,
        subpath TEXT NOT NULL DEFAULT '',
        uuid TEXT,
        entry TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS transcript_entries_key ON transcript_entries(project_key, session_id, subpath, id);
    CREATE UNIQUE INDEX IF NOT EXISTS transcript_entries_uuid
        ON transcript_entries(project_key, session_id, subpath, uuid) WHERE uuid IS NOT NULL;
    """,
    # listings newest first without sorting every matching row: one platform's (the admin listing),
    # one owner's, one thread's (the owner and thread indexes gain the order, so they stay the planner's pick)
    """
    CREATE INDEX IF NOT EXISTS conversations_platform_active ON conversations(platform, last_active_at);
    DROP INDEX IF EXISTS conversations_owner;
    CREATE INDEX IF NOT EXISTS conversations_owner_active ON conversations(platform, owner, last_active_at);
    DROP INDEX IF EXISTS conversations_thread;
    CREATE INDEX IF NOT EXISTS conversations_thread_active ON conversations(platform, thread, last_active_at);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_CONV_COLUMNS = CONVERSATION_FIELDS
_TURN_COLUMNS = TURN_FIELDS
_SEEN_PRUNE_EVERY = 500  # claims between two sweeps of expired keys
_USER_META = "user:"  # named values callers keep (the store's own, like store_id, have other names)


class SQLiteStore(ConversationStore):
    watch_identity = False  # the file is watched (ping): deleted, replaced, read-only

    def __init__(self, path: str | Path, history_limit: int = 1000) -> None:
        self.path = Path(path)
        self.history_limit = history_limit
        self._db: aiosqlite.Connection | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file we opened
        self._claims = 0
        self._reopen = asyncio.Lock()

    def describe(self) -> str:
        return f"SQLite {self.path}"

    @property
    def _in_memory(self) -> bool:
        return str(self.path) == ":memory:"

    # -- connection ------------------------------------------------------------
    async def open(self) -> None:
        if self._db is not None:
            return
        try:
            if not self._in_memory:
                await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
            db = await aiosqlite.connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open the SQLite store at {self.path}: {exc}") from exc
        try:
            db.row_factory = aiosqlite.Row
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode, fewer fsyncs
            await db.execute("PRAGMA busy_timeout=5000")
            await _migrate(db)
            await db.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('store_id', ?)", (uuid.uuid4().hex,))
            await db.commit()
        except sqlite3.Error as exc:
            await db.close()
            raise _classify(exc, f"cannot open the SQLite store at {self.path}") from exc
        self._db = db
        self._identity = None if self._in_memory else await asyncio.to_thread(_identity_of, self.path)

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the SQLite store is not open")
        return self._db

    async def _ensure_file(self) -> None:
        """Fail fast when the database file was deleted; reopen it when it was put back."""
        if self._in_memory or self._db is None:
            return
        current = await asyncio.to_thread(_identity_of, self.path)
        if current == self._identity:
            return
        if current is None:
            raise StoreUnavailable(
                f"the SQLite database {self.path} was deleted while the bot was running; restore it "
                "(from a backup, or the directory it was in) and ccbridge continues by itself"
            )
        async with self._reopen:  # the file was restored or replaced: use the one now at the path
            if await asyncio.to_thread(_identity_of, self.path) != self._identity:
                await self.close()
                await self.open()

    async def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        await self._ensure_file()
        try:
            async with self.db.execute(sql, params) as cur:
                return [dict(row) for row in await cur.fetchall()]
        except sqlite3.Error as exc:
            raise _classify(exc, "SQLite query failed") from exc

    async def _write(self, *statements: tuple[str, tuple[Any, ...]]) -> int:
        """Run statements in one transaction; returns the first one's row count."""
        await self._ensure_file()
        db = self.db
        try:
            first = -1
            for sql, params in statements:
                cur = await db.execute(sql, params)
                if first < 0:
                    first = cur.rowcount
            await db.commit()
            return first
        except sqlite3.Error as exc:
            try:
                await db.rollback()
            except sqlite3.Error:
                pass
            raise _classify(exc, "SQLite write failed") from exc

    #: for the transcript store sharing this database (:mod:`core.transcripts.sqlite`): a query, and
    #: statements run in one transaction (returning the first one's row count), with this store's checks
    fetch = _fetch
    write = _write

    # -- the contract ----------------------------------------------------------
    async def ping(self, *, write: bool = False) -> None:
        if self._db is None:
            try:
                await self.open()
            except StoreError as exc:
                raise StoreUnavailable(str(exc)) from exc
        await self._fetch("SELECT 1")
        if write:
            await self._write(
                ("INSERT OR REPLACE INTO meta (name, value) VALUES ('last_ping', ?)", (str(time.time()),))
            )

    async def store_id(self) -> str:
        rows = await self._fetch("SELECT value FROM meta WHERE name = 'store_id'")
        return str(rows[0]["value"]) if rows else ""

    async def get(self, key: ConversationKey) -> Conversation | None:
        rows = await self._fetch("SELECT * FROM conversations WHERE key = ?", (str(key),))
        return conversation_from_row(rows[0]) if rows else None

    async def put(self, conversation: Conversation) -> None:
        row = conversation_to_row(conversation)
        cols = ", ".join(_CONV_COLUMNS)
        marks = ", ".join("?" for _ in _CONV_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _CONV_COLUMNS if c != "key")
        written = await self._write(
            (
                f"INSERT INTO conversations ({cols}) VALUES ({marks}) ON CONFLICT(key) DO UPDATE SET {updates} "
                "WHERE excluded.fence >= conversations.fence",
                tuple(row[c] for c in _CONV_COLUMNS),
            )
        )
        if written == 0:
            raise Fenced(f"{conversation.key} has a newer owner (its fence is above {conversation.fence})")

    async def delete(self, key: ConversationKey) -> bool:
        existed = await self._write(
            ("DELETE FROM conversations WHERE key = ?", (str(key),)),
            ("DELETE FROM turns WHERE key = ?", (str(key),)),
        )
        return existed > 0

    async def find_session(self, session_id: str) -> Conversation | None:
        rows = await self._fetch("SELECT * FROM conversations WHERE session_id = ? LIMIT 1", (session_id,))
        return conversation_from_row(rows[0]) if rows else None

    async def list(self, *, limit: int = 100, **where: Unpack[ListFilter]) -> list[Conversation]:
        check_filter(where)  # the column names below come from FILTER_FIELDS only
        clause = f"WHERE {' AND '.join(f'{column} = ?' for column in where)}" if where else ""
        rows = await self._fetch(
            f"SELECT * FROM conversations {clause} ORDER BY last_active_at DESC LIMIT ?", (*where.values(), limit)
        )
        return [conversation_from_row(r) for r in rows]

    async def put_turn(self, turn: TurnRecord) -> None:
        row = turn_to_row(turn)
        cols = ", ".join(_TURN_COLUMNS)
        marks = ", ".join("?" for _ in _TURN_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _TURN_COLUMNS if c != "turn_id")
        key = str(turn.key)
        await self._write(
            (
                f"INSERT INTO turns ({cols}) VALUES ({marks}) ON CONFLICT(turn_id) DO UPDATE SET {updates}",
                tuple(row[c] for c in _TURN_COLUMNS),
            ),
            (
                "DELETE FROM turns WHERE key = ? AND id NOT IN "
                "(SELECT id FROM turns WHERE key = ? ORDER BY id DESC LIMIT ?)",
                (key, key, self.history_limit),
            ),
        )

    async def turns(self, key: ConversationKey, limit: int = 20) -> list[TurnRecord]:
        if limit <= 0:
            return []
        rows = await self._fetch(
            "SELECT * FROM (SELECT * FROM turns WHERE key = ? ORDER BY id DESC LIMIT ?) ORDER BY id ASC",
            (str(key), limit),
        )
        return [turn_from_row(r) for r in rows]

    async def mark_interrupted(self, instance_id: str) -> int:
        mine = "status = 'running' AND (instance_id = ? OR instance_id IS NULL)"
        return await self._write(
            (f"UPDATE conversations SET status = 'interrupted' WHERE {mine}", (instance_id,)),
            (
                f"UPDATE turns SET status = 'interrupted', error = COALESCE(error, 'cut off by a restart') WHERE {mine}",
                (instance_id,),
            ),
        )

    async def put_meta(self, name: str, value: str) -> None:
        await self._write(("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (_USER_META + name, value)))

    async def get_meta(self, name: str) -> str | None:
        rows = await self._fetch("SELECT value FROM meta WHERE name = ?", (_USER_META + name,))
        return str(rows[0]["value"]) if rows else None

    async def delete_meta(self, name: str) -> bool:
        return await self._write(("DELETE FROM meta WHERE name = ?", (_USER_META + name,))) > 0

    async def list_meta(self, prefix: str) -> dict[str, str]:
        start = _USER_META + prefix
        rows = await self._fetch(  # a range, not LIKE: names may hold % and _
            "SELECT name, value FROM meta WHERE name >= ? AND name < ?", (start, start + "\U0010ffff")
        )
        return {str(r["name"])[len(_USER_META) :]: str(r["value"]) for r in rows}

    async def add_meta(self, name: str, amount: int) -> int:
        full = _USER_META + name
        await self._write(  # one statement: atomic between processes sharing the file too
            (
                "INSERT INTO meta (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + excluded.value AS TEXT)",
                (full, str(int(amount))),
            )
        )
        rows = await self._fetch("SELECT value FROM meta WHERE name = ?", (full,))
        return int(rows[0]["value"]) if rows else int(amount)

    async def claim_key(self, key: str, ttl: float) -> bool:
        now = time.time()
        self._claims += 1
        statements: list[tuple[str, tuple[Any, ...]]] = [
            (
                "INSERT INTO seen_keys (key, expires_at) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET expires_at = excluded.expires_at WHERE seen_keys.expires_at <= ?",
                (key, now + ttl, now),
            )
        ]
        if self._claims % _SEEN_PRUNE_EVERY == 0:
            statements.append(("DELETE FROM seen_keys WHERE expires_at <= ?", (now,)))
        return await self._write(*statements) > 0


def _identity_of(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError:
        return None
    return st.st_dev, st.st_ino


async def _migrate(db: aiosqlite.Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION`, one step per transaction.

    Each step takes the write lock first (``BEGIN IMMEDIATE``) and re-reads the
    version inside it, so two instances starting at once never run a step twice.
    """
    while True:
        await db.execute("BEGIN IMMEDIATE")
        async with db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            await db.execute("ROLLBACK")
            raise StoreError(
                f"the SQLite store has schema version {version}, newer than this ccbridge knows "
                f"({SCHEMA_VERSION}); upgrade ccbridge"
            )
        if version == SCHEMA_VERSION:
            await db.execute("COMMIT")
            return
        try:
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    await db.execute(statement)
            await db.execute(f"PRAGMA user_version={version + 1}")
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise


def _classify(exc: sqlite3.Error, what: str) -> StoreError:
    """Operational failures (read only, full, I/O, locked, missing) are worth retrying: StoreUnavailable."""
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailable(f"{what}: {exc}")
    return StoreError(f"{what}: {exc}")
