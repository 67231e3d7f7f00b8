"""The dispatcher with a recording sink and the real agent: access, commands, busy policy, notices."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from core import (
    Agent,
    ApprovalForbidden,
    ApprovalNotFound,
    ConversationKey,
    Dispatcher,
    IncomingMessage,
    Sections,
    SinkLimits,
    UserRef,
)
from core.dispatcher import MAX_MESSAGE_CHARS, empty_hint
from tests.fakes.anthropic_api import FakeAnthropicAPI, Hang, Text, ToolCall
from tests.fakes.recording_sink import RecordingSink
from tests.helpers import eventually

DM = ConversationKey("chat", "alice")


def sink() -> RecordingSink:
    return RecordingSink(limits=SinkLimits(max_len=4000, min_edit_interval=0.05, typing_interval=0))


def message(text: str, key: ConversationKey = DM, user: str = "alice", **kw: object) -> IncomingMessage:
    return IncomingMessage(key=key, user=UserRef(user, user.title()), text=text, reply=sink(), **kw)  # type: ignore[arg-type]


@pytest.fixture
async def make_dispatcher(make_sections: Callable[..., Sections]) -> AsyncIterator[Callable[..., Dispatcher]]:
    agents: list[Agent] = []

    async def make(**overrides: object) -> Dispatcher:
        agent = await Agent(make_sections(**overrides)).start()
        agents.append(agent)
        return Dispatcher(agent)

    yield make  # type: ignore[misc]
    for agent in agents:
        await agent.close()


async def say(dispatcher: Dispatcher, text: str, **kw: object) -> list[str]:
    msg = message(text, **kw)
    await dispatcher.handle(msg)
    return msg.reply.visible()  # type: ignore[attr-defined]


async def test_allowlist_refuses_politely_once_and_runs_nothing(make_dispatcher, fake_api: FakeAnthropicAPI) -> None:
    d = await make_dispatcher(access={"allow_all": False, "allowlist": ["chat:alice"]})
    assert await say(d, "hi", user="alice", key=ConversationKey("chat", "alice")) == ["echo: hi"]
    first = await say(d, "let me in", user="eve", key=ConversationKey("chat", "eve"))
    second = await say(d, "please", user="eve", key=ConversationKey("chat", "eve"))
    assert len(first) == 1 and "allowlist" in first[0]
    assert second == []
    assert all("let me in" not in r.user_texts() for r in fake_api.requests)
    assert await d.conversations.get(ConversationKey("chat", "eve")) is None


async def test_empty_allowlist_admits_nobody_and_warns(make_dispatcher) -> None:
    d = await make_dispatcher(access={"allow_all": False})
    assert "allowlist" in (await say(d, "hello"))[0]
    assert "nobody may use this chat bot" in d.access.startup_warnings("chat")[0]


async def test_allow_all_admits_anyone_and_warns(make_dispatcher) -> None:
    d = await make_dispatcher(access={"allow_all": True, "allowlist": []})
    assert await say(d, "hi", user="stranger", key=ConversationKey("chat", "stranger")) == ["echo: hi"]
    [warning] = d.access.startup_warnings("chat")
    assert "allow_all" in warning and "every chat user" in warning


async def test_a_listed_user_needs_no_allow_all_and_gets_no_warning(make_dispatcher) -> None:
    d = await make_dispatcher(access={"allow_all": False, "allowlist": ["chat:alice"]})
    assert d.access.startup_warnings("chat") == []


async def test_help_status_history_commands(make_dispatcher, fake_api: FakeAnthropicAPI) -> None:
    d = await make_dispatcher()
    assert "/new" in (await say(d, "/help"))[0]
    assert "No session yet" in (await say(d, "/status"))[0]
    await say(d, "first question")
    status = (await say(d, "/status@some_bot"))[0]
    conv = await d.conversations.get(DM)
    assert conv is not None and conv.session_id in status and "1 message(s)" in status
    assert f"**Instance** `{d.agent.instance_id}` (owns this conversation, the only instance)" in status
    history = (await say(d, "/history 3"))[0]
    assert "first question" in history and "echo: first question" in history
    assert "number" in (await say(d, "/history lots"))[0]
    assert len(fake_api.requests) == 1  # commands never reach the model


async def test_new_starts_a_fresh_session(make_dispatcher, fake_api: FakeAnthropicAPI) -> None:
    d = await make_dispatcher()
    await say(d, "secret is 7")
    old = (await d.conversations.get(DM)).session_id  # type: ignore[union-attr]
    assert "New session" in (await say(d, "/new"))[0]
    await say(d, "what was the secret?")
    new = (await d.conversations.get(DM)).session_id  # type: ignore[union-attr]
    assert new != old
    assert "secret is 7" not in fake_api.requests[-1].user_texts()


async def test_cwd_changes_directory_inside_the_workspace_only(make_dispatcher, fake_api: FakeAnthropicAPI) -> None:
    d = await make_dispatcher()
    assert "outside the workspace" in (await say(d, "/cwd ../../etc"))[0]
    assert "absolute" not in (await say(d, "/cwd /src"))[0]  # a leading slash means the workspace root
    reply = (await say(d, "/cwd src/app"))[0]
    assert "/src/app" in reply
    root = d.agent.workspaces.root(DM)
    assert (root / "src" / "app").is_dir()
    fake_api.enqueue(ToolCall("Bash", {"command": "pwd > where.txt"}))
    msg = message("where am I?")
    task = asyncio.create_task(d.handle(msg))
    await eventually(lambda: msg.reply.approvals, what="approval prompt")  # type: ignore[attr-defined]
    request = d.agent.approvals.pending(key=DM)[0]
    await d.resolve_approval(request.id, "allow_once", "alice")
    await task
    assert (root / "src" / "app" / "where.txt").read_text().strip() == str(root / "src" / "app")


async def test_model_command_switches_the_model(make_dispatcher, fake_api: FakeAnthropicAPI) -> None:
    d = await make_dispatcher()
    assert "default" in (await say(d, "/model"))[0]
    assert "claude-test-model" in (await say(d, "/model claude-test-model"))[0]
    await say(d, "hi")
    assert fake_api.requests[-1].body["model"] == "claude-test-model"
    assert "default" in (await say(d, "/model default"))[0]


async def test_busy_conversation_queues_and_says_so(make_dispatcher, fake_api: FakeAnthropicAPI) -> None:
    d = await make_dispatcher()
    fake_api.rules["slow one"] = [Text("slow reply", chunks=10, delay=0.2)]
    first, second = message("slow one"), message("quick one")
    t1 = asyncio.create_task(d.handle(first))
    await eventually(lambda: d.conversations.busy(DM), what="busy")
    await d.handle(second)
    await t1
    assert first.reply.visible() == ["slow reply"]  # type: ignore[attr-defined]
    queued, answer = second.reply.visible()  # type: ignore[attr-defined]
    assert queued.startswith("⏳ Queued") and answer == "echo: quick one"
    assert fake_api.requests[-1].user_texts()[-1] == "quick one"


async def test_interrupt_policy_stops_the_running_turn(make_dispatcher, fake_api: FakeAnthropicAPI) -> None:
    d = await make_dispatcher(access={"allow_all": True, "busy_policy": "interrupt"})
    fake_api.rules["endless"] = [Hang("working on it", seconds=60)]
    first, second = message("endless"), message("never mind")
    t1 = asyncio.create_task(d.handle(first))
    await eventually(lambda: first.reply.visible(), what="first reply visible")  # type: ignore[attr-defined]
    await d.handle(second)
    await asyncio.wait_for(t1, 30)
    assert first.reply.visible()[-1].endswith("⏹ Stopped.")  # type: ignore[attr-defined]
    assert second.reply.visible()[-1] == "echo: never mind"  # type: ignore[attr-defined]


async def test_stop_command_mid_turn(make_dispatcher, fake_api: FakeAnthropicAPI) -> None:
    d = await make_dispatcher()
    fake_api.enqueue(Hang("partial", seconds=60))
    running = message("long job")
    task = asyncio.create_task(d.handle(running))
    await eventually(lambda: running.reply.visible(), what="partial reply")  # type: ignore[attr-defined]
    assert "Stopping" in (await say(d, "/stop"))[0]
    await asyncio.wait_for(task, 30)
    assert running.reply.visible() == ["partial\n\n⏹ Stopped."]  # type: ignore[attr-defined]
    assert "Nothing is running" in (await say(d, "/stop"))[0]
    assert (await say(d, "next"))[-1] == "echo: next"


async def test_huge_and_empty_messages_get_clear_answers(make_dispatcher, fake_api: FakeAnthropicAPI) -> None:
    d = await make_dispatcher()
    huge = await say(d, "x" * (MAX_MESSAGE_CHARS + 1))
    assert "limit" in huge[0] and "file" in huge[0]
    assert (await say(d, "   "))[0] == empty_hint("/")
    assert fake_api.requests == []


async def test_unaddressed_messages_only_continue_existing_conversations(
    make_dispatcher, fake_api: FakeAnthropicAPI
) -> None:
    d = await make_dispatcher()
    thread = ConversationKey("chat", "channel-1", "thread-9")
    assert await say(d, "chatter", key=thread, mentioned=False) == []
    assert fake_api.requests == []
    assert await say(d, "@bot start", key=thread) == ["echo: [Alice] @bot start"]
    assert await say(d, "follow-up", key=thread, user="bob", mentioned=False) == ["echo: [Bob] follow-up"]


async def test_approvals_through_the_sink_and_only_by_the_requester(
    make_dispatcher, fake_api: FakeAnthropicAPI
) -> None:
    d = await make_dispatcher()
    fake_api.enqueue(ToolCall("Bash", {"command": "echo hi > ok.txt"}))
    msg = message("do it")
    task = asyncio.create_task(d.handle(msg))
    await eventually(lambda: msg.reply.approvals, what="approval prompt")  # type: ignore[attr-defined]
    request = d.agent.approvals.pending(key=DM)[0]
    with pytest.raises(ApprovalForbidden):
        await d.resolve_approval(request.id, "allow_once", "mallory")
    elsewhere = ConversationKey("chat", "channel-1", "thread-9")
    with pytest.raises(ApprovalNotFound):  # a button carried into another conversation answers nothing
        await d.resolve_approval(request.id, "allow_once", "alice", conversation=elsewhere)
    assert d.agent.approvals.pending(key=DM) == [request]
    await d.resolve_approval(request.id, "allow_once", "alice", conversation=DM)
    await task
    assert msg.reply.approvals == [  # type: ignore[attr-defined]
        "Bash: echo hi > ok.txt -> Waiting for approval",
        "Bash: echo hi > ok.txt -> Allowed once by alice",
    ]
    assert (d.agent.workspaces.root(DM) / "ok.txt").exists()


async def test_a_turn_cut_off_by_a_restart_is_marked_not_replayed(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    sections = make_sections()
    async with Agent(sections) as agent:
        await agent.chat("before the crash", user_id="alice", platform="chat")
        conv = await agent.conversations.get(DM)
        assert conv is not None
        conv.status = "running"  # as if the process died mid-turn
        await agent.store.put(conv)
    async with Agent(sections) as agent:
        assert (await agent.conversations.get(DM)).status == "interrupted"  # type: ignore[union-attr]
        requests_before = len(fake_api.requests)
        shown = await say(Dispatcher(agent), "hello again")
        assert shown[0].startswith("ℹ️ Your previous request was cut off") and shown[1] == "echo: hello again"
        assert len(fake_api.requests) == requests_before + 1
