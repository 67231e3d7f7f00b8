"""Re-warming with the real Claude Code CLI: after a restart the most recent conversations get warm
processes (within the pool's size and the recency window), their first turn runs on them, a message
arriving meanwhile is served without a second process, and an evicted active conversation comes back
first when the pool has room."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from core import Agent, ConversationKey, Dispatcher, IncomingMessage, Sections, SinkLimits, UserRef
from core.config import AgentSettings
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.fakes.recording_sink import RecordingSink
from tests.helpers import claude_children, eventually
from tests.servers import RedisServer


def key(user: str) -> ConversationKey:
    return ConversationKey("api", user)


async def seed(make_sections: Callable[..., Sections], ages: dict[str, float], **overrides: Any) -> None:
    """One turn in each user's conversation, then its last activity set ``ages[user]`` seconds back."""
    async with Agent(make_sections(**overrides)) as agent:
        for user in ages:
            result = await agent.chat(f"hello, I am {user}", user_id=user)
            assert not result.is_error, result.error
        now = time.time()
        for user, age in ages.items():
            conv = await agent.conversations.get(key(user))
            assert conv is not None
            conv.last_active_at = now - age
            await agent.store.put(conv)


def prewarming(make_sections: Callable[..., Sections], prewarm: int, pool_size: int, **agent: Any) -> Agent:
    return Agent(make_sections(agent={"prewarm": prewarm, "pool_size": pool_size, **agent}))


async def ask(dispatcher: Dispatcher, user: str, text: str) -> list[str]:
    sink = RecordingSink(limits=SinkLimits(max_len=4000, min_edit_interval=0.05, typing_interval=0))
    await dispatcher.handle(IncomingMessage(key(user), UserRef(user), text, sink))
    return sink.visible()


async def test_a_restart_warms_the_most_recent_conversations_within_the_window_and_the_pool(
    make_sections: Callable[..., Sections],
) -> None:
    await seed(make_sections, {"u3": 30, "u2": 20, "u1": 10, "u4": 7200})  # u4: two hours ago
    for prewarm, pool_size, expected in [
        (10, 2, ["u2", "u1"]),  # the pool holds two: the two most recent, the older one first to give way
        (10, 4, ["u3", "u2", "u1"]),  # room for four, but u4 was active too long ago
        (1, 4, ["u1"]),  # asked for one
    ]:
        async with prewarming(make_sections, prewarm, pool_size) as agent:
            pool = agent.runtime.pool
            await agent.prewarm.wait()
            assert pool.keys() == [key(u) for u in expected]
            assert pool.prewarmed == pool.spawns == len(expected) == pool.slots.alive
            await eventually(lambda n=len(expected): len(claude_children()) == n, what="only the pool's CLIs alive")
            assert all(not pool.get(key(u)).busy for u in expected)  # type: ignore[union-attr]


