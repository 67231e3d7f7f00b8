"""A burst of conversations never runs more Claude Code processes than the pool's size (besides the ones
being closed), and waits fairly."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from core import Agent, ConversationKey, Sections, TurnWaiting, UserRef
from core.dispatcher import Dispatcher, IncomingMessage
from core.runtime.pool import ClientPool, ClientSpec, WarmClient
from core.runtime.processes import ProcessSlots
from tests.fakes.anthropic_api import FakeAnthropicAPI, Text
from tests.fakes.recording_sink import RecordingSink
from tests.helpers import claude_children, eventually


async def test_a_burst_of_new_conversations_stays_within_the_pool_size(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    fake_api.responder = lambda req: [Text("answer to " + req.last_user_text(), chunks=4, delay=0.15)]
    sections = make_sections(agent={"pool_size": 2, "max_spawns": 2})
    async with Agent(sections) as agent:
        pool = agent.runtime.pool
        peak = 0  # processes alive that are not being closed
        over: list[tuple[int, int]] = []
        sampling = True

        async def sample() -> None:
            nonlocal peak
            while sampling:
                alive = len(claude_children())  # read at once: the pool does not change meanwhile
                peak = max(peak, alive - pool.closing)
                if alive > 2 + pool.closing or len(pool) > 2 or agent.runtime.slots.alive > 2:
                    over.append((alive, pool.closing))
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
        assert 1 <= peak <= 2, peak
        assert over == []  # never above the pool size + the ones being closed
        assert waits  # the ones that waited were told why
        assert agent.runtime.slots.alive <= 2
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


async def test_a_turn_waits_while_the_pool_is_full_of_busy_clients_and_a_closing_one_holds_up_no_start() -> None:
    closes = asyncio.Event()

    class Process:
        async def disconnect(self) -> None:
            await closes.wait()  # a slow shutdown

    async def connect(warm: WarmClient) -> None:
        warm.client = Process()  # type: ignore[assignment]

    slots = ProcessSlots(limit=2, spawns=2)
    pool = ClientPool(size=2, idle_timeout=600, slots=slots)
    spec = ClientSpec("s", "/tmp", None)
    a = await pool.lease(ConversationKey("chat", "a"), spec, connect, owner="ann")
    b = await pool.lease(ConversationKey("chat", "b"), spec, connect, owner="bob")
    waiting = asyncio.Event()
    third = asyncio.create_task(pool.lease(ConversationKey("chat", "c"), spec, connect, owner="cy", waiting=waiting))
    await asyncio.wait_for(waiting.wait(), 5)
    assert not third.done() and len(pool) == 2 and slots.alive == 2  # both busy: nobody is closed, c waits
    pool.release(a)  # a is idle now: closed for c, and c starts while a is still shutting down
    c = await asyncio.wait_for(third, 5)
    assert pool.keys() == [ConversationKey("chat", "b"), ConversationKey("chat", "c")] and c.busy
    assert (len(pool), pool.closing, slots.alive, pool.evictions) == (2, 1, 2, 1)  # alive = size + closing
    closes.set()
    await eventually(lambda: pool.closing == 0, what="a's process gone")
    assert (slots.alive, pool.closed) == (2, 1)
    pool.release(b)
    told = asyncio.Event()  # b is idle: a new conversation closes it and starts at once, nobody is told to wait
    d = await asyncio.wait_for(pool.lease(ConversationKey("chat", "d"), spec, connect, owner="dee", waiting=told), 5)
    assert not told.is_set() and pool.keys() == [ConversationKey("chat", "c"), ConversationKey("chat", "d")]
    assert (slots.alive, pool.evictions) == (2, 2)
    pool.release(c)
    pool.release(d)
    await pool.close()
    assert slots.alive == 0


async def test_a_prewarm_under_way_leaves_a_start_free_for_an_arriving_message() -> None:
    started: list[str] = []
    release_old = asyncio.Event()

    class Process:
        async def disconnect(self) -> None:
            return None

    async def connect(warm: WarmClient) -> None:
        started.append(warm.key.owner)
        if warm.key.owner == "old":
            await release_old.wait()  # a pre-warm start that takes its time
        warm.client = Process()  # type: ignore[assignment]

    spec = ClientSpec("s", "/tmp", None)
    slots = ProcessSlots(limit=8, spawns=2)
    pool = ClientPool(size=8, idle_timeout=600, slots=slots)
    old = asyncio.create_task(pool.prewarm(ConversationKey("chat", "old"), spec, connect))
    await eventually(lambda: started == ["old"], what="the pre-warm start under way")
    assert await pool.prewarm(ConversationKey("chat", "older"), spec, connect) is False  # one start stays free
    newcomer = await asyncio.wait_for(pool.lease(ConversationKey("chat", "new"), spec, connect, owner="nia"), 5)
    assert started == ["old", "new"] and not old.done()  # the newcomer's start did not wait for the pre-warm's
    release_old.set()
    assert await old is True
    pool.release(newcomer)

    one_lane = ClientPool(size=8, idle_timeout=600, slots=ProcessSlots(limit=8, spawns=1))
    assert await one_lane.prewarm(ConversationKey("chat", "old"), spec, connect) is False  # the only lane is for turns
    await pool.close()
    await one_lane.close()


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


async def alice_in_two_rooms(dispatcher: Dispatcher, fake_api: FakeAnthropicAPI) -> tuple[RecordingSink, RecordingSink]:
    """Alice's "slow one" in one room, and once it reached the model, "second thing" in another."""
    first, second = RecordingSink(), RecordingSink()
    dispatcher.submit(IncomingMessage(ConversationKey("chat", "room1"), UserRef("alice"), "slow one", first))
    await eventually(lambda: fake_api.requests, what="the first turn")
    dispatcher.submit(IncomingMessage(ConversationKey("chat", "room2"), UserRef("alice"), "second thing", second))
    return first, second


