"""Transcripts in the PostgreSQL database of the conversation store (tables ``transcript_*``).

The tables belong to the conversation store's versioned schema
(:data:`core.store.postgres.MIGRATIONS`), migrated on open under the same
advisory lock. An append is one transaction: the entries (a uuid already kept
is skipped by the unique index) and the session's storage time.
"""

from __future__ import annotations

import json

import asyncpg
from claude_agent_sdk.types import SessionKey, SessionListSubkeysKey, SessionStoreEntry, SessionStoreListEntry

from ..errors import StoreError
from ..store.postgres import _guard, classify, create_pool, migrate
from ..store.settings import redact_url
from .base import Clock, TranscriptStore, encode_entries, make_key, subpath_of

_INSERT = (
    "INSERT INTO transcript_entries (project_key, session_id, subpath, uuid, entry) VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (project_key, session_id, subpath, uuid) WHERE uuid IS NOT NULL DO NOTHING"
)


class PostgresTranscripts(TranscriptStore):
    def __init__(self, dsn: str, *, pool_max: int = 4, timeout: float = 5.0) -> None:
        self.dsn = dsn
        self.pool_max = pool_max
        self.timeout = timeout
        self._pool: asyncpg.Pool | None = None
        self._clock = Clock()

    def describe(self) -> str:
        return f"transcripts in PostgreSQL {redact_url(self.dsn)}"

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool = await create_pool(self.dsn, min_size=1, max_size=self.pool_max, timeout=self.timeout)
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError, StoreError) as exc:
            await pool.close()
            raise exc if isinstance(exc, StoreError) else classify(exc, "cannot migrate the transcript tables") from exc
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the PostgreSQL transcript store is not open")
        return self._pool

    @_guard
    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        if not entries:
            return
        ident = (key["project_key"], key["session_id"], subpath_of(key))
        async with self.pool.acquire(timeout=self.timeout) as conn, conn.transaction():
            await conn.executemany(_INSERT, [(*ident, uuid, text) for uuid, text in encode_entries(entries)])
            await conn.execute(
                "INSERT INTO transcript_sessions (project_key, session_id, subpath, mtime) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (project_key, session_id, subpath) DO UPDATE SET mtime = excluded.mtime",
                *ident,
                self._clock.now(),
            )

    @_guard
    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None:
        rows = await self.pool.fetch(
            "SELECT entry FROM transcript_entries WHERE project_key = $1 AND session_id = $2 AND subpath = $3 "
            "ORDER BY id",
            key["project_key"],
            key["session_id"],
            subpath_of(key),
        )
        return [json.loads(r["entry"]) for r in rows] or None

    @_guard
    async def list_sessions(self, project_key: str) -> list[SessionStoreListEntry]:
        rows = await self.pool.fetch(
            "SELECT session_id, mtime FROM transcript_sessions WHERE project_key = $1 AND subpath = ''", project_key
        )
        return [{"session_id": str(r["session_id"]), "mtime": int(r["mtime"])} for r in rows]

    @_guard
    async def delete(self, key: SessionKey) -> None:
        sub = subpath_of(key)
        where = "project_key = $1 AND session_id = $2" + (" AND subpath = $3" if sub else "")
        params = (key["project_key"], key["session_id"], *((sub,) if sub else ()))
        async with self.pool.acquire(timeout=self.timeout) as conn, conn.transaction():
            await conn.execute(f"DELETE FROM transcript_entries WHERE {where}", *params)
            await conn.execute(f"DELETE FROM transcript_sessions WHERE {where}", *params)

    @_guard
    async def list_subkeys(self, key: SessionListSubkeysKey) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT subpath FROM transcript_sessions WHERE project_key = $1 AND session_id = $2 AND subpath != ''",
            key["project_key"],
            key["session_id"],
        )
        return [str(r["subpath"]) for r in rows]

    @_guard
    async def keys(self) -> list[SessionKey]:
        rows = await self.pool.fetch("SELECT project_key, session_id, subpath FROM transcript_sessions")
        return [make_key(str(r["project_key"]), str(r["session_id"]), str(r["subpath"])) for r in rows]
