"""Coordination on a real redis-server, in one process: leases and fencing, library / HTTP turns routed
to the owner's warm process, takeover of a dead owner's conversations."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import replace

import pytest

from core import Agent, ConversationKey, Sections, TurnError, TurnResult, UserRef
from core.coordination.redis import RedisBackend
from core.errors import Fenced
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.helpers import eventually
from tests.servers import RedisServer

KEY = ConversationKey("api", "alice")


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


def backend(redis_server: RedisServer, prefix: str, name: str, ttl: float = 3.0) -> RedisBackend:
    return RedisBackend(redis_server.url, prefix, name, ttl)


async def test_one_owner_at_a_time_and_a_takeover_gets_the_next_fence(redis_server: RedisServer, prefix: str) -> None:
    a, b = backend(redis_server, prefix, "a"), backend(redis_server, prefix, "b")
    await a.start()
    await b.start()
    try:
        first = await a.owner(KEY)
        assert (first.instance, first.mine, first.taken_from) == ("a", True, None)
        seen_by_b = await b.owner(KEY)
        assert (seen_by_b.instance, seen_by_b.mine, seen_by_b.fence) == ("a", False, first.fence)
        assert await a.still_owner(KEY, first.fence)

        await a.close()  # a graceful stop releases the lease at once
        taken = await b.owner(KEY)
        assert (taken.instance, taken.mine, taken.taken_from) == ("b", True, None)  # released, not taken over
        assert taken.fence == first.fence + 1
    finally:
        await b.close()


async def test_a_dead_owners_lease_holds_until_its_heartbeat_lapses(redis_server: RedisServer, prefix: str) -> None:
    a, b = backend(redis_server, prefix, "a"), backend(redis_server, prefix, "b")
    await a.start()
    await b.start()
    try:
        first = await a.owner(KEY)
        for task in a._tasks:  # a stops beating, as a killed process would
            task.cancel()
        assert (await b.owner(KEY)).instance == "a"  # its heartbeat is still alive
        await a.redis.delete(a.k("alive", "a"))  # ... until it lapses
        taken = await b.owner(KEY)
        assert (taken.instance, taken.taken_from, taken.fence) == ("b", "a", first.fence + 1)
        assert not await a.still_owner(KEY, first.fence)
    finally:
        await a.redis.aclose()
        await b.close()


async def test_a_library_turn_through_b_runs_on_as_warm_process_and_a_stale_write_is_fenced(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, redis_server: RedisServer, prefix: str
) -> None:
    def instance(name: str) -> Agent:
        return Agent(
            make_sections(
                coordination={"backend": "redis", "url": redis_server.url, "instance_id": name, "key_prefix": prefix}
            )
        )

    async with instance("a") as a, instance("b") as b:
        first = await a.chat("my name is Ada", user_id="alice")
        assert not first.is_error and first.text == "echo: my name is Ada"
        events = []
        async with aclosing(b.stream("what is my name?", user_id="alice")) as stream:
            async for event in stream:
                events.append(event)
        result = events[-1]
        assert isinstance(result, TurnResult) and result.text == "echo: what is my name?"
        assert "my name is Ada" in str(fake_api.requests[-1].messages)  # the same session, with its memory
        assert b.runtime.pool.get(KEY) is None and a.runtime.pool.get(KEY) is not None
        [one, two] = await b.conversations.history(KEY)
        assert (one.instance_id, two.instance_id) == ("a", "a")

        # a record written with an older fencing token than the store's is refused
        conv = await a.conversations.get(KEY)
        assert conv is not None and conv.fence >= 1
        stale = replace(conv, fence=conv.fence - 1, message_count=99)
        with pytest.raises(Fenced):
            await a.store.put(stale)
        assert (await a.conversations.get(KEY)).message_count == 2  # type: ignore[union-attr]


async def test_a_stale_owner_runs_no_turn_it_accepted_before_another_instance_took_over(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, redis_server: RedisServer, prefix: str
) -> None:
    def instance(name: str) -> Agent:
        coordination = {"backend": "redis", "url": redis_server.url, "instance_id": name, "key_prefix": prefix}
        return Agent(make_sections(coordination={**coordination, "lease_ttl": 3}))

    async with instance("a") as a, instance("b") as b:
        assert not (await a.chat("my name is Ada", user_id="alice")).is_error
        stale = a.conversations.fences[KEY]
        lapsed = a.coordination.backend  # type: ignore[attr-defined]
        for task in lapsed._tasks:  # a's heartbeat stops (a long pause, cut off from Redis) and lapses
            task.cancel()
        await lapsed.redis.delete(lapsed.k("alive", "a"))
        assert not (await b.chat("hello from b", user_id="alice")).is_error  # b takes the conversation over

        # a now gets to a message it accepted before (queued behind a turn, or in its inbox)
        async with aclosing(a.conversations.turn(KEY, "stale turn on a", UserRef("alice"))) as events:
            seen = [event async for event in events]
        assert [type(e) for e in seen] == [TurnError] and seen[0].kind == "unavailable"
        assert "another instance took this conversation over" in seen[0].message
        assert not [r for r in fake_api.requests if r.last_user_text() == "stale turn on a"]  # nothing ran
        conv = await b.conversations.get(KEY)
        assert conv is not None and (conv.instance_id, conv.status) == ("b", "idle") and conv.fence > stale
        history = await b.conversations.history(KEY)
        assert [(t.user_text, t.instance_id) for t in history][-1] == ("hello from b", "b")

        # and where the coordination cannot tell, the store's fence refuses the stale write just the same
        a.conversations.still_owner = None
        async with aclosing(a.conversations.turn(KEY, "stale again", UserRef("alice"))) as events:
            seen = [event async for event in events]
        assert [type(e) for e in seen] == [TurnError] and seen[0].kind == "unavailable"
        assert (await b.conversations.get(KEY)).instance_id == "b"  # type: ignore[union-attr]
        assert not [r for r in fake_api.requests if r.last_user_text() == "stale again"]


async def test_a_delivery_claimed_by_a_live_instance_is_a_duplicate_and_a_dead_ones_claim_is_free(
    redis_server: RedisServer, prefix: str
) -> None:
    from core.coordination.redis import RedisSeenKeys

    a, b, c = (backend(redis_server, prefix, name, ttl=1.5) for name in "abc")
    for one in (a, b, c):
        await one.start()
    try:
        seen_a, seen_b, seen_c = RedisSeenKeys(a), RedisSeenKeys(b), RedisSeenKeys(c)
        assert await seen_a.first_time("bot:update-1", 120)
        assert not await seen_a.first_time("bot:update-1", 120)  # a retry reaching a again
        assert not await seen_b.first_time("bot:update-1", 120)  # a lives and holds it: b waited, then let it be

        for task in a._tasks:  # a dies before accepting the message; its heartbeat key lingers a while
            task.cancel()
        assert await a.redis.exists(a.k("alive", "a"))
        assert await seen_b.first_time("bot:update-1", 120)  # the platform's retry is answered, by b
        await seen_b.confirm("bot:update-1", 3600)
        assert not await seen_c.first_time("bot:update-1", 120)
        await b.close()
        assert not await seen_c.first_time("bot:update-1", 120)  # accepted: a duplicate even once b is gone
    finally:
        await a.redis.aclose()
        await c.close()


async def test_a_delivery_landing_while_another_instance_takes_it_on_is_a_duplicate_once_accepted(
    redis_server: RedisServer, prefix: str
) -> None:
    import asyncio

    from core.coordination.redis import RedisSeenKeys

    a, b = backend(redis_server, prefix, "a", ttl=30), backend(redis_server, prefix, "b", ttl=30)
    await a.start()
    await b.start()
    try:
        seen_a, seen_b = RedisSeenKeys(a), RedisSeenKeys(b)
        assert await seen_a.first_time("bot:update-1", 120)
        retry = asyncio.create_task(seen_b.first_time("bot:update-1", 120))
        await asyncio.sleep(0.5)
        assert not retry.done()  # a has not said yet whether it took the message on
        await seen_a.confirm("bot:update-1", 3600)
        assert await asyncio.wait_for(retry, 5) is False  # long before the 31 s a lapsed claim would take
    finally:
        await a.close()
        await b.close()


async def test_a_delivery_claimed_by_an_earlier_run_under_the_same_id_is_free_for_its_restart(
    redis_server: RedisServer, prefix: str
) -> None:
    from core.coordination.redis import RedisSeenKeys

    first_run = backend(redis_server, prefix, "a", ttl=30)
    await first_run.start()
    assert await RedisSeenKeys(first_run).first_time("bot:update-1", 120)
    for task in first_run._tasks:  # killed before accepting it
        task.cancel()
    await first_run.redis.aclose()
    restarted = backend(redis_server, prefix, "a", ttl=30)
    await restarted.start()  # beats under the same id at once
    try:
        assert await RedisSeenKeys(restarted).first_time("bot:update-1", 120)  # the retry is answered
        assert not await RedisSeenKeys(restarted).first_time("bot:update-1", 120)
    finally:
        await restarted.close()


async def test_a_message_handed_to_an_owner_restarting_under_its_id_is_taken_up_once(
    redis_server: RedisServer, prefix: str
) -> None:
    a, b = backend(redis_server, prefix, "a"), backend(redis_server, prefix, "b")
    await a.start()
    await b.start()
    for task in a._tasks:  # a crashes: its heartbeat is still alive for a while, so b hands messages to it
        task.cancel()
    handed, taken_back = b.new_channel(), b.new_channel()
    await b.send("a", {"type": "deliver", "channel": handed, "text": "while a was down"})
    await b.send("a", {"type": "deliver", "channel": taken_back, "text": "taken back"})
    await b.send("a", {"type": "stop", "key": str(KEY)})  # meant for the run that crashed
    assert await b.take(taken_back)  # b ran this one itself (say a's heartbeat had lapsed by then)

    restarted = backend(redis_server, prefix, "a")  # a systemd restart: the same instance id
    got: list[dict[str, object]] = []

    async def handle(message: dict[str, object]) -> None:
        got.append(message)

    restarted.subscribe(handle)
    await restarted.start()
    try:
        await eventually(lambda: got, what="the message handed over while a was down")
        await b.send("a", {"type": "stop", "key": str(KEY)})  # and new messages still arrive
        await eventually(lambda: len(got) == 2, what="a new message")
        assert [m.get("text") or m["type"] for m in got] == ["while a was down", "stop"]
        assert not await b.take(handed)  # taken up once: the receiver cannot take it back now
    finally:
        await a.redis.aclose()
        await restarted.close()
        await b.close()


async def test_an_owner_that_lapsed_mid_turn_stops_its_turn_and_records_nothing_over_the_new_owner(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, redis_server: RedisServer, prefix: str
) -> None:
    """A's heartbeat lapses while its turn runs (a long pause), B takes the conversation over; when A's
    heartbeat runs again it finds the lease gone and stops its turn, whose end is not written over B's."""
    import asyncio

    from tests.fakes.anthropic_api import Text

    def instance(name: str) -> Agent:
        coordination = {"backend": "redis", "url": redis_server.url, "instance_id": name, "key_prefix": prefix}
        return Agent(make_sections(coordination={**coordination, "lease_ttl": 3}))

    async with instance("a") as a, instance("b") as b:
        assert not (await a.chat("my name is Ada", user_id="alice")).is_error
        fake_api.rules["slow"] = [Text("slow answer from a", chunks=40, delay=0.5)]
        slow = asyncio.create_task(a.chat("slow", user_id="alice"))
        await eventually(lambda: any(r.last_user_text() == "slow" for r in fake_api.requests), what="a's turn")
        paused = a.coordination.backend  # type: ignore[attr-defined]
        for task in paused._tasks:
            if task.get_name() == "ccbridge-heartbeat":
                task.cancel()
        await paused.redis.delete(paused.k("alive", "a"))
        assert not (await b.chat("hello from b", user_id="alice")).is_error  # b takes it over
        paused._tasks.append(asyncio.create_task(paused._heartbeat(), name="ccbridge-heartbeat"))  # a wakes up
        result = await asyncio.wait_for(slow, 30)
        assert result.interrupted and "slow answer from a" not in result.text  # stopped, not run to its end
        history = [(t.user_text, t.status, t.instance_id) for t in await b.conversations.history(KEY)]
        assert history == [
            ("my name is Ada", "ok", "a"),
            ("slow", "interrupted", "a"),  # as b found it when it took over: a's end is not written over it
            ("hello from b", "ok", "b"),
        ]
        conv = await b.conversations.get(KEY)
        assert conv is not None and (conv.instance_id, conv.status) == ("b", "idle")


async def test_a_failed_renewal_of_the_leader_lease_keeps_the_leader_until_its_lease_could_lapse(
    redis_server: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One Redis hiccup must not drop the platform connection (and the turns with it)."""
    import time

    from redis.exceptions import ConnectionError as RedisConnectionError

    a = backend(redis_server, prefix, "a", ttl=3.0)
    await a.start()
    try:
        assert await a.leader("connection")
        real = a._renew_leader

        async def hiccup(*args: object, **kwargs: object) -> object:
            raise RedisConnectionError("Connection reset by peer")

        a._renew_leader = hiccup  # type: ignore[assignment]
        assert await a.leader("connection")  # still leading: its lease cannot have lapsed yet
        a._led["connection"] = time.monotonic() - 4.0  # no renewal for longer than the lease
        assert not await a.leader("connection")  # another instance may hold it by now
        a._renew_leader = real  # type: ignore[assignment]
        assert await a.leader("connection")
    finally:
        await a.close()