async def test_a_user_over_their_running_turns_waits_and_is_told(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    fake_api.rules["slow one"] = [Text("slow answer", chunks=6, delay=0.3)]
    async with Agent(make_sections(access={"allow_all": True, "max_running_per_user": 1})) as agent:
        dispatcher = Dispatcher(agent, name="chat")
        _, second = await alice_in_two_rooms(dispatcher, fake_api)
        await eventually(lambda: any("request(s) running" in t for t in second.visible()), what="the notice")
        assert not any("second thing" in r.last_user_text() for r in fake_api.requests)  # it waits
        await dispatcher.drain(30)
        assert any("echo: [alice] second thing" in t or "echo: second thing" in t for t in second.visible())


async def test_a_reload_raises_a_users_running_turns_for_the_next_turns(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    fake_api.rules["slow one"] = [Text("slow answer", chunks=20, delay=0.4)]
    async with Agent(make_sections(access={"allow_all": True, "max_running_per_user": 1})) as agent:
        dispatcher = Dispatcher(agent, name="chat")
        assert agent.reload(make_sections(access={"allow_all": True, "max_running_per_user": 2})) == []
        first, second = await alice_in_two_rooms(dispatcher, fake_api)
        await eventually(
            lambda: any("second thing" in r.last_user_text() for r in fake_api.requests),
            what="the second turn running beside the first",
        )
        assert not any(first.final.values())  # the first was still running: the new cap of 2 held both
        assert not any("request(s) running" in t for t in second.visible())
        await dispatcher.drain(30)


def _nice_of(agent: Agent, key: ConversationKey) -> int:
    """The CPU niceness of the Claude Code process of ``key`` (its pid from the launcher's pidfile)."""
    warm = agent.runtime.pool.get(key)
    assert warm is not None and warm.spawn_id is not None
    pidfile = agent.runtime.launcher.pid_dir / f"{warm.spawn_id}.pid"
    pid = int(pidfile.read_text().split()[0])
    return os.getpriority(os.PRIO_PROCESS, pid)


async def test_a_users_parallel_turn_starts_its_process_at_a_lower_cpu_priority(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    fake_api.rules["slow one"] = [Text("slow answer", chunks=20, delay=0.3)]
    async with Agent(make_sections(access={"allow_all": True}, agent={"busy_user_nice": 7})) as agent:
        dispatcher = Dispatcher(agent, name="chat")
        own = os.getpriority(os.PRIO_PROCESS, 0)
        await alice_in_two_rooms(dispatcher, fake_api)
        await eventually(
            lambda: any("second thing" in r.last_user_text() for r in fake_api.requests), what="alice's second turn"
        )
        bob = RecordingSink()
        dispatcher.submit(IncomingMessage(ConversationKey("chat", "room3"), UserRef("bob"), "hello", bob))
        await dispatcher.drain(30)
        assert _nice_of(agent, ConversationKey("chat", "room1")) == own  # alice's first turn: as the bot
        assert _nice_of(agent, ConversationKey("chat", "room2")) == min(19, own + 7)  # beside her first one
        assert _nice_of(agent, ConversationKey("chat", "room3")) == own  # bob had nothing else going
        assert any("hello" in t for t in bob.visible())


async def test_no_lower_priority_when_busy_user_nice_is_zero(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    fake_api.rules["slow one"] = [Text("slow answer", chunks=20, delay=0.3)]
    async with Agent(make_sections(access={"allow_all": True}, agent={"busy_user_nice": 0})) as agent:
        dispatcher = Dispatcher(agent, name="chat")
        await alice_in_two_rooms(dispatcher, fake_api)
        await dispatcher.drain(30)
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert _nice_of(agent, ConversationKey("chat", "room2")) == own
