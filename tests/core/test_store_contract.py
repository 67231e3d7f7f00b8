"""One contract, every store backend (memory, SQLite; Redis and PostgreSQL follow the same suite)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from core import ConversationKey, StoreError, ToolCallRecord
from core.store import Conversation, ConversationStore, MemoryStore, SQLiteStore, TurnRecord

BACKENDS: dict[str, Callable[[Path], ConversationStore]] = {
    "memory": lambda tmp: MemoryStore(history_limit=5),
    "sqlite": lambda tmp: SQLiteStore(tmp / "store" / "ccbridge.db", history_limit=5),
}


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ConversationStore]:
    backend = BACKENDS[request.param](tmp_path)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


KEY = ConversationKey("telegram", "42")
THREAD = ConversationKey("slack", "C1", "1700000000.0001")


def conv(key: ConversationKey = KEY, session: str = "s-1", **kw: object) -> Conversation:
    return Conversation(key=key, session_id=session, cwd=f"/ws/{key.owner}", **kw)  # type: ignore[arg-type]


def turn(key: ConversationKey = KEY, text: str = "hi", **kw: object) -> TurnRecord:
    return TurnRecord(key=key, session_id="s-1", user_id="42", user_text=text, reply_text=f"re: {text}", **kw)  # type: ignore[arg-type]


async def test_get_missing_returns_none(store: ConversationStore) -> None:
    assert await store.get(KEY) is None
    assert await store.find_session("nope") is None


async def test_put_get_roundtrip_keeps_every_field(store: ConversationStore) -> None:
    original = conv(model="claude-x", message_count=3, status="running", metadata={"a": [1, "é"], "b": None})
    await store.put(original)
    loaded = await store.get(KEY)
    assert loaded == original
    assert loaded is not original


async def test_put_replaces_by_key(store: ConversationStore) -> None:
    await store.put(conv(session="s-1"))
    await store.put(conv(session="s-2", message_count=7))
    loaded = await store.get(KEY)
    assert loaded is not None and loaded.session_id == "s-2" and loaded.message_count == 7
    assert await store.find_session("s-1") is None
    assert (await store.find_session("s-2")) == loaded


async def test_returned_copies_do_not_alias_the_store(store: ConversationStore) -> None:
    await store.put(conv(metadata={"x": 1}))
    loaded = await store.get(KEY)
    assert loaded is not None
    loaded.metadata["x"] = 2
    loaded.message_count = 99
    again = await store.get(KEY)
    assert again is not None and again.metadata == {"x": 1} and again.message_count == 0


async def test_thread_keys_are_distinct_conversations(store: ConversationStore) -> None:
    await store.put(conv(ConversationKey("slack", "C1"), session="a"))
    await store.put(conv(THREAD, session="b"))
    assert (await store.get(ConversationKey("slack", "C1"))).session_id == "a"  # type: ignore[union-attr]
    assert (await store.get(THREAD)).session_id == "b"  # type: ignore[union-attr]


async def test_keys_with_separators_survive(store: ConversationStore) -> None:
    odd = ConversationKey("api", "user:with:colons/and%", "thread:1")
    await store.put(conv(odd, session="odd"))
    loaded = await store.get(odd)
    assert loaded is not None and loaded.key == odd


async def test_list_filters_and_orders_newest_first(store: ConversationStore) -> None:
    now = time.time()
    await store.put(conv(ConversationKey("api", "alice"), session="1", last_active_at=now - 30))
    await store.put(conv(ConversationKey("api", "alice", "t2"), session="2", last_active_at=now))
    await store.put(conv(ConversationKey("api", "bob"), session="3", last_active_at=now - 10))
    await store.put(conv(ConversationKey("slack", "alice"), session="4", last_active_at=now - 5))
    alice = await store.list(platform="api", owner="alice")
    assert [c.session_id for c in alice] == ["2", "1"]
    api = await store.list(platform="api")
    assert [c.session_id for c in api] == ["2", "3", "1"]
    assert len(await store.list()) == 4
    assert len(await store.list(limit=2)) == 2
    await store.put(conv(ConversationKey("api", "bob", "t2"), session="5", last_active_at=now - 1))
    named = await store.list(platform="api", thread="t2")
    assert [c.session_id for c in named] == ["2", "5"]
    assert [c.session_id for c in await store.list(owner="bob", thread="t2")] == ["5"]
    assert await store.list(platform="slack", thread="t2") == []
    with pytest.raises(TypeError, match="cannot filter conversations by cwd"):
        await store.list(cwd="/")  # type: ignore[call-arg]


async def test_delete_removes_conversation_and_history(store: ConversationStore) -> None:
    await store.put(conv())
    await store.add_turn(turn())
    assert await store.delete(KEY) is True
    assert await store.get(KEY) is None
    assert await store.turns(KEY) == []
    assert await store.delete(KEY) is False


async def test_turns_roundtrip_oldest_first(store: ConversationStore) -> None:
    record = turn(
        text="first",
        tool_calls=[ToolCallRecord("Bash", "ls", False), ToolCallRecord("Write", "a.txt", None)],
        cost_usd=0.0123,
        duration_ms=456,
        status="error",
        error="boom",
        finished_at=time.time(),
    )
    await store.add_turn(record)
    await store.add_turn(turn(text="second"))
    turns = await store.turns(KEY, limit=10)
    assert [t.user_text for t in turns] == ["first", "second"]
    assert turns[0] == record


async def test_turns_limit_returns_the_latest(store: ConversationStore) -> None:
    for i in range(4):
        await store.add_turn(turn(text=f"m{i}"))
    assert [t.user_text for t in await store.turns(KEY, limit=2)] == ["m2", "m3"]
    assert await store.turns(KEY, limit=0) == []


async def test_history_is_capped_per_conversation(store: ConversationStore) -> None:
    for i in range(8):
        await store.add_turn(turn(text=f"m{i}"))
    await store.add_turn(turn(THREAD, text="other"))
    kept = await store.turns(KEY, limit=100)
    assert [t.user_text for t in kept] == ["m3", "m4", "m5", "m6", "m7"]
    assert [t.user_text for t in await store.turns(THREAD)] == ["other"]


async def test_mark_interrupted_only_touches_running(store: ConversationStore) -> None:
    await store.put(conv(ConversationKey("a", "1"), session="1", status="running"))
    await store.put(conv(ConversationKey("a", "2"), session="2", status="idle"))
    assert await store.mark_interrupted() == 1
    assert (await store.get(ConversationKey("a", "1"))).status == "interrupted"  # type: ignore[union-attr]
    assert (await store.get(ConversationKey("a", "2"))).status == "idle"  # type: ignore[union-attr]
    assert await store.mark_interrupted() == 0


async def test_ping(store: ConversationStore) -> None:
    await store.ping()


async def test_sqlite_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "persist.db"
    async with SQLiteStore(path) as first:
        await first.put(conv(message_count=2))
        await first.add_turn(turn())
    async with SQLiteStore(path) as second:
        loaded = await second.get(KEY)
        assert loaded is not None and loaded.message_count == 2
        assert len(await second.turns(KEY)) == 1


async def test_sqlite_unopened_or_unwritable_is_a_clear_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not open"):
        await SQLiteStore(tmp_path / "x.db").get(KEY)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open SQLite store"):
        await SQLiteStore(blocker / "sub" / "x.db").open()
