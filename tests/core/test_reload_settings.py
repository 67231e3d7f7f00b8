"""A reload changes the reply and agent settings of the next turns, not only the access."""

from __future__ import annotations

from collections.abc import Callable

from core import Agent, ConversationKey, Sections, UserRef
from core.dispatcher import Dispatcher, IncomingMessage
from tests.fakes.anthropic_api import FakeAnthropicAPI, Text, ToolCall
from tests.fakes.recording_sink import RecordingSink

KEY = ConversationKey("chat", "alice")


def message(text: str) -> IncomingMessage:
    return IncomingMessage(KEY, UserRef("alice", "Alice"), text, RecordingSink())


async def test_a_reload_changes_the_model_and_the_reply_settings_of_the_next_turn(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    before = {"agent": {"model": "claude-before"}, "reply": {"verbosity": "normal", "show_cost": False}}
    after = {"agent": {"model": "claude-after"}, "reply": {"verbosity": "quiet", "show_cost": True}}
    async with Agent(make_sections(**before)) as agent:
        d = Dispatcher(agent)
        fake_api.enqueue(ToolCall("Read", {"file_path": "notes.md"}), Text("read it"))
        first = message("read my notes")
        await d.handle(first)
        assert {r.body["model"] for r in fake_api.requests} == {"claude-before"}
        shown = "\n".join(first.reply.visible())  # type: ignore[attr-defined]
        assert "🔧 Read" in shown and "$" not in shown  # normal verbosity shows the tool; no cost

        assert agent.reload(make_sections(**after)) == []  # nothing here needs a restart
        seen = len(fake_api.requests)
        fake_api.enqueue(ToolCall("Read", {"file_path": "notes.md"}), Text("read it again"))
        second = message("read them again")
        await d.handle(second)
        assert {r.body["model"] for r in fake_api.requests[seen:]} == {"claude-after"}  # the warm process was replaced
        shown = "\n".join(second.reply.visible())  # type: ignore[attr-defined]
        assert "read it again" in shown
        assert "🔧 Read" not in shown  # quiet now
        assert "$" in shown  # and the turn's cost is shown
