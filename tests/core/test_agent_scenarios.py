"""The agent runtime end to end: the real Claude Code CLI against the scripted fake model."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path

import pytest
import yaml

from core import (
    Agent,
    ApprovalForbidden,
    ApprovalRequest,
    ApprovalRequested,
    ApprovalResolved,
    Attachment,
    ConversationKey,
    Decision,
    FileOffered,
    Sections,
    TextDelta,
    ToolResult,
    ToolUse,
    TurnError,
    TurnResult,
)
from tests.fakes.anthropic_api import Error, FakeAnthropicAPI, Hang, Text, ToolCall
from tests.helpers import claude_children, eventually


async def collect(agent: Agent, text: str, user: str = "u1", **kw: object) -> list[object]:
    return [e async for e in agent.stream(text, user_id=user, **kw)]  # type: ignore[arg-type]


def final(events: list[object]) -> TurnResult | TurnError:
    last = events[-1]
    assert isinstance(last, (TurnResult, TurnError))
    return last


async def test_resume_after_restarting_the_agent(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    sections = make_sections()
    async with Agent(sections) as first:
        before = await first.chat("remember the word pineapple", user_id="u1")
    async with Agent(sections) as second:  # a new process would do the same: state is in SQLite + transcripts
        after = await second.chat("which word?", user_id="u1")
    assert after.session_id == before.session_id
    assert "remember the word pineapple" in fake_api.requests[-1].user_texts()


async def test_write_inside_the_workspace(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    root = agent.workspaces.root(ConversationKey("api", "u1"))
    fake_api.enqueue(ToolCall("Write", {"file_path": str(root / "notes" / "hello.txt"), "content": "hi there\n"}))
    events = await collect(agent, "write a file")
    assert (root / "notes" / "hello.txt").read_text() == "hi there\n"
    assert [e.name for e in events if isinstance(e, ToolUse)] == ["Write"]
    assert not any(isinstance(e, ApprovalRequested) for e in events)
    assert "File created successfully" in final(events).text


async def test_write_outside_the_workspace_is_refused(agent: Agent, fake_api: FakeAnthropicAPI, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    fake_api.enqueue(ToolCall("Write", {"file_path": str(outside), "content": "x"}))
    events = await collect(agent, "write outside")
    assert not outside.exists()
    results = [e for e in events if isinstance(e, ToolResult)]
    assert results and results[0].is_error
    assert "outside this conversation's workspace" in fake_api.requests[-1].tool_results()[0]["content"]


async def _bash_turn(agent: Agent, fake_api: FakeAnthropicAPI, decide: Decision | None, marker: str, user: str = "u1"):
    fake_api.enqueue(ToolCall("Bash", {"command": f"echo ran > {marker}"}))
    seen: list[object] = []
    async with aclosing(agent.stream("run it", user_id=user)) as events:
        async for event in events:
            seen.append(event)
            if isinstance(event, ApprovalRequested) and decide is not None:
                await agent.resolve_approval(event.request.id, decide, user)
    return seen


async def test_approval_granted_runs_the_tool(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    events = await _bash_turn(agent, fake_api, Decision.ALLOW_ONCE, "granted.txt")
    root = agent.workspaces.root(ConversationKey("api", "u1"))
    assert (root / "granted.txt").read_text() == "ran\n"
    requested = next(e for e in events if isinstance(e, ApprovalRequested))
    resolved = next(e for e in events if isinstance(e, ApprovalResolved))
    assert requested.request.tool_name == "Bash" and "echo ran" in requested.request.summary
    assert resolved.request.decision is Decision.ALLOW_ONCE and resolved.request.decided_by == "u1"
    # allow once: the next Bash call asks again
    again = await _bash_turn(agent, fake_api, Decision.DENY, "second.txt")
    assert any(isinstance(e, ApprovalRequested) for e in again)


async def test_approval_denied_does_not_run_the_tool(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    await _bash_turn(agent, fake_api, Decision.DENY, "denied.txt")
    assert not (agent.workspaces.root(ConversationKey("api", "u1")) / "denied.txt").exists()
    result = fake_api.requests[-1].tool_results()[0]
    assert result.get("is_error") and "did not allow Bash" in str(result["content"])


async def test_allow_for_this_session_stops_asking(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    await _bash_turn(agent, fake_api, Decision.ALLOW_SESSION, "one.txt")
    events = await _bash_turn(agent, fake_api, None, "two.txt")
    assert not any(isinstance(e, ApprovalRequested) for e in events)
    assert (agent.workspaces.root(ConversationKey("api", "u1")) / "two.txt").exists()


async def test_only_the_requester_or_an_admin_may_answer(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with Agent(make_sections(access={"admins": ["api:boss"]})) as agent:
        fake_api.enqueue(ToolCall("Bash", {"command": "echo x > by_admin.txt"}))
        async with aclosing(agent.stream("go", user_id="alice")) as events:
            async for event in events:
                if isinstance(event, ApprovalRequested):
                    with pytest.raises(ApprovalForbidden):
                        await agent.resolve_approval(event.request.id, Decision.ALLOW_ONCE, "mallory")
                    assert event.request.pending
                    await agent.resolve_approval(event.request.id, Decision.ALLOW_ONCE, "boss")
                if isinstance(event, ApprovalResolved):
                    assert event.request.decided_by == "boss"
        assert (agent.workspaces.root(ConversationKey("api", "alice")) / "by_admin.txt").exists()


async def test_unanswered_approval_is_denied_on_timeout(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with Agent(make_sections(agent={"approval_timeout": 1})) as agent:
        events = await _bash_turn(agent, fake_api, None, "never.txt")
        root = agent.workspaces.root(ConversationKey("api", "u1"))
    resolved = next(e for e in events if isinstance(e, ApprovalResolved))
    assert resolved.request.decision is Decision.DENY and resolved.request.reason == "timed out"
    assert isinstance(final(events), TurnResult)
    assert not (root / "never.txt").exists()  # denied: the command never ran
    result = fake_api.requests[-1].tool_results()[0]
    assert result.get("is_error") and "timed out" in str(result.get("content"))


async def start_streaming(agent: Agent, text: str, user: str = "u1") -> tuple[asyncio.Task[None], list[object]]:
    """Start a turn in the background; returns once its first text has streamed."""
    seen: list[object] = []

    async def run() -> None:
        async for event in agent.stream(text, user_id=user):
            seen.append(event)

    task = asyncio.create_task(run())
    await eventually(lambda: any(isinstance(e, TextDelta) for e in seen), what="streamed text")
    return task, seen


async def test_stop_mid_turn_keeps_the_session(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    fake_api.enqueue(Hang("thinking out loud", seconds=60))
    task, seen = await start_streaming(agent, "long task")
    assert await agent.stop("u1") is True
    await asyncio.wait_for(task, 30)
    result = final(seen)
    assert isinstance(result, TurnResult) and result.interrupted and not result.is_error
    after = await agent.chat("are you there?", user_id="u1")
    assert after.text == "echo: are you there?" and after.session_id == result.session_id
    assert "long task" in fake_api.requests[-1].user_texts()


async def test_cli_killed_mid_turn_gives_a_clear_error_and_the_next_turn_works(
    agent: Agent, fake_api: FakeAnthropicAPI
) -> None:
    await agent.chat("first", user_id="u1")
    fake_api.enqueue(Hang("working", seconds=60))
    task, seen = await start_streaming(agent, "long")
    for pid in claude_children():
        os.kill(pid, signal.SIGKILL)
    await asyncio.wait_for(task, 30)
    error = final(seen)
    assert isinstance(error, TurnError) and error.kind == "unavailable"
    assert "stopped unexpectedly" in error.message and "again" in error.message
    after = await agent.chat("still there?", user_id="u1")
    assert after.text == "echo: still there?" and not after.is_error
    assert "first" in fake_api.requests[-1].user_texts()


async def test_two_conversations_at_once_stay_isolated(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    fake_api.rules["from alice"] = [Text("alice's answer", chunks=5, delay=0.05)]
    fake_api.rules["from bob"] = [Text("bob's answer", chunks=5, delay=0.05)]
    alice, bob = await asyncio.gather(
        agent.chat("hello from alice", user_id="alice"), agent.chat("hello from bob", user_id="bob")
    )
    assert alice.text == "alice's answer" and bob.text == "bob's answer"
    assert alice.session_id != bob.session_id
    for req in fake_api.requests:
        texts = " ".join(req.user_texts())
        assert not ("from alice" in texts and "from bob" in texts)
    a, b = await agent.conversations.get(alice.key), await agent.conversations.get(bob.key)
    assert a and b and a.cwd != b.cwd


async def test_a_failing_conversation_does_not_touch_another(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    fake_api.rules["doomed"] = [Hang("x", seconds=60)]
    doomed = asyncio.create_task(collect(agent, "doomed turn", user="carol"))
    await eventually(lambda: agent.conversations.busy(ConversationKey("api", "carol")), what="carol busy")
    ok = await agent.chat("fine turn", user_id="dave")
    assert ok.text == "echo: fine turn"
    await agent.stop("carol")
    await asyncio.wait_for(doomed, 30)


async def test_one_conversations_cli_dying_does_not_touch_another(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    await agent.chat("warm up", user_id="dave")
    fake_api.rules["carol's long job"] = [Hang("working on it", seconds=60)]
    fake_api.rules["dave's question"] = [Text("dave's complete answer", chunks=4, delay=0.2)]
    carol_task, carol_seen = await start_streaming(agent, "carol's long job", user="carol")
    dave = asyncio.create_task(agent.chat("dave's question", user_id="dave"))
    carol_root = agent.workspaces.root(ConversationKey("api", "carol"))
    victims = await eventually(lambda: claude_children(carol_root), what="carol's CLI")
    assert len(victims) == 1 and len(claude_children()) == 2  # dave's CLI is a different process
    os.kill(victims[0], signal.SIGKILL)
    await asyncio.wait_for(carol_task, 30)
    carol_end = final(carol_seen)
    assert isinstance(carol_end, TurnError) and carol_end.kind == "unavailable"
    answer = await asyncio.wait_for(dave, 30)
    assert answer.text == "dave's complete answer" and not answer.is_error


async def test_the_pool_evicts_the_least_recently_used_conversation(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with Agent(make_sections(agent={"pool_size": 2})) as agent:
        for user in ("alice", "bob", "alice", "carol"):  # alice is used again after bob
            await agent.chat(f"hello from {user}", user_id=user)
        pool = agent.runtime.pool
        warm = {user for user in ("alice", "bob", "carol") if pool.get(ConversationKey("api", user))}
        assert warm == {"alice", "carol"}


async def test_concurrent_first_messages_share_one_new_session(agent: Agent) -> None:
    key = ConversationKey("api", "newcomer")
    opened = await asyncio.gather(*(agent.conversations.open(key) for _ in range(5)))
    assert len({c.session_id for c in opened}) == 1
    stored = await agent.conversations.get(key)
    assert stored is not None and stored.session_id == opened[0].session_id


async def test_library_api_from_a_config_file(
    tmp_path: Path, cli_env: dict[str, str], fake_api: FakeAnthropicAPI
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "agent": {"env": cli_env, "system_prompt": "Answer like a ship's captain."},
                "workspace": {"base_dir": "ws"},
                "store": {"path": "state/ccbridge.db"},
            }
        )
    )
    asked: list[str] = []

    async def approve(request: ApprovalRequest) -> Decision:
        asked.append(request.tool_name)
        return Decision.ALLOW_ONCE

    async with Agent.from_config(config) as agent:
        root = agent.workspaces.root(ConversationKey("api", "lib"))
        assert root == tmp_path / "ws" / "api" / "lib"  # relative paths are relative to the config file
        fake_api.enqueue(ToolCall("Bash", {"command": "echo ok > approved.txt"}))
        approved = await agent.chat("run it", user_id="lib", on_approval=approve)
        assert asked == ["Bash"] and not approved.is_error
        assert (root / "approved.txt").read_text() == "ok\n"
        assert "Answer like a ship's captain." in json.dumps(fake_api.requests[0].body.get("system"))
        fake_api.enqueue(ToolCall("Bash", {"command": "echo no > unasked.txt"}))
        await agent.chat("run it again", user_id="lib")  # no on_approval: the tool is denied
        assert asked == ["Bash"] and not (root / "unasked.txt").exists()
    assert (tmp_path / "state" / "ccbridge.db").is_file()


async def test_evicted_conversations_resume_from_their_transcript(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with Agent(make_sections(agent={"pool_size": 1})) as agent:
        await agent.chat("alice fact: blue", user_id="alice")
        await agent.chat("bob fact: green", user_id="bob")  # evicts alice's warm client
        assert len(agent.runtime.pool) == 1
        await agent.chat("alice again", user_id="alice")
        assert "alice fact: blue" in fake_api.requests[-1].user_texts()
        assert "bob fact: green" not in fake_api.requests[-1].user_texts()


async def test_api_errors_are_retried_then_reported_clearly(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    fake_api.enqueue(Error(529, "overloaded_error", "Overloaded"))
    recovered = await agent.chat("after one overload", user_id="u1")
    assert recovered.text == "echo: after one overload" and not recovered.is_error
    fake_api.enqueue(*[Error(500, message="boom")] * 2)
    failed = await agent.chat("persistent failure", user_id="u1")
    assert failed.is_error and failed.error and "500" in failed.error
    fake_api.enqueue(Error(429, "rate_limit_error", "slow down"), Text("ok after 429"))
    assert (await agent.chat("rate limited once", user_id="u1")).text == "ok after 429"


async def test_slow_streams_arrive_as_many_deltas(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    fake_api.enqueue(Text("a slow and steady answer", chunks=6, delay=0.15))
    events = await collect(agent, "slowly")
    assert len([e for e in events if isinstance(e, TextDelta)]) == 6
    assert final(events).text == "a slow and steady answer"


async def test_images_reach_the_model_and_files_go_back(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    key = ConversationKey("api", "u1")
    png = bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8cf"
        "c0f01f0005000201a5b1a8a50000000049454e44ae426082"
    )
    saved = await agent.workspaces.save_upload(key, "pixel.png", png)
    root = agent.workspaces.root(key)
    (root / "report.txt").write_text("numbers")
    fake_api.enqueue(ToolCall("mcp__ccbridge__send_file", {"path": "report.txt", "caption": "the report"}))
    events = await collect(agent, "look at this", attachments=[Attachment(saved, "pixel.png", "image/png")])
    assert fake_api.requests[0].images()[0]["source"]["media_type"] == "image/png"
    assert any("uploads/pixel.png" in t for t in fake_api.requests[0].user_texts())
    offered = [e for e in events if isinstance(e, FileOffered)]
    assert [e.path.name for e in offered] == ["report.txt"] and offered[0].caption == "the report"


async def test_send_file_outside_the_workspace_is_refused(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    fake_api.enqueue(ToolCall("mcp__ccbridge__send_file", {"path": "/etc/passwd"}))
    events = await collect(agent, "send passwd")
    assert not any(isinstance(e, FileOffered) for e in events)
    assert "outside this conversation's workspace" in str(fake_api.requests[-1].tool_results()[0]["content"])


async def test_turn_timeout_stops_the_turn(make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI) -> None:
    async with Agent(make_sections(agent={"turn_timeout": 3})) as agent:
        fake_api.enqueue(Hang("slow", seconds=60))
        events = await collect(agent, "never ends")
        error = final(events)
        assert isinstance(error, TurnError) and error.kind == "timeout"
        assert (await agent.chat("next", user_id="u1")).text == "echo: next"


async def test_max_turns_limit_is_reported(make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI) -> None:
    async with Agent(make_sections(agent={"max_turns": 1})) as agent:
        root = agent.workspaces.root(ConversationKey("api", "u1"))
        fake_api.enqueue(ToolCall("Write", {"file_path": str(root / "a.txt"), "content": "a"}))
        result = await agent.chat("loop", user_id="u1")
        assert result.is_error and result.error == "the turn hit its max_turns limit"


async def test_configured_mcp_servers_reach_claude_code(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    server = Path(__file__).resolve().parents[1] / "fakes" / "facts_mcp_server.py"
    facts = {"type": "stdio", "command": sys.executable, "args": [str(server)]}
    sections = make_sections(agent={"mcp_servers": {"facts": facts}, "allowed_tools": ["mcp__facts__*"]})
    async with Agent(sections) as agent:
        fake_api.enqueue(ToolCall("mcp__facts__lookup", {"topic": "towels"}))
        result = await agent.chat("look it up", user_id="u1")
    assert not result.is_error
    [tool_result] = fake_api.requests[-1].tool_results()
    assert "fact about towels: 42" in json.dumps(tool_result) and not tool_result.get("is_error")


async def test_max_budget_usd_ends_the_turn_clearly(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with Agent(make_sections(agent={"max_budget_usd": 0.000001})) as agent:
        fake_api.enqueue(ToolCall("Read", {"file_path": "notes.txt"}), ToolCall("Read", {"file_path": "more.txt"}))
        result = await agent.chat("spend a lot", user_id="u1")
    assert result.is_error and result.error and "max_budget_usd" in result.error


async def test_history_is_recorded(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    root = agent.workspaces.root(ConversationKey("api", "u1"))
    fake_api.enqueue(ToolCall("Write", {"file_path": str(root / "h.txt"), "content": "h"}))
    await agent.chat("make h", user_id="u1")
    turns = await agent.conversations.history(ConversationKey("api", "u1"))
    assert [t.user_text for t in turns] == ["make h"]
    assert turns[0].tool_calls[0].name == "Write" and turns[0].cost_usd is not None
    conv = await agent.conversations.get(ConversationKey("api", "u1"))
    assert conv and conv.message_count == 1 and conv.status == "idle"


async def test_idle_warm_clients_are_closed_and_resume_later(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with Agent(make_sections(agent={"idle_timeout": 1})) as agent:
        first = await agent.chat("note: idle test", user_id="u1")
        assert len(agent.runtime.pool) == 1
        await eventually(lambda: len(agent.runtime.pool) == 0, what="idle client reaped")
        await eventually(lambda: not claude_children(), what="CLI process gone")
        again = await agent.chat("after idling", user_id="u1")
        assert again.session_id == first.session_id
        assert "note: idle test" in fake_api.requests[-1].user_texts()


async def test_closing_the_agent_stops_running_turns_and_records_them(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    sections = make_sections()
    agent = await Agent(sections).start()
    fake_api.enqueue(Hang("half an answer", seconds=60))
    task, seen = await start_streaming(agent, "a long one")
    await agent.close()
    await asyncio.wait_for(task, 30)
    assert isinstance(final(seen), TurnResult) and final(seen).interrupted  # type: ignore[union-attr]
    async with Agent(sections) as again:
        turns = await again.conversations.history(ConversationKey("api", "u1"))
        assert [(t.user_text, t.status) for t in turns] == [("a long one", "interrupted")]
        assert (await again.conversations.get(ConversationKey("api", "u1"))).status == "idle"  # type: ignore[union-attr]
