"""The store contract and the SDK's session-store conformance suite, against every backend.

Memory and SQLite conversation stores are in tests/core/test_store_contract.py; their
transcript stores are here, with Redis and PostgreSQL (real servers, see conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk.testing import run_session_store_conformance

from core import StoreUnavailable
from core.store import ConversationStore
from core.store.postgres import PostgresStore
from core.store.redis import RedisStore
from core.transcripts import LocalMirror, MemoryTranscripts, TranscriptStore
from core.transcripts.base import not_yet_stored
from core.transcripts.mirror import transcript_path, write_jsonl
from core.transcripts.postgres import PostgresTranscripts
from core.transcripts.redis import RedisTranscripts
from core.transcripts.sqlite import SQLiteTranscripts
from tests.contracts.store_contract import HISTORY_LIMIT, MetaContract, StoreContract
from tests.servers import PostgresServer, RedisServer, new_database


class TestRedisStore(StoreContract, MetaContract):
    @pytest.fixture
    async def store(self, redis_url: str, redis_prefix: str) -> AsyncIterator[ConversationStore]:
        async with RedisStore(redis_url, key_prefix=redis_prefix, history_limit=HISTORY_LIMIT) as s:
            yield s


class TestPostgresStore(StoreContract, MetaContract):
    @pytest.fixture
    async def store(self, postgres_dsn: str) -> AsyncIterator[ConversationStore]:
        async with PostgresStore(postgres_dsn, history_limit=HISTORY_LIMIT, pool_max=4) as s:
            yield s


# -- transcripts: the SDK's conformance suite, and idempotent appends ------------------------------

Factory = Callable[[], Awaitable[TranscriptStore]]


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
async def transcripts(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, Factory]]:
    """A factory of fresh, opened transcript stores of one backend (closed at the end)."""
    opened: list[TranscriptStore] = []
    count = 0

    async def make() -> TranscriptStore:
        nonlocal count
        count += 1
        store: TranscriptStore
        if request.param == "memory":
            store = MemoryTranscripts()
        elif request.param == "sqlite":
            store = SQLiteTranscripts(tmp_path / f"t{count}.db")
        elif request.param == "redis":
            server: RedisServer = request.getfixturevalue("redis_server")
            store = RedisTranscripts(server.url, key_prefix=f"{tmp_path.name}-{count}:")
        else:
            pg: PostgresServer = request.getfixturevalue("postgres_server")
            store = PostgresTranscripts(await new_database(pg), pool_max=2)
        await store.open()
        opened.append(store)
        return store

    yield request.param, make
    for store in opened:
        await store.close()


async def test_sdk_session_store_conformance(transcripts: tuple[str, Factory]) -> None:
    _, make = transcripts
    probe = await make()
    for method in ("list_sessions", "delete", "list_subkeys"):  # the optional contracts run too
        assert type(probe).__dict__.get(method) is not None
    await run_session_store_conformance(make)


KEY = {"project_key": "-ws-console-alice", "session_id": "0b4f2a7e-5c1d-4a36-9c63-1d2b3e4f5a6b"}


async def test_a_retried_append_never_duplicates_an_entry(transcripts: tuple[str, Factory]) -> None:
    _, make = transcripts
    store = await make()
    first = [{"type": "user", "uuid": "u1", "n": 1}, {"type": "assistant", "uuid": "a1", "n": 2}]
    await store.append(KEY, first)  # type: ignore[arg-type]
    retried = [*first, {"type": "user", "uuid": "u2", "n": 3}]  # a batch that partly landed, sent again
    await store.append(KEY, retried)  # type: ignore[arg-type]
    await store.append(KEY, [{"type": "title", "text": "no uuid"}, {"type": "title", "text": "no uuid"}])  # type: ignore[arg-type]
    await store.append(KEY, [{"type": "assistant", "uuid": "a2", "n": 4}, {"type": "assistant", "uuid": "a2", "n": 4}])  # type: ignore[arg-type]
    loaded = await store.load(KEY)  # type: ignore[arg-type]
    assert loaded == [
        {"type": "user", "uuid": "u1", "n": 1},
        {"type": "assistant", "uuid": "a1", "n": 2},
        {"type": "user", "uuid": "u2", "n": 3},
        {"type": "title", "text": "no uuid"},
        {"type": "title", "text": "no uuid"},
        {"type": "assistant", "uuid": "a2", "n": 4},
    ]
    sub = {**KEY, "subpath": "subagents/agent-1"}
    await store.append(sub, [{"type": "user", "uuid": "u1"}])  # type: ignore[arg-type]
    assert await store.load(sub) == [{"type": "user", "uuid": "u1"}]  # type: ignore[arg-type]  # uuids are per transcript
    assert sorted((k["session_id"], k.get("subpath", "")) for k in await store.keys()) == [
        (KEY["session_id"], ""),
        (KEY["session_id"], "subagents/agent-1"),
    ]


@pytest.mark.parametrize("transcripts", ["sqlite", "redis", "postgres"], indirect=True)
async def test_transcripts_survive_a_reopen(transcripts: tuple[str, Factory]) -> None:
    _, make = transcripts
    store = await make()
    await store.append(KEY, [{"type": "user", "uuid": "u1", "text": "é"}])  # type: ignore[arg-type]
    await store.close()
    await store.open()
    assert await store.load(KEY) == [{"type": "user", "uuid": "u1", "text": "é"}]  # type: ignore[arg-type]


class _GoesAway:
    """A transcript store in front of ``store`` that refuses appends while ``down``."""

    def __init__(self, store: TranscriptStore) -> None:
        self.store, self.down = store, False

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def append(self, key: object, entries: list[object]) -> None:
        if self.down:
            raise StoreUnavailable("the store is down")
        await self.store.append(key, entries)  # type: ignore[arg-type]


async def test_a_mirror_catching_up_after_an_outage_stores_each_line_once(
    transcripts: tuple[str, Factory], tmp_path: Path
) -> None:
    """Lines without a uuid are appended whenever sent: catching up after a missed batch sends
    only what the store lacks, and a later batch the CLI had written already is not sent twice."""
    _, make = transcripts
    store = _GoesAway(await make())
    mirror = LocalMirror(store, tmp_path)  # type: ignore[arg-type]
    local: list[Any] = []

    async def cli_writes(batch: list[Any], *, mirrored: bool = True) -> None:
        local.extend(batch)
        write_jsonl(transcript_path(tmp_path, KEY), local)  # type: ignore[arg-type]
        if mirrored:
            await mirror.append(KEY, batch)  # type: ignore[arg-type]

    await cli_writes([{"type": "user", "uuid": "u1"}, {"type": "last-prompt", "lastPrompt": "hi"}])
    store.down = True
    with pytest.raises(StoreUnavailable):
        await cli_writes([{"type": "assistant", "uuid": "a1"}, {"type": "cost-state", "total": 0.1}])
    store.down = False
    third = [{"type": "user", "uuid": "u2"}, {"type": "last-prompt", "lastPrompt": "again"}]
    fourth = [{"type": "atis-latch"}, {"type": "assistant", "uuid": "a2"}, {"type": "atis-latch"}]
    await cli_writes(third)
    await cli_writes(fourth, mirrored=False)  # on disk before the store caught up ...
    await mirror.append(KEY, fourth[:1])  # type: ignore[arg-type]  # ... then mirrored, in two batches
    await mirror.append(KEY, fourth[1:])  # type: ignore[arg-type]
    await cli_writes([{"type": "atis-latch"}, {"type": "mode", "mode": "default"}])  # repeated lines are kept
    assert await store.load(KEY) == local  # type: ignore[arg-type]


async def test_a_whole_transcript_sent_again_adds_only_what_the_store_lacks() -> None:
    stored = [{"uuid": "u1"}, {"type": "last-prompt"}]
    assert not_yet_stored(stored, [*stored, {"type": "cost-state"}]) == [{"type": "cost-state"}]
    assert not_yet_stored(stored, stored) == []
    # not a continuation of what is stored: only the entries it can recognise (by uuid) that it lacks
    assert not_yet_stored(stored, [{"uuid": "u0"}, {"type": "last-prompt"}, {"uuid": "u1"}]) == [{"uuid": "u0"}]
    assert not_yet_stored([], [{"type": "x"}]) == [{"type": "x"}]
