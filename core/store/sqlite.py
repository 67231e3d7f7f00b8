"""SQLite store (the embedded default), through aiosqlite so the loop never blocks."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, Unpack

import aiosqlite

from ..errors import StoreError
from ..keys import ConversationKey
from .base import ConversationStore, ListFilter, check_filter
from .codec import conversation_from_row, conversation_to_row, turn_from_row, turn_to_row
from .records import Conversation, TurnRecord

SCHEMA_VERSION = 1
SCHEMA = """
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
"""

_CONV_COLUMNS = (
    "key",
    "platform",
    "owner",
    "thread",
    "session_id",
    "cwd",
    "model",
    "created_at",
    "last_active_at",
    "message_count",
    "status",
    "metadata",
)
_TURN_COLUMNS = (
    "key",
    "session_id",
    "user_id",
    "user_text",
    "reply_text",
    "tool_calls",
    "cost_usd",
    "duration_ms",
    "status",
    "error",
    "started_at",
    "finished_at",
)


class SQLiteStore(ConversationStore):
    def __init__(self, path: str | Path, history_limit: int = 1000) -> None:
        self.path = Path(path)
        self.history_limit = history_limit
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        if self._db is not None:
            return
        try:
            if str(self.path) != ":memory:":
                await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(self.path)
            self._db.row_factory = aiosqlite.Row
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode, fewer fsyncs
            await self._db.execute("PRAGMA busy_timeout=5000")
            await self._db.executescript(SCHEMA)
            await self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            await self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open SQLite store at {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the SQLite store is not open")
        return self._db

    async def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        try:
            async with self.db.execute(sql, params) as cur:
                return [dict(row) for row in await cur.fetchall()]
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite query failed: {exc}") from exc

    async def _write(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        try:
            cur = await self.db.execute(sql, params)
            await self.db.commit()
            return cur.rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite write failed: {exc}") from exc

    async def ping(self) -> None:
        await self._fetch("SELECT 1")

    async def get(self, key: ConversationKey) -> Conversation | None:
        rows = await self._fetch("SELECT * FROM conversations WHERE key = ?", (str(key),))
        return conversation_from_row(rows[0]) if rows else None

    async def put(self, conversation: Conversation) -> None:
        row = conversation_to_row(conversation)
        cols = ", ".join(_CONV_COLUMNS)
        marks = ", ".join("?" for _ in _CONV_COLUMNS)
        await self._write(
            f"INSERT OR REPLACE INTO conversations ({cols}) VALUES ({marks})",
            tuple(row[c] for c in _CONV_COLUMNS),
        )

    async def delete(self, key: ConversationKey) -> bool:
        await self._write("DELETE FROM turns WHERE key = ?", (str(key),))
        return await self._write("DELETE FROM conversations WHERE key = ?", (str(key),)) > 0

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

    async def add_turn(self, turn: TurnRecord) -> None:
        row = turn_to_row(turn)
        cols = ", ".join(_TURN_COLUMNS)
        marks = ", ".join("?" for _ in _TURN_COLUMNS)
        key = str(turn.key)
        try:
            await self.db.execute(f"INSERT INTO turns ({cols}) VALUES ({marks})", tuple(row[c] for c in _TURN_COLUMNS))
            await self.db.execute(
                "DELETE FROM turns WHERE key = ? AND id NOT IN "
                "(SELECT id FROM turns WHERE key = ? ORDER BY id DESC LIMIT ?)",
                (key, key, self.history_limit),
            )
            await self.db.commit()
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite write failed: {exc}") from exc

    async def turns(self, key: ConversationKey, limit: int = 20) -> list[TurnRecord]:
        if limit <= 0:
            return []
        rows = await self._fetch(
            "SELECT * FROM (SELECT * FROM turns WHERE key = ? ORDER BY id DESC LIMIT ?) ORDER BY id ASC",
            (str(key), limit),
        )
        return [turn_from_row(r) for r in rows]

    async def mark_interrupted(self) -> int:
        return await self._write("UPDATE conversations SET status = 'interrupted' WHERE status = 'running'")
