"""The conversation-store contract (``core/store/base.py``), as a class every backend plugs into.

A backend's test module subclasses :class:`StoreContract` and provides a ``store``
fixture yielding an opened store with ``history_limit=5``::

    class TestRedisStore(StoreContract):
        @pytest.fixture
        async def store(self, redis_url):
            async with RedisStore(redis_url, history_limit=5) as s:
                yield s
"""

from __future__ import annotations

import asyncio
import time

import pytest

from core import ConversationKey, ToolCallRecord
from core.errors import Fenced
from core.store import Conversation, ConversationStore, TurnRecord

KEY = ConversationKey("telegram", "42")
THREAD = ConversationKey("slack", "C1", "1700000000.0001")
HISTORY_LIMIT = 5


def conv(key: ConversationKey = KEY, session: str = "s-1", **kw: object) -> Conversation:
    return Conversation(key=key, session_id=session, cwd=f"/ws/{key.owner}", **kw)  # type: ignore[arg-type]


def turn(key: ConversationKey = KEY, text: str = "hi", **kw: object) -> TurnRecord:
    kw.setdefault("reply_text", f"re: {text}")
    return TurnRecord(key=key, session_id="s-1", user_id="42", user_text=text, **kw)  # type: ignore[arg-type]


class StoreContract:
    """Every test here runs against the subclass's ``store`` fixture."""

    async def test_a_stale_owners_write_is_fenced_off(self, store: ConversationStore) -> None:
        await store.put(conv(session="s-1", fence=2))
        with pytest.raises(Fenced):
            await store.put(conv(session="stale", fence=1))
        assert (await store.get(KEY)).session_id == "s-1"  # type: ignore[union-attr]
        await store.put(conv(session="s-2", fence=2))  # the same owner again: fine
        await store.put(conv(session="s-3", fence=3))  # a newer owner: fine
        assert (await store.get(KEY)).session_id == "s-3"  # type: ignore[union-attr]

    async def test_get_missing_returns_none(self, store: ConversationStore) -> None:
        assert await store.get(KEY) is None
        assert await store.find_session("nope") is None

    async def test_put_get_roundtrip_keeps_every_field(self, store: ConversationStore) -> None:
        original = conv(
            model="claude-x",
            message_count=3,
            status="running",
            metadata={"a": [1, "é"], "b": None},
            instance_id="host-1",
            total_cost_usd=0.25,
            cli_cost_usd=0.5,
        )
        await store.put(original)
        loaded = await store.get(KEY)
        assert loaded == original
        assert loaded is not original

    async def test_put_replaces_by_key(self, store: ConversationStore) -> None:
        await store.put(conv(session="s-1"))
        await store.put(conv(session="s-2", message_count=7))
        loaded = await store.get(KEY)
        assert loaded is not None and loaded.session_id == "s-2" and loaded.message_count == 7
        assert await store.find_session("s-1") is None
        assert (await store.find_session("s-2")) == loaded

    async def test_returned_copies_do_not_alias_the_store(self, store: ConversationStore) -> None:
        await store.put(conv(metadata={"x": 1}))
        loaded = await store.get(KEY)
        assert loaded is not None
        loaded.metadata["x"] = 2
        loaded.message_count = 99
        again = await store.get(KEY)
        assert again is not None and again.metadata == {"x": 1} and again.message_count == 0

    async def test_thread_keys_are_distinct_conversations(self, store: ConversationStore) -> None:
        await store.put(conv(ConversationKey("slack", "C1"), session="a"))
        await store.put(conv(THREAD, session="b"))
        assert (await store.get(ConversationKey("slack", "C1"))).session_id == "a"  # type: ignore[union-attr]
        assert (await store.get(THREAD)).session_id == "b"  # type: ignore[union-attr]

    async def test_bot_scoped_keys_are_distinct_conversations(self, store: ConversationStore) -> None:
        plain, scoped = ConversationKey("telegram", "42"), ConversationKey("telegram", "42", bot="team")
        await store.put(conv(plain, session="plain"))
        await store.put(conv(scoped, session="scoped"))
        assert (await store.get(plain)).session_id == "plain"  # type: ignore[union-attr]
        assert (await store.get(scoped)).session_id == "scoped"  # type: ignore[union-attr]
        assert (await store.get(scoped)).key == scoped  # type: ignore[union-attr]
        assert [c.session_id for c in await store.list(bot="team")] == ["scoped"]
        await store.put_turn(turn(scoped, text="only team"))
        assert await store.turns(plain) == []

    async def test_keys_with_separators_survive(self, store: ConversationStore) -> None:
        odd = ConversationKey("api", "user:with:colons/and%@x", "thread:1", bot="b@t:1")
        await store.put(conv(odd, session="odd"))
        loaded = await store.get(odd)
        assert loaded is not None and loaded.key == odd

    async def test_list_filters_and_orders_newest_first(self, store: ConversationStore) -> None:
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

    async def test_delete_removes_conversation_and_history(self, store: ConversationStore) -> None:
        await store.put(conv())
        await store.put_turn(turn())
        assert await store.delete(KEY) is True
        assert await store.get(KEY) is None
        assert await store.turns(KEY) == []
        assert await store.delete(KEY) is False

    async def test_turns_roundtrip_oldest_first(self, store: ConversationStore) -> None:
        record = turn(
            text="first",
            tool_calls=[ToolCallRecord("Bash", "ls", False), ToolCallRecord("Write", "a.txt", None)],
            cost_usd=0.0123,
            duration_ms=456,
            status="error",
            error="boom",
            finished_at=time.time(),
            instance_id="host-1",
        )
        await store.put_turn(record)
        await store.put_turn(turn(text="second"))
        turns = await store.turns(KEY, limit=10)
        assert [t.user_text for t in turns] == ["first", "second"]
        assert turns[0] == record

    async def test_a_turn_written_again_is_updated_in_place(self, store: ConversationStore) -> None:
        started = turn(text="first", status="running", reply_text="")
        await store.put_turn(started)
        await store.put_turn(turn(text="second"))
        started.status, started.reply_text, started.finished_at = "ok", "done", time.time()
        await store.put_turn(started)
        turns = await store.turns(KEY, limit=10)
        assert [(t.user_text, t.status, t.reply_text) for t in turns] == [
            ("first", "ok", "done"),
            ("second", "ok", "re: second"),
        ]

    async def test_turns_limit_returns_the_latest(self, store: ConversationStore) -> None:
        for i in range(4):
            await store.put_turn(turn(text=f"m{i}"))
        assert [t.user_text for t in await store.turns(KEY, limit=2)] == ["m2", "m3"]
        assert await store.turns(KEY, limit=0) == []

    async def test_history_is_capped_per_conversation(self, store: ConversationStore) -> None:
        for i in range(8):
            await store.put_turn(turn(text=f"m{i}"))
        await store.put_turn(turn(THREAD, text="other"))
        kept = await store.turns(KEY, limit=100)
        assert [t.user_text for t in kept] == [f"m{i}" for i in range(8 - HISTORY_LIMIT, 8)]
        assert [t.user_text for t in await store.turns(THREAD)] == ["other"]

    async def test_mark_interrupted_touches_only_this_instances_running_turns(self, store: ConversationStore) -> None:
        mine, theirs, legacy, idle = (ConversationKey("a", n) for n in ("mine", "theirs", "legacy", "idle"))
        await store.put(conv(mine, session="1", status="running", instance_id="me"))
        await store.put(conv(theirs, session="2", status="running", instance_id="other"))
        await store.put(conv(legacy, session="3", status="running"))  # written before instances were recorded
        await store.put(conv(idle, session="4", status="idle", instance_id="me"))
        await store.put_turn(turn(mine, status="running", instance_id="me", reply_text=""))
        await store.put_turn(turn(theirs, status="running", instance_id="other", reply_text=""))
        assert await store.mark_interrupted("me") == 2
        assert (await store.get(mine)).status == "interrupted"  # type: ignore[union-attr]
        assert (await store.get(legacy)).status == "interrupted"  # type: ignore[union-attr]
        assert (await store.get(theirs)).status == "running"  # type: ignore[union-attr]
        assert (await store.get(idle)).status == "idle"  # type: ignore[union-attr]
        [cut] = await store.turns(mine)
        assert cut.status == "interrupted" and cut.user_text == "hi" and cut.error
        [live] = await store.turns(theirs)
        assert live.status == "running"
        assert await store.mark_interrupted("me") == 0

    async def test_claim_key_is_first_time_only_within_its_ttl(self, store: ConversationStore) -> None:
        assert await store.claim_key("slack:Ev1", 60) is True
        assert await store.claim_key("slack:Ev1", 60) is False
        assert await store.claim_key("slack:Ev2", 60) is True
        assert await store.claim_key("short", 0.2) is True
        await asyncio.sleep(0.3)
        assert await store.claim_key("short", 60) is True  # expired: claimable again

    async def test_concurrent_claims_have_one_winner(self, store: ConversationStore) -> None:
        results = await asyncio.gather(*(store.claim_key("race", 60) for _ in range(10)))
        assert results.count(True) == 1

    async def test_ping_and_store_id(self, store: ConversationStore) -> None:
        await store.ping()
        await store.ping(write=True)
        first = await store.store_id()
        assert first and first == await store.store_id()


