"""Store faults in a running bot: a clear message in the chat, not ready, back by itself, nothing lost."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from core import Agent, ConversationKey, Sections, StoreError, UserRef, WorkspaceError
from core.dispatcher import STORE_DOWN, Dispatcher, IncomingMessage
from core.workspace import MAX_SUBDIR_DEPTH, check_subdir
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.fakes.recording_sink import RecordingSink
from tests.helpers import immutable

KEY = ConversationKey("chat", "alice")


def db_files(agent: Agent) -> list[Path]:
    path: Path = agent.store.path  # type: ignore[attr-defined]
    return [path, path.with_name(path.name + "-wal")]


async def say(dispatcher: Dispatcher, text: str) -> list[str]:
    sink = RecordingSink()
    await dispatcher.handle(IncomingMessage(KEY, UserRef("alice"), text, sink))
    return sink.visible()


async def test_a_read_only_store_is_a_clear_message_and_not_ready_then_recovers(
    agent: Agent, fake_api: FakeAnthropicAPI
) -> None:
    dispatcher = Dispatcher(agent)
    assert await say(dispatcher, "first") == ["echo: first"]
    with immutable(*db_files(agent)):
        shown = await say(dispatcher, "second")
        assert len(shown) == 1 and "store is unavailable" in shown[0]
        assert not any("second" in r.last_user_text() for r in fake_api.requests)  # nothing ran
        health = await agent.health()
        assert not health.ready and "store" in health.problems[0]
    assert (await agent.health()).ready  # writable again: ready without a restart
    assert await say(dispatcher, "third") == ["echo: third"]
    texts = [t.user_text for t in await agent.conversations.history(KEY)]
    assert texts == ["first", "third"]


async def test_a_deleted_data_directory_is_noticed_at_once(
    agent: Agent, fake_api: FakeAnthropicAPI, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher = Dispatcher(agent)
    await say(dispatcher, "first")
    data_dir = db_files(agent)[0].parent
    for path in data_dir.iterdir():
        path.unlink()
    data_dir.rmdir()
    with caplog.at_level(logging.ERROR, logger="core.agent"):
        health = await agent.health()
        assert not health.ready and "deleted" in health.problems[0]
        assert not (await agent.health()).ready
    loud = [r for r in caplog.records if r.levelno == logging.ERROR and "deleted" in r.getMessage()]
    assert len(loud) == 1  # a loud error, once per outage (not on every probe)
    assert await say(dispatcher, "second") in ([STORE_DOWN], [])  # a clear notice, no turn
    assert not data_dir.exists()  # never silently recreated empty


async def test_a_store_recreated_empty_while_workspaces_remain_refuses_to_start(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    sections = make_sections()
    async with Agent(sections) as agent:
        await agent.chat("remember me", user_id="alice")
        data_dir = agent.store.path.parent  # type: ignore[attr-defined]
    for path in data_dir.iterdir():
        path.unlink()
    with pytest.raises(StoreError, match="the database was lost or replaced"):
        async with Agent(sections):
            pass


async def test_a_turn_whose_end_the_store_refuses_is_written_when_it_is_back(
    agent: Agent, fake_api: FakeAnthropicAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = agent.store
    real_put_turn = store.put_turn
    calls = {"n": 0}

    async def flaky_put_turn(turn: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the end of the first turn: the store is gone for a moment
            raise StoreError("the store is down")
        await real_put_turn(turn)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "put_turn", flaky_put_turn)
    result = await agent.chat("keep my answer", user_id="alice")
    assert result.text == "echo: keep my answer"  # the user got the reply
    assert agent.conversations.unwritten == 1
    assert (await agent.health()).ready  # the store answers again: the waiting record is written
    assert agent.conversations.unwritten == 0
    history = await agent.conversations.history(ConversationKey("api", "alice"))
    assert [(t.user_text, t.reply_text, t.status) for t in history] == [
        ("keep my answer", "echo: keep my answer", "ok")
    ]


@pytest.mark.parametrize("failing", ["put_turn", "put"])
async def test_a_turn_whose_end_is_written_again_is_counted_once(
    agent: Agent, fake_api: FakeAnthropicAPI, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """The end of a turn is two writes (its record, then the conversation's totals); whichever of
    them the store refuses, writing it again later counts the turn and its cost once."""
    key = ConversationKey("api", "alice")
    await agent.chat("first", user_id="alice")
    before = await agent.store.get(key)
    assert before is not None
    store = agent.store
    real = getattr(store, failing)
    armed = {"on": False}

    async def flaky(item: object) -> None:
        if armed["on"]:
            armed["on"] = False
            raise StoreError("the store is down")
        await real(item)

    monkeypatch.setattr(store, failing, flaky)
    real_finish = agent.conversations._write_finish

    async def arm_then_finish(*args: object) -> None:
        armed["on"] = True  # the next write of this kind, during the end of the turn, fails
        await real_finish(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(agent.conversations, "_write_finish", arm_then_finish)
    result = await agent.chat("second", user_id="alice")
    monkeypatch.setattr(agent.conversations, "_write_finish", real_finish)
    assert result.text == "echo: second" and agent.conversations.unwritten == 1
    assert await agent.conversations.flush_unwritten() == 0
    after = await agent.store.get(key)
    assert after is not None and after.message_count == before.message_count + 1
    assert after.total_cost_usd == pytest.approx(before.total_cost_usd + (result.cost_usd or 0.0))
    assert (result.cost_usd or 0.0) > 0
    history = await agent.conversations.history(key)
    assert [(t.user_text, t.status) for t in history] == [("first", "ok"), ("second", "ok")]


def test_subdirs_are_limited_in_depth_and_length() -> None:
    check_subdir("/".join(["d"] * MAX_SUBDIR_DEPTH))
    with pytest.raises(WorkspaceError, match="deep"):
        check_subdir("/".join(["d"] * 300))
    with pytest.raises(WorkspaceError, match="characters"):
        check_subdir("x" * 5000)
