"""Two instances (two Agents) on one SQLite store: a restart of one never touches the other's turns."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import aclosing

from core import Agent, ConversationKey, Sections, TextDelta, TurnResult
from tests.fakes.anthropic_api import FakeAnthropicAPI, Text
from tests.helpers import eventually


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
