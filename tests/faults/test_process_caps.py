"""A burst of conversations never runs more Claude Code processes than allowed, and waits fairly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from core import Agent, ConversationKey, Sections, TurnWaiting, UserRef
from core.dispatcher import Dispatcher, IncomingMessage
from core.runtime.pool import ClientPool, ClientSpec, WarmClient
from core.runtime.processes import ProcessSlots
from tests.fakes.anthropic_api import FakeAnthropicAPI, Text
from tests.fakes.recording_sink import RecordingSink
from tests.helpers import claude_children, eventually


async def test_a_burst_of_new_conversations_stays_under_the_process_cap(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    fake_api.responder = lambda req: [Text("answer to " + req.last_user_text(), chunks=4, delay=0.15)]
    sections = make_sections(agent={"pool_size": 2, "max_processes": 3, "max_spawns": 2})
    async with Agent(sections) as agent:
        peak = 0
        sampling = True

        async def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, len(claude_children()))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        waits: list[str] = []

        async def one(i: int) -> str:
            text = ""
            async for event in agent.stream(f"question {i}", user_id=f"user{i}"):
                if isinstance(event, TurnWaiting):
                    waits.append(event.reason)
                text = getattr(event, "text", text)
            return text

        answers = await asyncio.gather(*(one(i) for i in range(8)))
        sampling = False
        await sampler
        assert answers == [f"answer to question {i}" for i in range(8)]  # nothing lost, nothing doubled
        assert 1 <= peak <= 3, peak
        assert waits  # the ones that waited were told why
        assert agent.runtime.slots.alive <= 3
        assert agent.runtime.slots.load == agent.runtime.pool.turns_of  # the line favours users with fewer turns


async def hand_over_order(slots: ProcessSlots, first: str, waiters: list[str]) -> list[str]:
    """``first`` holds the only slot; ``waiters`` queue in this order; the order they are handed slots in."""
    order: list[str] = []
    await slots.acquire(first, lambda: False)
    async with slots.spawning():  # its process starts
        pass

    async def wait(owner: str) -> None:
        await slots.acquire(owner, lambda: False)
        order.append(owner)
        async with slots.spawning():
            pass

    tasks = [asyncio.create_task(wait(o)) for o in waiters]
    await asyncio.sleep(0)
    for _ in waiters:
        slots.release()
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    return order


def test_slots_are_handed_over_round_robin_by_user() -> None:
    waiters = ["bulk", "bulk", "bulk", "other", "bulk"]
    order = asyncio.run(hand_over_order(ProcessSlots(limit=1, spawns=1), "first", waiters))
    # one user's burst does not hold another back by more than one turn
    assert order.index("other") <= 1, order
    assert sorted(order) == ["bulk", "bulk", "bulk", "bulk", "other"]


def test_the_next_slot_goes_to_the_user_with_the_fewest_turns_going() -> None:
    going = {"bulk": 2, "other": 0}  # bulk has turns running already; other has none
    slots = ProcessSlots(limit=1, spawns=1, load=lambda owner: going[owner])
    order = asyncio.run(hand_over_order(slots, "bulk", ["bulk", "bulk", "other"]))  # bulk queued first
    assert order == ["other", "bulk", "bulk"]


async def test_the_pool_counts_each_users_turns_going_for_the_process_line() -> None:
    class Process:
        async def disconnect(self) -> None:
            return None

    async def connect(warm: WarmClient) -> None:
        warm.client = Process()  # type: ignore[assignment]

    slots = ProcessSlots(limit=2, spawns=1)
    pool = ClientPool(size=2, idle_timeout=600, slots=slots)
    slots.load = pool.turns_of
    spec = ClientSpec("s", "/tmp", None)
    ann_1 = await pool.lease(ConversationKey("chat", "a1"), spec, connect, owner="ann")
    xavier = await pool.lease(ConversationKey("chat", "x1"), spec, connect, owner="xavier")
    assert (pool.turns_of("ann"), pool.turns_of("bob")) == (1, 0)
    got: list[str] = []

    async def lease(name: str, owner: str) -> None:
        await pool.lease(ConversationKey("chat", name), spec, connect, owner=owner)
        got.append(owner)

    ann_2 = asyncio.create_task(lease("a2", "ann"))  # ann waits first, with a turn running already
    await asyncio.sleep(0)
    bob = asyncio.create_task(lease("b1", "bob"))
    await asyncio.sleep(0)
    assert (pool.turns_of("ann"), pool.turns_of("bob")) == (2, 1)  # waiting for a process counts too
    pool.release(xavier)  # xavier's idle process gives way: one slot frees
    await eventually(lambda: got, what="the freed slot")
    assert got == ["bob"]
    pool.release(ann_1)
    await asyncio.wait_for(asyncio.gather(ann_2, bob), 10)
    assert got == ["bob", "ann"]


def test_a_turn_waiting_only_for_a_start_holds_no_slot_and_closes_no_idle_process() -> None:
    async def scenario() -> None:
        slots = ProcessSlots(limit=3, spawns=1)
        evictions: list[str] = []
        told: list[str] = []
        await slots.acquire("ann", lambda: evictions.append("ann") is None)
        waiter = asyncio.create_task(
            slots.acquire("bob", lambda: evictions.append("bob") is None, lambda: told.append("bob"))
        )
        await asyncio.sleep(0)
        assert not waiter.done() and slots.alive == 1  # bob waits for ann's start, holding no slot
        assert evictions == [] and told == []  # room for processes: nobody is closed, nobody told "busy"
        async with slots.spawning():  # ann's process has started
            pass
        await waiter
        assert (slots.alive, slots.starting) == (2, 1)

    asyncio.run(scenario())


async def test_a_user_over_their_running_turns_waits_and_is_told(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    fake_api.rules["slow one"] = [Text("slow answer", chunks=6, delay=0.3)]
    async with Agent(make_sections(access={"allow_all": True, "max_running_per_user": 1})) as agent:
        dispatcher = Dispatcher(agent, name="chat")
        first, second = RecordingSink(), RecordingSink()
        alice = UserRef("alice")
        dispatcher.submit(IncomingMessage(ConversationKey("chat", "room1"), alice, "slow one", first))
        await eventually(lambda: fake_api.requests, what="the first turn")
        dispatcher.submit(IncomingMessage(ConversationKey("chat", "room2"), alice, "second thing", second))
        await eventually(lambda: any("request(s) running" in t for t in second.visible()), what="the notice")
        assert not any("second thing" in r.last_user_text() for r in fake_api.requests)  # it waits
        await dispatcher.drain(30)
        assert any("echo: [alice] second thing" in t or "echo: second thing" in t for t in second.visible())