class MetaContract:
    """Named values (``put_meta`` ...), for every backend that keeps them."""

    async def test_named_values_roundtrip_list_by_prefix_and_delete(self, store: ConversationStore) -> None:
        assert await store.get_meta("grant:tg:telegram:42") is None
        await store.put_meta("grant:tg:telegram:42", '{"by": "telegram:7"}')
        await store.put_meta("grant:tg:telegram:43", "{}")
        await store.put_meta("grant:other:telegram:44", "{}")
        await store.put_meta("grant:tg_%:x", "odd")  # LIKE wildcards in a name are just characters
        assert await store.get_meta("grant:tg:telegram:42") == '{"by": "telegram:7"}'
        assert sorted(await store.list_meta("grant:tg:")) == ["grant:tg:telegram:42", "grant:tg:telegram:43"]
        await store.put_meta("grant:tg:telegram:43", "replaced")
        assert (await store.list_meta("grant:tg:"))["grant:tg:telegram:43"] == "replaced"
        assert await store.delete_meta("grant:tg:telegram:43") is True
        assert await store.delete_meta("grant:tg:telegram:43") is False
        assert list(await store.list_meta("grant:tg:")) == ["grant:tg:telegram:42"]
        assert await store.store_id()  # the store's own values are not among them
        assert "store_id" not in await store.list_meta("")

    async def test_added_amounts_are_summed_atomically(self, store: ConversationStore) -> None:
        assert await store.add_meta("spend:telegram:42:day", 1500) == 1500
        assert await store.add_meta("spend:telegram:42:day", -200) == 1300
        # concurrent adds (one connection pool, or several instances) lose none
        await asyncio.gather(*(store.add_meta("spend:telegram:42:day", 10) for _ in range(20)))
        assert await store.get_meta("spend:telegram:42:day") == "1500"
        assert await store.list_meta("spend:telegram:") == {"spend:telegram:42:day": "1500"}
        assert await store.add_meta("spend:other", 0) == 0
        assert await store.delete_meta("spend:telegram:42:day") is True
        assert await store.add_meta("spend:telegram:42:day", 7) == 7
