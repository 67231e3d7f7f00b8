"""People type in bursts: busy_policy merge and the debounce window answer a burst in one turn."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core import Agent, ConversationKey, IncomingFile, Sections, UserRef
from core.dispatcher import Dispatcher, IncomingMessage
from tests.fakes.anthropic_api import FakeAnthropicAPI, Text
from tests.fakes.recording_sink import RecordingSink
from tests.helpers import eventually

ROOM = ConversationKey("chat", "room")  # a shared conversation: speakers are named
DM = ConversationKey("chat", "alice")


def file(name: str, data: bytes) -> IncomingFile:
    async def fetch(limit: int) -> bytes:
        return data

    return IncomingFile(name, "text/plain", len(data), fetch)


def message(text: str, key: ConversationKey = DM, user: str = "alice", **kw: Any) -> IncomingMessage:
    return IncomingMessage(key, UserRef(user, user.title()), text, RecordingSink(), **kw)


def prompts(fake_api: FakeAnthropicAPI) -> list[str]:
    return [r.last_user_text() for r in fake_api.requests if not r.tool_results()]


async def test_messages_during_a_turn_are_answered_together_in_one_next_turn(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    fake_api.rules["first"] = [Text("the first answer", chunks=6, delay=0.3)]
    async with Agent(make_sections(access={"allow_all": True, "busy_policy": "merge"})) as agent:
        d = Dispatcher(agent)
        first = message("first", ROOM)
        d.submit(first)
        await eventually(lambda: prompts(fake_api), what="the first turn")
        burst = [
            message(t, ROOM, user=u) for t, u in (("hi", "alice"), ("the build fails", "bob"), ("see the log", "alice"))
        ]
        for m in burst:
            d.submit(m)
        await d.drain(60)
        assert len(prompts(fake_api)) == 2  # one turn for the three, not three
        merged = prompts(fake_api)[1]
        assert merged == "[Alice] hi\n\n[Bob] the build fails\n\n[Alice] see the log"
        told = [t for m in burst for t in m.reply.visible() if "together" in t]  # type: ignore[attr-defined]
        assert len(told) == 1  # told once
        history = await agent.conversations.history(ROOM, 10)
        assert [t.status for t in history if t.status != "merged"] == ["ok", "ok"]


async def test_a_debounce_window_answers_a_burst_in_one_turn_with_its_file(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with Agent(make_sections(access={"allow_all": True, "debounce": 1.0})) as agent:
        d = Dispatcher(agent)
        first = message("hi")
        d.submit(first)
        await eventually(
            lambda: any(op.name == "typing" for op in first.reply.ops),  # type: ignore[attr-defined]
            what="the typing indicator",
        )
        assert not fake_api.requests  # still waiting for more
        d.submit(message("the build fails"))
        d.submit(message("see the log", files=[file("build.log", b"error: boom\n")]))
        await d.drain(60)
        [prompt] = prompts(fake_api)  # one turn
        assert prompt.startswith("hi\n\nthe build fails\n\nsee the log")
        assert "uploads/build.log" in prompt
        assert (agent.workspaces.root(DM) / "uploads" / "build.log").read_bytes() == b"error: boom\n"


async def test_a_command_inside_the_window_acts_at_once(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with Agent(make_sections(access={"allow_all": True, "debounce": 30.0})) as agent:
        d = Dispatcher(agent)
        d.submit(message("hello"))
        status = message("/status")
        d.submit(status)
        await eventually(lambda: status.reply.visible(), timeout=10, what="the /status answer")  # type: ignore[attr-defined]
        assert "session" in status.reply.visible()[0].lower()  # type: ignore[attr-defined]
        assert not fake_api.requests  # the window is still open: the command did not wait for it
        await agent.conversations.shutdown(grace=1)


async def test_messages_waiting_when_the_bot_restarts_are_answered_after_it(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    sections = make_sections(access={"allow_all": True, "debounce": 30.0})
    async with Agent(sections) as agent:
        d = Dispatcher(agent)
        d.submit(message("please remember this"))
        await eventually(lambda: agent.conversations.queued(DM), what="the message parked")
    # the bot stopped (or crashed) inside the window: the message is kept, queued
    async with Agent(make_sections(access={"allow_all": True})) as agent:
        later = message("and now?")
        await Dispatcher(agent).handle(later)
        assert prompts(fake_api) == ["please remember this\n\nand now?"]
        shown = later.reply.visible()[-1]  # type: ignore[attr-defined]
        assert "waited through a restart" in shown