async def test_the_first_turn_after_a_restart_runs_on_the_prewarmed_process(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    await seed(make_sections, {"ada": 5})
    async with prewarming(make_sections, 4, 4) as agent:
        await agent.prewarm.wait()
        pool = agent.runtime.pool
        warm = pool.get(key("ada"))
        assert warm is not None and pool.spawns == 1
        assert await ask(Dispatcher(agent), "ada", "who am I?") == ["echo: who am I?"]
        assert pool.get(key("ada")) is warm and pool.spawns == 1  # no process was started for the turn
        assert "hello, I am ada" in fake_api.requests[-1].user_texts()  # the resumed session, with its memory


async def test_messages_arriving_during_prewarm_are_served_and_start_no_second_process(
    make_sections: Callable[..., Sections],
) -> None:
    await seed(make_sections, {"u2": 20, "u1": 10})
    agent = prewarming(make_sections, 2, 4)
    runtime, pool = agent.runtime, agent.runtime.pool
    connect = runtime._connect
    starts: Counter[ConversationKey] = Counter()
    release_u1 = asyncio.Event()

    async def held(warm: Any, request: Any) -> None:  # u1's pre-warm start is held until released
        starts[warm.key] += 1
        if warm.key == key("u1"):
            await release_u1.wait()
        await connect(warm, request)

    runtime._connect = held  # type: ignore[method-assign]
    async with agent:
        dispatcher = Dispatcher(agent)
        await eventually(lambda: pool.warming(key("u1")), what="u1's pre-warm under way")
        # a newcomer is answered while the pre-warm is still starting (it does not wait for it)
        assert await ask(dispatcher, "u9", "hi") == ["echo: hi"]
        assert pool.warming(key("u1"))
        # u1 writes while its process is being pre-warmed: answered by that process
        sink = RecordingSink(limits=SinkLimits(max_len=4000, min_edit_interval=0.05, typing_interval=0))
        turn = dispatcher.submit(IncomingMessage(key("u1"), UserRef("u1"), "me again", sink))
        await eventually(lambda: any(op.name == "typing" for op in sink.ops), what="u1's sign of life")
        assert not turn.done()
        release_u1.set()
        await asyncio.wait_for(turn, 60)
        assert sink.visible() == ["echo: me again"]
        await agent.prewarm.wait()
        assert starts == {key("u1"): 1, key("u9"): 1, key("u2"): 1}  # one process each, u1's included
        assert pool.prewarmed == 2 and set(pool.keys()) == {key("u1"), key("u2"), key("u9")}


async def test_a_conversation_evicted_while_active_is_rewarmed_first_when_room_frees(
    make_sections: Callable[..., Sections],
) -> None:
    async with prewarming(make_sections, 1, 2) as agent:
        pool = agent.runtime.pool
        for user in ("a", "b", "c", "d"):  # c evicts a, d evicts b
            assert not (await agent.chat(f"hi from {user}", user_id=user)).is_error
        assert pool.keys() == [key("c"), key("d")] and pool.evictions == 2
        agent.runtime.forget(key("d"))  # room for one (e.g. /new in d): b, the most recent evicted, comes back
        await eventually(lambda: pool.prewarmed == 1, what="a re-warm")
        await agent.prewarm.wait()
        assert set(pool.keys()) == {key("b"), key("c")}
        spawns = pool.spawns
        assert (await agent.chat("back again", user_id="b")).text == "echo: back again"
        assert pool.spawns == spawns  # b's turn ran on the re-warmed process


async def test_a_prewarmed_process_nobody_used_is_not_rewarmed_after_its_eviction(
    make_sections: Callable[..., Sections],
) -> None:
    await seed(make_sections, {"old": 3000})  # last active 50 minutes ago: still within prewarm_within
    async with prewarming(make_sections, 1, 2) as agent:
        pool = agent.runtime.pool
        await agent.prewarm.wait()
        assert pool.keys() == [key("old")] and pool.prewarmed == 1
        for user in ("a", "b", "c"):  # b evicts old (never used since the restart), c evicts a
            assert not (await agent.chat(f"hi from {user}", user_id=user)).is_error
        assert pool.keys() == [key("b"), key("c")] and pool.evictions == 2
        agent.runtime.forget(key("b"))
        agent.runtime.forget(key("c"))  # room for two: only a, whose user is active, comes back
        await eventually(lambda: pool.prewarmed == 2, what="a re-warm")
        await agent.prewarm.wait()
        assert pool.keys() == [key("a")] and pool.prewarmed == 2


async def test_a_conversation_another_live_instance_owns_is_not_prewarmed(
    make_sections: Callable[..., Sections], redis_server: RedisServer
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}:"

    def instance(name: str, **agent: Any) -> Agent:
        coordination = {"backend": "redis", "url": redis_server.url, "instance_id": name, "key_prefix": prefix}
        return Agent(make_sections(coordination=coordination, agent=agent))

    async with instance("a") as a:
        assert not (await a.chat("hi", user_id="alice")).is_error  # a owns alice's conversation, and lives on
        async with instance("b") as b:
            assert not (await b.chat("hi", user_id="bob")).is_error
        # b restarts (it handed its leases back as it stopped): of the two recent conversations, alice's is a's
        async with instance("b", prewarm=4, pool_size=4) as b:
            await b.prewarm.wait()
            assert b.runtime.pool.keys() == [key("bob")]
            assert a.runtime.pool.keys() == [key("alice")]


def test_prewarm_is_on_by_default_and_its_settings_are_validated() -> None:
    settings = AgentSettings()
    assert (settings.prewarm, settings.prewarm_within) == (4, 3600.0)
    assert AgentSettings(prewarm=0).prewarm == 0  # off
    for bad in ({"prewarm": -1}, {"prewarm_within": 0}):
        with pytest.raises(ValidationError):
            AgentSettings(**bad)
