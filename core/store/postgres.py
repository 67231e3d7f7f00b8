"""PostgreSQL store (``store.backend: postgres``), on an asyncpg connection pool.

The schema is versioned (table ``ccbridge_schema_version``) and migrated forward
on open, inside one transaction holding ``pg_advisory_xact_lock``: two
instances starting at once take turns, and the second finds the work done.
Every write that belongs together runs in one transaction (a conversation carrying a
lower ``fence`` than the stored one is refused in the same statement); ``claim_key`` is one
``INSERT ... ON CONFLICT``. The tables of the transcript store
(:mod:`core.transcripts.postgres`) are part of the same schema.

Faults: a refused, reset or timed-out connection (or a server shutting down /
starting up) raises :class:`~core.errors.StoreUnavailable`; the pool replaces
broken connections, so a server that comes back is used again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Unpack

import asyncpg

from ..errors import Fenced, StoreError, StoreUnavailable
from ..keys import ConversationKey
from .base import ConversationStore, ListFilter, check_filter, translating
from .codec import (
    CONVERSATION_FIELDS,
    TURN_FIELDS,
    conversation_from_row,
    conversation_to_row,
    turn_from_row,
    turn_to_row,
)
from .records import Conversation, TurnRecord
from .settings import PostgresStoreSettings, redact_url

_LOCK_ID = 0x63636272  # "ccbr": the advisory lock migrations take

# Each entry migrates the schema from version i to i + 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS conversations (
        key TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        owner TEXT NOT NULL,
        thread TEXT,
        bot TEXT,
        session_id TEXT NOT NULL,
        cwd TEXT NOT NULL,
        model TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        last_active_at DOUBLE PRECISION NOT NULL,
        message_count INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'idle',
        metadata TEXT NOT NULL DEFAULT '{}',
        instance_id TEXT,
        total_cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        cli_cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        fence BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS conversations_session ON conversations (session_id);
    CREATE INDEX IF NOT EXISTS conversations_owner ON conversations (platform, owner, last_active_at DESC);
    CREATE INDEX IF NOT EXISTS conversations_thread ON conversations (platform, thread, last_active_at DESC);
    CREATE INDEX IF NOT EXISTS conversations_active ON conversations (last_active_at DESC);
    CREATE INDEX IF NOT EXISTS conversations_running ON conversations (status) WHERE status = 'running';
    CREATE TABLE IF NOT EXISTS turns (
        id BIGSERIAL PRIMARY KEY,
        turn_id TEXT NOT NULL UNIQUE,
        key TEXT NOT NULL,
        session_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        user_text TEXT NOT NULL,
        reply_text TEXT NOT NULL,
        tool_calls TEXT NOT NULL DEFAULT '[]',
        cost_usd DOUBLE PRECISION,
        duration_ms BIGINT,
        status TEXT NOT NULL,
        error TEXT,
        started_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION,
        instance_id TEXT
    );
    CREATE INDEX IF NOT EXISTS turns_key ON turns (key, id);
    CREATE INDEX IF NOT EXISTS turns_running ON turns (status) WHERE status = 'running';
    CREATE TABLE IF NOT EXISTS seen_keys (key TEXT PRIMARY KEY, expires_at DOUBLE PRECISION NOT NULL);
    CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    """
    CREATE TABLE IF NOT EXISTS transcript_sessions (
        project_key TEXT NOT NULL,
        session_id TEXT NOT NULL,
        subpath TEXT NOT NULL DEFAULT '',
        mtime BIGINT NOT NULL,
        PRIMARY KEY (project_key, session_id, subpath)
    );
    CREATE TABLE IF NOT EXISTS transcript_entries (
        id BIGSERIAL PRIMARY KEY,
        project_key TEXT NOT NULL,
        session_id TEXT NOT NULL,
        subpath TEXT NOT NULL DEFAULT '',
        uuid TEXT,
        entry TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS transcript_entries_key ON transcript_entries (project_key, session_id, subpath, id);
    CREATE UNIQUE INDEX IF NOT EXISTS transcript_entries_uuid
        ON transcript_entries (project_key, session_id, subpath, uuid) WHERE uuid IS NOT NULL;
    """,
    # one platform's newest conversations (the admin listing) without sorting all of the platform's rows
    """
    CREATE INDEX IF NOT EXISTS conversations_platform_active ON conversations (platform, last_active_at DESC);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_CONV_COLUMNS = CONVERSATION_FIELDS
_TURN_COLUMNS = TURN_FIELDS
_SEEN_PRUNE_EVERY = 500
_USER_META = "user:"

#: SQLSTATE classes / codes meaning "the server cannot be used right now"
_UNAVAILABLE_STATES = ("08", "53", "57P", "58")  # connection, resources, shutdown / crash, system I/O


def classify(exc: BaseException, what: str) -> StoreError:
    """StoreUnavailable for an unreachable / unusable server, StoreError otherwise."""
    state = getattr(exc, "sqlstate", None) or ""
    if (
        isinstance(exc, (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError))
        or isinstance(exc, asyncpg.ConnectionDoesNotExistError)
        or state.startswith(_UNAVAILABLE_STATES)
        or (isinstance(exc, asyncpg.ReadOnlySQLTransactionError))
    ):
        return StoreUnavailable(f"{what}: {exc or type(exc).__name__}")
    return StoreError(f"{what}: {exc}")


_guard = translating(
    "PostgreSQL", (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError), classify
)  # asyncpg's exceptions become the store's


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 5.0) -> asyncpg.Pool:
    """A pool on ``dsn``; raises StoreUnavailable naming ``store.dsn`` (password hidden) when unreachable."""
    try:
        return await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            command_timeout=max(timeout, 30.0),
            max_inactive_connection_lifetime=300,
        )
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        error = classify(exc, f"cannot reach PostgreSQL at {redact_url(dsn)}")
        raise type(error)(f"store.dsn: {error}") from exc


