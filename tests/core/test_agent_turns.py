"""Turns on the real Claude Code CLI against the scripted fake Messages API."""

from __future__ import annotations

from core import Agent, TextDelta, TurnResult
from tests.fakes.anthropic_api import FakeAnthropicAPI, Text


async def test_multi_turn_memory_the_model_sees_earlier_turns(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    first = await agent.chat("my name is Ada", user_id="u1")
    assert first.text == "echo: my name is Ada"
    assert not first.is_error
    second = await agent.chat("what is my name?", user_id="u1")
    assert second.text == "echo: what is my name?"
    assert second.session_id == first.session_id
    last = fake_api.requests[-1]
    assert "my name is Ada" in last.user_texts()
    assert "echo: my name is Ada" in str(last.messages)


async def test_stream_yields_text_deltas_then_result(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    fake_api.enqueue(Text("one two three four", chunks=4))
    events = [e async for e in agent.stream("count", user_id="u2")]
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 4 and "".join(deltas) == "one two three four"
    result = events[-1]
    assert isinstance(result, TurnResult)
    assert result.text == "one two three four"
    assert result.cost_usd is not None and result.duration_ms is not None and result.usage
