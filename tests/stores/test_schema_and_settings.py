"""PostgreSQL migrations (versioned, idempotent, race-free) and the store settings' shapes."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from pydantic import TypeAdapter, ValidationError

from core import StoreError
from core.store import StoreSettings
from core.store.postgres import MIGRATIONS, SCHEMA_VERSION, PostgresStore
from core.store.settings import PostgresStoreSettings, RedisStoreSettings, redact_url
from core.transcripts import create_transcripts
from tests.contracts.store_contract import KEY, conv


async def test_instances_starting_at_once_migrate_once(postgres_dsn: str) -> None:
    stores = [PostgresStore(postgres_dsn, pool_max=2) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        await stores[0].put(conv())
        assert all([(await s.get(KEY)) is not None for s in stores])
        conn = await asyncpg.connect(postgres_dsn)
        try:
            assert await conn.fetch("SELECT version FROM ccbridge_schema_version") == [(SCHEMA_VERSION,)]
        finally:
            await conn.close()
        ids = {await s.store_id() for s in stores}
        assert len(ids) == 1 and "" not in ids
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    async with PostgresStore(postgres_dsn) as again:  # opening a migrated database changes nothing
        assert (await again.get(KEY)) is not None


async def test_an_older_schema_is_migrated_forward_keeping_its_rows(postgres_dsn: str) -> None:
    conn = await asyncpg.connect(postgres_dsn)
    try:  # a database as the previous release left it: schema version 2, one conversation
        await conn.execute("CREATE TABLE ccbridge_schema_version (version INTEGER NOT NULL)")
        for step in MIGRATIONS[:2]:
            await conn.execute(step)
        await conn.execute("INSERT INTO ccbridge_schema_version (version) VALUES (2)")
        await conn.execute(
            "INSERT INTO conversations (key, platform, owner, session_id, cwd, created_at, last_active_at) "
            "VALUES ('slack:C1', 'slack', 'C1', 's-1', '/w', 1, 2)"
        )
        async with PostgresStore(postgres_dsn) as store:
            kept = await store.list(platform="slack")
        assert [c.session_id for c in kept] == ["s-1"]
        assert await conn.fetch("SELECT version FROM ccbridge_schema_version") == [(SCHEMA_VERSION,)]
        indexes = {r["indexname"] for r in await conn.fetch("SELECT indexname FROM pg_indexes")}
        assert "conversations_platform_active" in indexes
        await conn.execute("SET enable_seqscan = off")  # with a handful of rows PostgreSQL would scan anyway
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN SELECT * FROM conversations WHERE platform = 'slack' ORDER BY last_active_at DESC LIMIT 100"
            )
        )
        assert "conversations_platform_active" in plan and "Sort" not in plan
    finally:
        await conn.close()


async def test_a_newer_schema_is_refused(postgres_dsn: str) -> None:
    async with PostgresStore(postgres_dsn):
        pass
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute("UPDATE ccbridge_schema_version SET version = $1", SCHEMA_VERSION + 1)
    finally:
        await conn.close()
    with pytest.raises(StoreError, match="newer than this ccbridge knows"):
        await PostgresStore(postgres_dsn).open()


def test_the_postgres_seeds_separate_fields_make_the_dsn() -> None:
    settings = TypeAdapter(StoreSettings).validate_python(
        {"backend": "postgres", "host": "db", "port": 5433, "user": "cc", "password": "p@ss/w", "database": "bridge"}
        | {"min_size": 2, "max_size": 8}
    )
    assert isinstance(settings, PostgresStoreSettings) and settings.dsn is not None
    assert settings.dsn.get_secret_value() == "postgresql://cc:p%40ss%2Fw@db:5433/bridge"
    assert (settings.pool_min, settings.pool_max) == (2, 8)
    assert "p%40ss" not in redact_url(settings.dsn.get_secret_value())
    assert settings.transcript_mode() == "store"


def test_the_seeds_pg_prefixed_keys_are_read_as_they_are() -> None:
    seed = {"pg_host": "db", "pg_port": 5432, "pg_database": "claude", "pg_user": "cc", "pg_password": "pw"}
    settings = TypeAdapter(StoreSettings).validate_python({"backend": "postgresql", **seed})
    assert isinstance(settings, PostgresStoreSettings) and settings.dsn is not None
    assert settings.dsn.get_secret_value() == "postgresql://cc:pw@db:5432/claude"


def test_urls_default_to_the_environment_and_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "rediss://:pw@cache:6380/2")
    assert RedisStoreSettings().url.get_secret_value() == "rediss://:pw@cache:6380/2"  # type: ignore[union-attr]
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/d")
    assert PostgresStoreSettings().dsn.get_secret_value() == "postgresql://u@h/d"  # type: ignore[union-attr]
    monkeypatch.delenv("REDIS_URL")
    with pytest.raises(ValidationError, match="store.url is required"):
        RedisStoreSettings()


def test_transcripts_stay_local_when_asked_and_by_default_on_sqlite() -> None:
    adapter = TypeAdapter(StoreSettings)
    assert create_transcripts(adapter.validate_python({"backend": "sqlite"})) is None
    assert (
        create_transcripts(adapter.validate_python({"backend": "redis", "url": "redis://h", "transcripts": "local"}))
        is None
    )
    assert create_transcripts(adapter.validate_python({"backend": "redis", "url": "redis://h"})) is not None
    assert create_transcripts(adapter.validate_python({"backend": "sqlite", "transcripts": "store"})) is not None