async def migrate(conn: asyncpg.Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` in one transaction under the migration lock."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
        await conn.execute("CREATE TABLE IF NOT EXISTS ccbridge_schema_version (version INTEGER NOT NULL)")
        version = await conn.fetchval("SELECT max(version) FROM ccbridge_schema_version") or 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the PostgreSQL store has schema version {version}, newer than this ccbridge knows "
                f"({SCHEMA_VERSION}); upgrade ccbridge"
            )
        for step in range(version, SCHEMA_VERSION):
            await conn.execute(MIGRATIONS[step])
        if version < SCHEMA_VERSION:
            await conn.execute("DELETE FROM ccbridge_schema_version")
            await conn.execute("INSERT INTO ccbridge_schema_version (version) VALUES ($1)", SCHEMA_VERSION)
        await conn.execute(
            "INSERT INTO meta (name, value) VALUES ('store_id', $1) ON CONFLICT (name) DO NOTHING", uuid.uuid4().hex
        )


class PostgresStore(ConversationStore):
    """Conversations, history, claims and named values in PostgreSQL tables."""

    def __init__(
        self, dsn: str, *, history_limit: int = 1000, pool_min: int = 1, pool_max: int = 10, timeout: float = 5.0
    ) -> None:
        self.dsn = dsn
        self.history_limit = history_limit
        self.pool_min, self.pool_max, self.timeout = pool_min, pool_max, timeout
        self._pool: asyncpg.Pool | None = None
        self._claims = 0
        self._opening = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: PostgresStoreSettings) -> PostgresStore:
        assert settings.dsn is not None  # the settings' validator guarantees it
        return cls(
            settings.dsn.get_secret_value(),
            history_limit=settings.history_limit,
            pool_min=settings.pool_min,
            pool_max=settings.pool_max,
            timeout=settings.connect_timeout,
        )

    def describe(self) -> str:
        return f"PostgreSQL {redact_url(self.dsn)}"

    # -- connection ------------------------------------------------------------
    async def open(self) -> None:
        async with self._opening:
            if self._pool is not None:
                return
            pool = await create_pool(self.dsn, min_size=self.pool_min, max_size=self.pool_max, timeout=self.timeout)
            try:
                async with pool.acquire() as conn:
                    await migrate(conn)
            except StoreError:
                await pool.close()
                raise
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                await pool.close()
                raise classify(exc, f"cannot migrate the PostgreSQL store at {redact_url(self.dsn)}") from exc
            self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        return self._pool

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire(timeout=self.timeout) as conn, conn.transaction():
            yield conn

    # -- the contract ----------------------------------------------------------
    @_guard
    async def ping(self, *, write: bool = False) -> None:
        if self._pool is None:
            await self.open()
        async with self.pool.acquire(timeout=self.timeout) as conn:
            await conn.fetchval("SELECT 1")
            if write:
                await conn.execute(
                    "INSERT INTO meta (name, value) VALUES ('last_ping', $1) "
                    "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    str(time.time()),
                )

    @_guard
    async def store_id(self) -> str:
        return str(await self.pool.fetchval("SELECT value FROM meta WHERE name = 'store_id'") or "")

    @_guard
    async def get(self, key: ConversationKey) -> Conversation | None:
        row = await self.pool.fetchrow("SELECT * FROM conversations WHERE key = $1", str(key))
        return conversation_from_row(dict(row)) if row else None

    @_guard
    async def put(self, conversation: Conversation) -> None:
        row = conversation_to_row(conversation)
        cols = ", ".join(_CONV_COLUMNS)
        marks = ", ".join(f"${i}" for i in range(1, len(_CONV_COLUMNS) + 1))
        updates = ", ".join(f"{c} = excluded.{c}" for c in _CONV_COLUMNS if c != "key")
        written = await self.pool.execute(
            f"INSERT INTO conversations ({cols}) VALUES ({marks}) ON CONFLICT (key) DO UPDATE SET {updates} "
            "WHERE excluded.fence >= conversations.fence",
            *(row[c] for c in _CONV_COLUMNS),
        )
        if written == "INSERT 0 0":
            raise Fenced(f"{conversation.key} has a newer owner (its fence is above {conversation.fence})")

    @_guard
    async def delete(self, key: ConversationKey) -> bool:
        async with self._tx() as conn:
            existed = await conn.execute("DELETE FROM conversations WHERE key = $1", str(key))
            await conn.execute("DELETE FROM turns WHERE key = $1", str(key))
        return existed != "DELETE 0"

    @_guard
    async def find_session(self, session_id: str) -> Conversation | None:
        row = await self.pool.fetchrow("SELECT * FROM conversations WHERE session_id = $1 LIMIT 1", session_id)
        return conversation_from_row(dict(row)) if row else None

    @_guard
    async def list(self, *, limit: int = 100, **where: Unpack[ListFilter]) -> list[Conversation]:
        check_filter(where)  # the column names below come from FILTER_FIELDS only
        conditions = [f"{column} = ${i}" for i, column in enumerate(where, start=1)]
        clause = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = await self.pool.fetch(
            f"SELECT * FROM conversations {clause} ORDER BY last_active_at DESC LIMIT ${len(where) + 1}",
            *where.values(),
            limit,
        )
        return [conversation_from_row(dict(r)) for r in rows]

    @_guard
    async def put_turn(self, turn: TurnRecord) -> None:
        row = turn_to_row(turn)
        cols = ", ".join(_TURN_COLUMNS)
        marks = ", ".join(f"${i}" for i in range(1, len(_TURN_COLUMNS) + 1))
        updates = ", ".join(f"{c} = excluded.{c}" for c in _TURN_COLUMNS if c != "turn_id")
        async with self._tx() as conn:
            await conn.execute(
                f"INSERT INTO turns ({cols}) VALUES ({marks}) ON CONFLICT (turn_id) DO UPDATE SET {updates}",
                *(row[c] for c in _TURN_COLUMNS),
            )
            await conn.execute(
                "DELETE FROM turns WHERE key = $1 AND id < ("
                "SELECT min(id) FROM (SELECT id FROM turns WHERE key = $1 ORDER BY id DESC LIMIT $2) AS kept)",
                str(turn.key),
                self.history_limit,
            )

    @_guard
    async def turns(self, key: ConversationKey, limit: int = 20) -> list[TurnRecord]:
        if limit <= 0:
            return []
        rows = await self.pool.fetch(
            "SELECT * FROM (SELECT * FROM turns WHERE key = $1 ORDER BY id DESC LIMIT $2) AS latest ORDER BY id ASC",
            str(key),
            limit,
        )
        return [turn_from_row(dict(r)) for r in rows]

    @_guard
    async def mark_interrupted(self, instance_id: str) -> int:
        mine = "status = 'running' AND (instance_id = $1 OR instance_id IS NULL)"
        async with self._tx() as conn:
            marked = await conn.execute(f"UPDATE conversations SET status = 'interrupted' WHERE {mine}", instance_id)
            await conn.execute(
                f"UPDATE turns SET status = 'interrupted', error = COALESCE(error, 'cut off by a restart') WHERE {mine}",
                instance_id,
            )
        return int(marked.split()[-1])

    @_guard
    async def claim_key(self, key: str, ttl: float) -> bool:
        now = time.time()
        self._claims += 1
        async with self._tx() as conn:
            claimed = await conn.fetchval(
                "INSERT INTO seen_keys (key, expires_at) VALUES ($1, $2) "
                "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE seen_keys.expires_at <= $3 RETURNING true",
                key,
                now + ttl,
                now,
            )
            if self._claims % _SEEN_PRUNE_EVERY == 0:
                await conn.execute("DELETE FROM seen_keys WHERE expires_at <= $1", now)
        return bool(claimed)

    @_guard
    async def put_meta(self, name: str, value: str) -> None:
        await self.pool.execute(
            "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            _USER_META + name,
            value,
        )

    @_guard
    async def get_meta(self, name: str) -> str | None:
        value = await self.pool.fetchval("SELECT value FROM meta WHERE name = $1", _USER_META + name)
        return None if value is None else str(value)

    @_guard
    async def delete_meta(self, name: str) -> bool:
        return await self.pool.execute("DELETE FROM meta WHERE name = $1", _USER_META + name) != "DELETE 0"

    @_guard
    async def list_meta(self, prefix: str) -> dict[str, str]:
        start = _USER_META + prefix
        rows = await self.pool.fetch(  # a prefix test, not LIKE: names may hold % and _
            "SELECT name, value FROM meta WHERE left(name, length($1)) = $1", start
        )
        return {str(r["name"])[len(_USER_META) :]: str(r["value"]) for r in rows}

    @_guard
    async def add_meta(self, name: str, amount: int) -> int:
        value = await self.pool.fetchval(
            "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) "
            "DO UPDATE SET value = (meta.value::bigint + excluded.value::bigint)::text RETURNING value",
            _USER_META + name,
            str(int(amount)),
        )
        return int(value)
