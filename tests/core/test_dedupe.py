"""Dedupe of platform redeliveries: ``Dispatcher.first_delivery`` and the seen-keys memory behind it.

One instance: a delivery id is remembered for ``DEDUPE_TTL`` at once. Several instances
(``coordination: redis``): it is claimed briefly and remembered for good only once the
message was taken on, so an instance dying in between leaves it to the platform's retry.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import core.dispatcher
import core.store.sqlite
from core import Agent, ConversationKey, Dispatcher, IncomingMessage, Sections, UserRef
from core.coordination import MemorySeenKeys
from core.store import MemoryStore, SQLiteStore
from tests.fakes.recording_sink import RecordingSink


def unaddressed(user: str = "alice") -> IncomingMessage:
    """A message the bot is not asked about: taken on (accepted) without a turn."""
    key = ConversationKey("chat", "room-" + uuid.uuid4().hex[:6])
    return IncomingMessage(key=key, user=UserRef(user, user), text="chatter", reply=RecordingSink(), mentioned=False)


@pytest.fixture
async def make_agent(make_sections: Callable[..., Sections]) -> AsyncIterator[Callable[..., object]]:
    agents: list[Agent] = []

    async def make(**overrides: object) -> Agent:
        agent = await Agent(make_sections(**overrides)).start()
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await agent.close()


async def test_a_delivery_is_first_once_per_bot(make_agent: Callable[..., object]) -> None:
    agent = await make_agent()  # type: ignore[misc]
    bot = Dispatcher(agent, name="tg")
    assert await bot.first_delivery("update-1") is True
    assert await bot.first_delivery("update-1") is False
    assert await bot.first_delivery("update-2") is True
    assert await Dispatcher(agent, name="tg").first_delivery("update-1") is False  # same bot, another dispatcher
    assert await Dispatcher(agent, name="tg2").first_delivery("update-1") is True  # another bot: its own ids
    assert await Dispatcher(agent).first_delivery("update-1") is True  # unnamed: "bot"


async def test_a_delivery_is_first_again_after_its_ttl(make_agent: Callable[..., object]) -> None:
    agent = await make_agent()  # type: ignore[misc]
    bot = Dispatcher(agent, name="tg")
    assert await bot.first_delivery("update-1", ttl=0.3) is True
    assert await bot.first_delivery("update-1", ttl=0.3) is False
    await asyncio.sleep(0.4)
    assert await bot.first_delivery("update-1", ttl=0.3) is True
    assert await bot.first_delivery("update-2") is True
    await asyncio.sleep(0.4)
    assert await bot.first_delivery("update-2") is False  # the default ttl is hours


async def test_an_unreachable_memory_of_deliveries_lets_the_message_through(make_agent: Callable[..., object]) -> None:
    agent = await make_agent()  # type: ignore[misc]
    bot = Dispatcher(agent, name="tg")
    assert await bot.first_delivery("update-1") is True
    await agent.store.close()  # type: ignore[attr-defined]
    assert await bot.first_delivery("update-1") is True  # a rare duplicate beats a lost message
    assert await bot.first_delivery("update-1") is True


async def test_with_several_instances_a_claim_is_kept_only_once_the_message_is_taken_on(
    make_agent: Callable[..., object], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.dispatcher, "CLAIM_TTL", 0.5)
    coordination = {"backend": "redis", "url": redis_url, "key_prefix": f"t{uuid.uuid4().hex[:8]}:"}
    one = await make_agent(coordination={**coordination, "instance_id": "one"})  # type: ignore[misc]
    two = await make_agent(coordination={**coordination, "instance_id": "two"})  # type: ignore[misc]
    assert one.coordination.shared and two.coordination.shared  # type: ignore[attr-defined]
    here, there = Dispatcher(one, name="tg"), Dispatcher(two, name="tg")

    async def deliver(event_id: str, *, handled: bool) -> bool:
        first = await here.first_delivery(event_id)
        if first and handled:
            await here.handle(unaddressed())
        return first

    assert await deliver("taken-on", handled=True) is True
    assert await deliver("dropped", handled=False) is True  # claimed, then this instance "died"
    assert await there.first_delivery("taken-on") is False
    # "dropped" is held by a live instance that never takes it on: a retry waits for the claim to lapse
    assert await there.first_delivery("dropped") is True  # ... and is answered
    assert await there.first_delivery("dropped") is False
    await asyncio.sleep(0.8)
    assert await there.first_delivery("taken-on") is False  # accepted: remembered past the claim


async def test_a_claim_belongs_to_the_message_it_came_with(
    make_agent: Callable[..., object], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.dispatcher, "CLAIM_TTL", 0.5)
    coordination = {"backend": "redis", "url": redis_url, "key_prefix": f"t{uuid.uuid4().hex[:8]}:"}
    agent = await make_agent(coordination={**coordination, "instance_id": "one"})  # type: ignore[misc]
    bot = Dispatcher(agent, name="tg")
    assert await bot.first_delivery("first") is True
    await bot.handle(unaddressed())  # takes "first" on
    assert await bot.first_delivery("second") is True
    await bot.handle(unaddressed())  # takes "second" on
    assert await bot.first_delivery("third") is True  # claimed; its message is never handled
    await asyncio.sleep(0.8)
    assert [await bot.first_delivery(e) for e in ("first", "second", "third")] == [False, False, True]


async def test_seen_keys_in_memory_are_first_once_within_their_ttl() -> None:
    seen = MemorySeenKeys()
    assert await seen.first_time("a", 60) is True
    assert await seen.first_time("a", 60) is False
    assert await seen.first_time("b", 0.05) is True
    await asyncio.sleep(0.1)
    assert await seen.first_time("b", 60) is True  # expired: first again
    assert await seen.first_time("b", 60) is False
    assert len(seen) == 2


async def test_seen_keys_in_memory_forget_the_oldest_first() -> None:
    seen = MemorySeenKeys(size=2)
    assert seen.size == 2
    for key in ("a", "b", "c"):
        assert await seen.first_time(key, 60) is True
    assert len(seen) == 2
    assert await seen.first_time("b", 60) is False and await seen.first_time("c", 60) is False
    assert await seen.first_time("a", 60) is True  # forgotten; now the newest, "b" goes
    assert await seen.first_time("c", 60) is False
    assert await seen.first_time("b", 60) is True


async def test_a_key_claimed_again_after_its_ttl_counts_as_new() -> None:
    seen = MemorySeenKeys(size=2)
    assert await seen.first_time("a", 0.05) is True
    assert await seen.first_time("b", 60) is True
    await asyncio.sleep(0.1)
    assert await seen.first_time("a", 60) is True  # re-claimed: the newest now
    assert await seen.first_time("c", 60) is True  # so "b" is the one forgotten
    assert await seen.first_time("a", 60) is False
    assert await seen.first_time("b", 60) is True


async def test_an_unreachable_memory_of_deliveries_is_logged_naming_the_delivery(
    make_agent: Callable[..., object], caplog: pytest.LogCaptureFixture
) -> None:
    agent = await make_agent()  # type: ignore[misc]
    bot = Dispatcher(agent, name="tg")
    await agent.store.close()  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="core.dispatcher"):
        assert await bot.first_delivery("update-9") is True
    (line,) = [r.getMessage() for r in caplog.records if r.name == "core.dispatcher"]
    assert line.startswith("could not check delivery update-9 for repeats (") and line.endswith("); handling it")
    assert "(None)" not in line and len(line) > len("could not check delivery update-9 for repeats (); handling it")


async def test_the_memory_store_keeps_deduping_past_its_pruning_threshold() -> None:
    store = MemoryStore()
    for i in range(50_002):
        assert await store.claim_key(f"k{i}", 60) is True
    assert await store.claim_key("k0", 60) is False  # still remembered after the sweep
    assert await store.claim_key("k50001", 60) is False and await store.claim_key("new", 60) is True


async def test_sqlite_sweeps_expired_keys_every_so_many_claims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.store.sqlite, "_SEEN_PRUNE_EVERY", 4)
    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    path = tmp_path / "seen.db"

    def rows() -> list[str]:
        db = sqlite3.connect(path)
        try:
            return sorted(key for (key,) in db.execute("SELECT key FROM seen_keys"))
        finally:
            db.close()

    async with SQLiteStore(path) as store:
        assert await store.claim_key("old", 1) is True  # claim 1
        now[0] = 2000.0  # "old" has expired
        assert await store.claim_key("k2", 60) is True
        assert rows() == ["k2", "old"]  # claims 2 and 3: not swept yet
        assert await store.claim_key("k3", 60) is True
        assert rows() == ["k2", "k3", "old"]
        assert await store.claim_key("k2", 60) is False  # claim 4 sweeps; a repeat is still a repeat
        assert rows() == ["k2", "k3"]
        assert await store.claim_key("old", 60) is True
