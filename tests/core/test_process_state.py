"""What a conversation leaves in the process once it is idle: caches stay bounded, a tool check keeps nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import core.conversations
from core import Agent, ConversationKey, Sections
from tests.fakes.anthropic_api import FakeAnthropicAPI, ToolCall


async def test_the_cache_of_conversations_with_nothing_queued_keeps_only_the_most_recent(
    make_sections: Callable[..., Sections], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.conversations, "_NONE_QUEUED_KEPT", 3)
    async with Agent(make_sections()) as agent:
        conversations, reads = agent.conversations, []
        turns = agent.store.turns

        async def counted(key: ConversationKey, limit: int) -> Any:
            reads.append(key.owner)
            return await turns(key, limit)

        agent.store.turns = counted  # type: ignore[method-assign]
        for n in range(5):
            assert await conversations.queued(ConversationKey("chat", f"u{n}")) == []
        assert len(conversations._none_queued) == 3  # not one entry per conversation ever looked at
        reads.clear()
        for n in (4, 3, 2, 0):
            await conversations.queued(ConversationKey("chat", f"u{n}"))
        assert reads == ["u0"]  # the three most recent were remembered; the oldest is read again


async def test_a_tool_check_keeps_no_per_session_state_unless_something_is_granted_for_the_session(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    fake_api.rules["look"] = [ToolCall("Read", {"file_path": "notes.md"})]
    async with Agent(make_sections()) as agent:
        root = agent.workspaces.root(ConversationKey("api", "alice"))
        root.mkdir(parents=True)
        (root / "notes.md").write_text("remember the milk\n")
        result = await agent.chat("look", user_id="alice")
        assert [(c.name, c.is_error) for c in result.tool_calls] == [("Read", False)]  # checked, allowed, ran
        assert agent.runtime.permissions._session_allowed == {}
