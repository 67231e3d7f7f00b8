"""The model API overloaded (529) or rate limited: the user sees it at once, can stop it, gets a clear end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from core import Agent, AgentRetrying, ConversationKey, Sections, TurnResult, UserRef
from core.dispatcher import Dispatcher, IncomingMessage
from tests.fakes.anthropic_api import Error, FakeAnthropicAPI, Text
from tests.fakes.recording_sink import RecordingSink
from tests.helpers import eventually


def overloaded(times: int) -> list[Error]:
    return [Error(529, "overloaded_error", "Overloaded", retry_after=0) for _ in range(times)]


def sections_with_retries(make_sections: Callable[..., Sections], cli_env: dict[str, str], retries: int) -> Sections:
    """``agent.max_retries`` (the tests' environment pins CLAUDE_CODE_MAX_RETRIES, which would win over it)."""
    sections = make_sections(agent={"max_retries": retries})
    env = {k: v for k, v in sections.agent.env.items() if k != "CLAUDE_CODE_MAX_RETRIES"}
    return sections.model_copy(update={"agent": sections.agent.model_copy(update={"env": env})})


async def test_retries_are_shown_in_the_chat_and_the_answer_follows(
    make_sections: Callable[..., Sections], cli_env: dict[str, str], fake_api: FakeAnthropicAPI
) -> None:
    fake_api.enqueue(*overloaded(2), [Text("finally here")])
    async with Agent(sections_with_retries(make_sections, cli_env, 3)) as agent:
        sink = RecordingSink()
        await Dispatcher(agent).handle(IncomingMessage(ConversationKey("chat", "u"), UserRef("u"), "hi", sink))
        ops = sink.text_ops()
        first_notice = next(
            i for i, op in enumerate(ops) if "Claude is overloaded, retrying (1)... (1 of 3)" in op.text
        )
        assert first_notice < len(ops) - 1  # shown while the turn was still running, not only at its end
        final = sink.visible()[-1]
        assert "Claude is overloaded, retrying (2)..." in final and final.rstrip().endswith("finally here")


async def test_after_the_configured_retries_the_error_is_clear(
    make_sections: Callable[..., Sections], cli_env: dict[str, str], fake_api: FakeAnthropicAPI
) -> None:
    fake_api.enqueue(*overloaded(3))
    async with Agent(sections_with_retries(make_sections, cli_env, 2)) as agent:
        events = [e async for e in agent.stream("hi", user_id="u")]
        retries = [e for e in events if isinstance(e, AgentRetrying)]
        assert [r.attempt for r in retries] == [1, 2] and all(r.status == 529 for r in retries)
        end = events[-1]
        assert isinstance(end, TurnResult) and end.is_error
        assert "overloaded" in (end.error or "").lower()


async def test_stop_during_retries_ends_the_turn(
    make_sections: Callable[..., Sections], cli_env: dict[str, str], fake_api: FakeAnthropicAPI
) -> None:
    fake_api.enqueue(*[Error(529, "overloaded_error", "Overloaded", retry_after=2) for _ in range(10)])
    async with Agent(sections_with_retries(make_sections, cli_env, 8)) as agent:
        events: list[object] = []

        async def run() -> None:
            async for event in agent.stream("hi", user_id="u"):
                events.append(event)

        task = asyncio.create_task(run())
        await eventually(lambda: any(isinstance(e, AgentRetrying) for e in events), what="a retry notice")
        assert await agent.stop("u")
        await asyncio.wait_for(task, 30)
        assert isinstance(events[-1], TurnResult) and events[-1].interrupted


def test_the_retry_notice_names_what_the_api_said() -> None:
    notice = AgentRetrying(attempt=2, max_retries=4, delay=1.0, status=529).describe()
    assert notice == "Claude is overloaded, retrying (2)... (2 of 4)"
    limited = AgentRetrying(attempt=1, max_retries=4, delay=1.0, status=429).describe()
    assert limited == "Claude is overloaded, retrying (1)... (rate limited; 1 of 4)"
    server = AgentRetrying(attempt=3, max_retries=None, delay=1.0, status=503).describe()
    assert server == "Claude is unavailable, retrying (3)... (API error 503)"
