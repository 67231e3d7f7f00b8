"""People type in bursts: busy_policy merge and the debounce window answer a burst in one turn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from core import Agent, ConversationKey, IncomingFile, Sections, SinkLimits, UserRef
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


PIXEL = bytes.fromhex(  # a 1x1 PNG
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360000002"
    "0000050001e2b1f7b20000000049454e44ae426082"
)


@dataclass(eq=False)
class AddressedSink(RecordingSink):
    """A recording sink with an address (as the platforms' sinks have), so a restart can rebuild it."""

    where: str = "chat-1"

    def address(self) -> dict[str, Any] | None:
        return {"where": self.where}


class RebuildingAdapter:
    """What the dispatcher needs of an adapter after a restart: sinks rebuilt from their addresses."""

    def __init__(self) -> None:
        self.rebuilt: list[AddressedSink] = []

    def sink_at(self, address: Mapping[str, Any]) -> AddressedSink:
        sink = AddressedSink(where=str(address["where"]))
        self.rebuilt.append(sink)
        return sink


def message(text: str, key: ConversationKey = DM, user: str = "alice", **kw: Any) -> IncomingMessage:
    return IncomingMessage(key, UserRef(user, user.title()), text, AddressedSink(), **kw)


def prompts(fake_api: FakeAnthropicAPI) -> list[str]:
    return [r.last_user_text() for r in fake_api.requests if not r.tool_results()]


@pytest.mark.parametrize("debounce", [0.0, 0.5])  # a debounce window gathers one person; a running reply everyone
async def test_messages_during_a_turn_are_answered_together_in_one_next_turn(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, debounce: float
) -> None:
    fake_api.rules["first"] = [Text("the first answer", chunks=6, delay=0.3)]
    sections = make_sections(access={"allow_all": True, "busy_policy": "merge", "debounce": debounce})
    async with Agent(sections) as agent:
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


async def test_the_typing_indicator_is_renewed_while_a_message_waits_out_its_window(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with Agent(make_sections(access={"allow_all": True, "debounce": 30.0})) as agent:
        d = Dispatcher(agent)
        first = message("hi")
        sink = first.reply
        sink.limits = SinkLimits(max_len=200, min_edit_interval=1.0, typing_interval=0.1)  # type: ignore[misc]
        d.submit(first)
        await eventually(
            lambda: sum(op.name == "typing" for op in sink.ops) >= 3,  # type: ignore[attr-defined]
            what="the typing indicator shown again and again",
        )
        assert not fake_api.requests  # still inside the window
        stop = message("/stop")
        d.submit(stop)
        await d.drain(30)
        shown = sum(op.name == "typing" for op in sink.ops)  # type: ignore[attr-defined]
        await asyncio.sleep(0.3)
        assert sum(op.name == "typing" for op in sink.ops) == shown  # type: ignore[attr-defined]  # not after it
        assert not fake_api.requests


@asynccontextmanager
async def busy_with_a_first_turn(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, policy: str, seconds: float
) -> AsyncIterator[tuple[Agent, Dispatcher]]:
    """A dispatcher with a 0.3 s debounce window whose first turn ("first") answers for ``seconds``."""
    fake_api.rules["first"] = [Text("the first answer", chunks=int(seconds / 0.4), delay=0.4)]
    sections = make_sections(access={"allow_all": True, "busy_policy": policy, "debounce": 0.3})
    async with Agent(sections) as agent:
        d = Dispatcher(agent)
        d.submit(message("first"))
        await eventually(lambda: prompts(fake_api), what="the first turn")
        yield agent, d


async def test_with_busy_policy_queue_a_debounced_burst_is_queued_and_the_next_one_is_its_own_turn(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with busy_with_a_first_turn(make_sections, fake_api, "queue", seconds=4) as (_, d):
        one, two = message("one"), message("two")
        d.submit(one)
        await eventually(lambda: any("Queued" in t for t in one.reply.visible()), what="the burst told it is queued")  # type: ignore[attr-defined]
        d.submit(two)  # after the window: a message of its own, queued behind the burst
        await eventually(lambda: any("Queued" in t for t in two.reply.visible()), what="the next one queued too")  # type: ignore[attr-defined]
        await d.drain(60)
        assert prompts(fake_api) == ["first", "one", "two"]


async def test_with_busy_policy_interrupt_a_debounced_burst_stops_the_running_reply(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with busy_with_a_first_turn(make_sections, fake_api, "interrupt", seconds=8) as (agent, d):
        d.submit(message("one"))
        d.submit(message("more"))
        await d.drain(60)
        assert prompts(fake_api) == ["first", "one\n\nmore"]
        history = await agent.conversations.history(DM, 10)
        statuses = {t.user_text: t.status for t in history if t.status != "merged"}  # the turns, not what they answered
        assert statuses == {"first": "interrupted", "one\n\nmore": "ok"}  # the first reply was stopped for the burst


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


async def test_a_stop_inside_the_window_acts_at_once_and_nothing_runs(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with Agent(make_sections(access={"allow_all": True, "debounce": 30.0})) as agent:
        d = Dispatcher(agent)
        d.submit(message("hello"))
        d.submit(message("are you there?"))
        await eventually(lambda: len(d._batches) == 1, what="the burst waiting in its window")
        await eventually(lambda: agent.conversations.queued(DM), what="the messages parked")
        stop = message("/stop")
        await asyncio.wait_for(d.handle(stop), 10)  # at once, not after the 30 s window
        assert stop.reply.visible() == ["⏹ Stopped: the 2 message(s) waiting here will not be answered."]  # type: ignore[attr-defined]
        await asyncio.wait_for(d.drain(), 10)  # the burst's turn ends without running
        assert not fake_api.requests
        assert [t.status for t in await agent.conversations.history(DM, 10)] == ["interrupted", "interrupted"]
        assert not await agent.conversations.queued(DM)


async def test_a_file_sent_between_texts_reaches_the_merged_turn_in_its_place(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    fake_api.rules["first"] = [Text("the first answer", chunks=6, delay=0.3)]
    async with Agent(make_sections(access={"allow_all": True, "busy_policy": "merge"})) as agent:
        d = Dispatcher(agent)
        d.submit(message("first"))
        await eventually(lambda: prompts(fake_api), what="the first turn")
        d.submit(message("the build fails"))
        d.submit(message("", files=[file("build.log", b"error: boom\n")]))
        d.submit(message("what now?"))
        await d.drain(60)
        [merged] = prompts(fake_api)[1:]
        assert merged.startswith("the build fails\n\n[attached: uploads/build.log]\n\nwhat now?")
        assert merged.endswith("[The user attached files, saved in the workspace: uploads/build.log]")
        assert (agent.workspaces.root(DM) / "uploads" / "build.log").read_bytes() == b"error: boom\n"


async def test_a_message_still_being_saved_as_its_batch_starts_is_answered_by_that_turn(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    fake_api.rules["first"] = [Text("the first answer", chunks=4, delay=0.3)]
    async with Agent(make_sections(access={"allow_all": True, "busy_policy": "merge"})) as agent:
        d = Dispatcher(agent)
        store = agent.conversations.store
        put_turn = store.put_turn

        async def slow_put_turn(record: Any) -> None:  # the save of "late" lands after the batch's turn began
            if record.user_text == "late" and record.status == "queued":
                await eventually(lambda: not d._batches, what="the batch's turn holding the conversation")
                await asyncio.sleep(0.5)  # time enough to gather the batch without it
            await put_turn(record)

        store.put_turn = slow_put_turn  # type: ignore[method-assign]
        first = message("first")
        d.submit(first)
        await eventually(lambda: prompts(fake_api), what="the first turn")
        d.submit(message("early"))
        await eventually(lambda: agent.conversations.queued(DM), what="the first message of the batch parked")
        d.submit(message("late"))
        await d.drain(60)
        assert prompts(fake_api)[1:] == ["early\n\nlate"]  # the batch's turn waited for the save
        assert not await agent.conversations.queued(DM)  # nothing is left waiting for a restart


async def test_messages_waiting_when_the_bot_restarts_are_answered_after_it(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    sections = make_sections(access={"allow_all": True, "debounce": 30.0})
    async with Agent(sections) as agent:
        d = Dispatcher(agent, name="chat")
        d.submit(message("please remember this"))
        d.submit(message("and this picture", files=[IncomingFile("pixel.png", "image/png", len(PIXEL), _bytes(PIXEL))]))
        await eventually(lambda: len(d._batches) == 1 and d._batches[DM, "alice"].count == 2, what="both parked")
    # the bot stopped (or crashed) inside the window: the messages are kept, and answered once it runs again
    async with Agent(make_sections(access={"allow_all": True})) as agent:
        d = Dispatcher(agent, name="chat")
        adapter = RebuildingAdapter()
        d.adapter = adapter  # type: ignore[assignment]
        d.answer_left_waiting()
        await eventually(lambda: prompts(fake_api), what="the waiting messages answered")
        await d.drain(60)
        [request] = [r for r in fake_api.requests if not r.tool_results()]  # one turn
        assert any(
            t.startswith("please remember this\n\nand this picture\n\n[attached: uploads/pixel.png]")
            for t in request.user_texts()
        )
        assert fake_api.requests[0].images()[0]["source"]["media_type"] == "image/png"  # the file, not only its name
        [sink] = adapter.rebuilt
        assert sink.where == "chat-1"
        assert "waited through a restart" in "".join(sink.visible())
        assert [t.status for t in await agent.conversations.history(DM, 10)] == ["merged", "merged", "ok"]
        d.answer_left_waiting()  # nothing is left waiting: a second look answers nothing again
        await d.drain(10)
        assert len([r for r in fake_api.requests if not r.tool_results()]) == 1


async def test_messages_left_waiting_where_no_reply_can_be_rebuilt_are_answered_with_the_next_one(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    sections = make_sections(access={"allow_all": True, "debounce": 30.0})
    async with Agent(sections) as agent:
        d = Dispatcher(agent)
        d.submit(IncomingMessage(DM, UserRef("alice", "Alice"), "please remember this", RecordingSink()))
        await eventually(lambda: agent.conversations.queued(DM), what="the message parked")
    async with Agent(make_sections(access={"allow_all": True})) as agent:
        d = Dispatcher(agent)
        d.answer_left_waiting()  # a sink without an address: nothing can be posted yet
        await d.drain(10)
        assert not fake_api.requests
        later = message("and now?")
        await d.handle(later)
        assert prompts(fake_api) == ["please remember this\n\nand now?"]
        assert "waited through a restart" in later.reply.visible()[-1]  # type: ignore[attr-defined]


async def test_messages_an_instance_left_waiting_are_answered_by_the_next_message_on_another(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    waiting = {"allow_all": True, "debounce": 30.0}
    async with Agent(make_sections(access=waiting, coordination={"instance_id": "a"})) as agent:
        d = Dispatcher(agent)
        d.submit(message("please remember this", files=[file("notes.txt", b"remember me\n")]))
        await eventually(lambda: agent.conversations.queued(DM), what="the message parked")
    # instance a never comes back; b answers it with the next message there
    async with Agent(make_sections(access={"allow_all": True}, coordination={"instance_id": "b"})) as agent:
        d = Dispatcher(agent)
        later = message("and now?")
        await d.handle(later)
        [prompt] = prompts(fake_api)
        assert prompt.startswith("please remember this\n\n[attached: uploads/notes.txt]\n\nand now?")
        assert "waited through a restart" in later.reply.visible()[-1]  # type: ignore[attr-defined]
        assert not await agent.conversations.queued(DM)


def _bytes(data: bytes) -> Callable[[int], Any]:
    async def fetch(limit: int) -> bytes:
        return data

    return fetch


async def test_a_conversation_with_nothing_parked_is_not_read_for_parked_messages_on_every_turn(
    agent: Agent, fake_api: FakeAnthropicAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan for parked messages reads the latest turns of the history: one instance reads it once
    per conversation, and again only after a message is parked."""
    from core.conversations import _QUEUE_SCAN

    key = ConversationKey("api", "alice")
    scans: list[ConversationKey] = []
    real = agent.store.turns

    async def counting(of: ConversationKey, limit: int = 20) -> Any:
        if limit == _QUEUE_SCAN:
            scans.append(of)
        return await real(of, limit)

    monkeypatch.setattr(agent.store, "turns", counting)
    for text in ("one", "two", "three"):
        assert not (await agent.chat(text, user_id="alice")).is_error
    assert scans == [key]
    parked = await agent.conversations.park(key, "waiting", UserRef("alice"), batch="b1")
    assert [t.turn_id for t in await agent.conversations.queued(key)] == [parked.turn_id]
    assert scans == [key, key]
