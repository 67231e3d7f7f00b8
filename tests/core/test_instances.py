"""Two instances (two Agents) on one SQLite store: a restart of one never touches the other's turns.

With ``coordination.instance_id`` set by hand, and without: agents built from identical sections (in
one process or two) claim distinct ids, and a restart after a crash gets the crashed one's id back."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import uuid
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path

import pytest

from core import Agent, ConversationKey, Sections, TextDelta, TurnResult
from core.coordination import claim_instance_id, default_instance_id
from tests.fakes.anthropic_api import FakeAnthropicAPI, Hang, Text
from tests.helpers import REPO, eventually


@pytest.fixture(autouse=True)
def default_id_of_this_test(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A default instance id no other test's agent shares (it hashes the home): an agent an earlier test
    left for the garbage collector cannot hold, or free, an id these tests count on. Processes the test
    starts inherit it."""
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "home-of-this-test"))
    return default_instance_id()


async def test_a_restart_of_one_instance_leaves_the_others_running_turn_untouched(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    def instance(name: str) -> Agent:
        return Agent(make_sections(coordination={"instance_id": name}))

    fake_api.rules["slow"] = [Text("slowly, slowly", chunks=8, delay=0.4)]
    key = ConversationKey("api", "alice")
    async with instance("a") as a:
        events: list[object] = []

        async def run() -> None:
            async with aclosing(a.stream("slow", user_id="alice")) as stream:
                async for event in stream:
                    events.append(event)

        turn = asyncio.create_task(run())
        await eventually(lambda: any(isinstance(e, TextDelta) for e in events), what="a's turn streaming")
        conv = await a.conversations.get(key)
        assert conv is not None and (conv.status, conv.instance_id) == ("running", "a")
        [running] = await a.conversations.history(key)
        assert running.status == "running" and running.user_text == "slow"

        b = instance("b")  # another instance starts (or restarts) on the same store
        await b.start()
        try:
            conv = await b.conversations.get(key)
            assert conv is not None and conv.status == "running"  # not marked interrupted by b
            assert (await b.conversations.history(key))[-1].status == "running"
        finally:
            await b.close()

        await turn
        assert isinstance(events[-1], TurnResult) and events[-1].text == "slowly, slowly"
        conv = await a.conversations.get(key)
        assert conv is not None and conv.status == "idle"
        [done] = await a.conversations.history(key)
        assert (done.status, done.reply_text) == ("ok", "slowly, slowly")


async def test_a_restart_marks_its_own_cut_off_turn_interrupted(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    key = ConversationKey("api", "alice")
    async with Agent(make_sections(coordination={"instance_id": "a"})) as a:
        conv = await a.conversations.open(key)
        conv.status, conv.instance_id = "running", "a"  # as a killed instance leaves it
        await a.store.put(conv)
    async with Agent(make_sections(coordination={"instance_id": "a"})) as again:
        assert (await again.conversations.get(key)).status == "interrupted"  # type: ignore[union-attr]


# -- the default instance id: no coordination.instance_id set -------------------------------------

CLAIMANT = """
import asyncio, sys
from core import Agent, ConversationKey, Sections

async def main():
    agent = await Agent(Sections.model_validate_json(sys.argv[1])).start()
    conv = await agent.conversations.open(ConversationKey("api", "bob"))
    conv.status, conv.instance_id = "running", agent.instance_id  # mid-turn when it is killed
    await agent.store.put(conv)
    print(agent.instance_id, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_live_agents_claim_distinct_ids_and_free_them(tmp_path: Path) -> None:
    base, locks = f"test-{uuid.uuid4().hex[:8]}", tmp_path / "locks"
    one, two = claim_instance_id(base, locks), claim_instance_id(base, locks)
    assert (one.instance_id, two.instance_id) == (base, f"{base}-2")
    unlocked = claim_instance_id(base, None)
    assert unlocked.instance_id == f"{base}-3"  # without a lock dir, this process's registry still knows
    unlocked.release()
    one.release()
    one.release()  # idempotent
    again = claim_instance_id(base, locks)
    assert again.instance_id == base  # the lowest free id: a restart gets its old one back
    assert not one.reclaim()  # taken meanwhile
    again.release()
    assert one.reclaim() and one.held
    assert [c.instance_id for c in two.dead_siblings()] == []  # base is held (and the -3 has no lock file)
    one.release()
    [dead] = two.dead_siblings()  # base ran here and its holder is gone: claimable, to mark its turns
    assert dead.instance_id == base and claim_instance_id(base, locks).instance_id == f"{base}-3"
    dead.release()


async def test_two_agents_from_the_same_sections_get_their_own_ids(make_sections: Callable[..., Sections]) -> None:
    base = default_instance_id()
    sections = make_sections()  # no coordination.instance_id
    async with Agent(sections) as a, Agent(sections) as b:
        assert a.instance_id != b.instance_id
        assert a.instance_id.startswith(base) and b.instance_id.startswith(f"{base}-")
        first = a.instance_id
    # a's id was given back when a closed. (A process another thread of this test process forks holds a
    # copy of the lock files' descriptors until it execs: such a copy can hold an id a moment longer.)
    taken: list[str] = []
    dropped: Agent | None = None
    for _ in range(50):
        dropped = Agent(sections)  # never started nor closed: its id is freed when it is collected
        taken.append(dropped.instance_id)
        if dropped.instance_id == first:
            break
        dropped = None
        gc.collect()
        await asyncio.sleep(0.1)
    assert taken[-1] == first, taken
    dropped = None
    gc.collect()
    async with Agent(sections) as again:
        assert again.instance_id == first
    explicit = Agent(make_sections(coordination={"instance_id": first}))
    async with explicit, Agent(sections) as claimed:  # an explicit id is used as given, and claims nothing
        assert (explicit.instance_id, claimed.instance_id) == (first, first)


async def test_restarting_one_of_two_agents_with_the_same_sections_leaves_the_others_turn_untouched(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    sections = make_sections()  # both "instances" from identical sections: no instance_id set anywhere
    fake_api.rules["slow"] = [Hang("slowly, ", seconds=10)]
    key = ConversationKey("api", "alice")
    async with Agent(sections) as a:
        b = await Agent(sections).start()
        assert a.instance_id != b.instance_id
        events, turn = stream(a, "slow")
        await eventually(lambda: any(isinstance(e, TextDelta) for e in events), what="a's turn streaming")

        await b.close()  # b restarts: a new Agent from the same sections, on the same SQLite file
        b = await Agent(sections).start()
        try:
            assert b.instance_id != a.instance_id
            conv = await b.conversations.get(key)
            assert conv is not None and (conv.status, conv.instance_id) == ("running", a.instance_id)
            [running] = await b.conversations.history(key)
            assert (running.status, running.instance_id) == ("running", a.instance_id)
            assert (await b.chat("hello", user_id="bob")).text == "echo: hello"  # b serves meanwhile
        finally:
            await b.close()

        await asyncio.wait_for(turn, 30)
        assert isinstance(events[-1], TurnResult) and events[-1].text == "slowly, " and not events[-1].interrupted
        conv = await a.conversations.get(key)
        assert conv is not None and conv.status == "idle"
        [done] = await a.conversations.history(key)
        assert (done.status, done.reply_text) == ("ok", "slowly, ")


async def test_a_crashed_agent_restarted_from_the_same_sections_marks_its_own_cut_off_turn(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    sections = make_sections()
    key, other = ConversationKey("api", "alice"), ConversationKey("api", "bob")
    async with Agent(sections) as live:  # another instance, live throughout, with a running conversation
        conv = await live.conversations.open(other)
        conv.status, conv.instance_id = "running", live.instance_id
        await live.store.put(conv)
        async with Agent(sections) as crashed:
            await crashed.chat("before the crash", user_id="alice")
            conv = await crashed.conversations.get(key)
            assert conv is not None and conv.instance_id == crashed.instance_id
            conv.status = "running"  # as the process left it when it died mid-turn
            await crashed.store.put(conv)
        async with Agent(sections) as restarted:
            assert restarted.instance_id == crashed.instance_id  # its old id back
            assert (await restarted.conversations.get(key)).status == "interrupted"  # type: ignore[union-attr]
            assert (await restarted.conversations.get(other)).status == "running"  # type: ignore[union-attr]


async def test_a_killed_process_with_the_same_sections_is_told_apart_and_its_restart_marks_its_turns(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    """Two processes from one directory and home (the same default id): the second runs as ``<id>-2``,
    leaves the first's running conversations alone, and once SIGKILLed, the next start takes ``<id>-2``
    back and marks what the kill cut off, while the first's turn runs on."""
    sections = make_sections()
    alice, bob, carol = (ConversationKey("api", user) for user in ("alice", "bob", "carol"))
    async with Agent(sections) as a:
        assert a.instance_id == default_instance_id()
        conv = await a.conversations.open(carol)
        conv.status, conv.instance_id = "running", a.instance_id  # a live turn of a's
        await a.store.put(conv)

        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLAIMANT,
            sections.model_dump_json(),
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 120)  # started, with bob's turn running
            assert line.decode().strip() == f"{a.instance_id}-2"  # a holds the default id: told apart
            assert (await a.conversations.get(carol)).status == "running"  # type: ignore[union-attr]

            fake_api.rules["slow"] = [Hang("slowly, ", seconds=5)]
            events, turn = stream(a, "slow")
            await eventually(lambda: any(isinstance(e, TextDelta) for e in events), what="a's turn streaming")
        finally:
            proc.kill()
            await proc.wait()

        async with Agent(sections) as restarted:  # the killed process's id is free again
            assert restarted.instance_id == f"{a.instance_id}-2"
            assert (await restarted.conversations.get(bob)).status == "interrupted"  # type: ignore[union-attr]
            for running in (alice, carol):
                conv = await restarted.conversations.get(running)
                assert conv is not None and (conv.status, conv.instance_id) == ("running", a.instance_id)

        await asyncio.wait_for(turn, 30)
        assert isinstance(events[-1], TurnResult) and not events[-1].interrupted
        [done] = await a.conversations.history(alice)
        assert done.status == "ok"


def stream(agent: Agent, text: str) -> tuple[list[object], asyncio.Task[None]]:
    """A streamed turn in the background, and the events it has yielded so far."""
    events: list[object] = []

    async def run() -> None:
        async with aclosing(agent.stream(text, user_id="alice")) as turn:
            async for event in turn:
                events.append(event)

    return events, asyncio.create_task(run())
