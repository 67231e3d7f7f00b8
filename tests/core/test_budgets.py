"""Budgets: a user over their limit is refused with nothing run (the model is never called), /cost shows
the spend today and this month, and the totals survive a restart (they are kept in the store)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from core import Agent, ConversationKey, Sections, UserRef
from core.budgets import MICRO, Budgets, Limits
from core.config import BudgetSettings, load_config
from core.dispatcher import Dispatcher, IncomingMessage
from core.intake import IncomingFile
from core.store import MemoryStore
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.fakes.recording_sink import RecordingSink
from tests.helpers import immutable

TINY = 0.00001  # below what one turn against the fake API costs


async def say(
    dispatcher: Dispatcher,
    text: str,
    user: str = "alice",
    *,
    prefix: str = "/",
    files: list[IncomingFile] | None = None,
) -> list[str]:
    sink = RecordingSink()
    msg = IncomingMessage(
        ConversationKey("chat", user), UserRef(user), text, sink, files=files or [], command_prefix=prefix
    )
    await dispatcher.handle(msg)
    return sink.visible()


async def test_a_user_over_the_daily_budget_gets_one_message_and_nothing_runs(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with Agent(make_sections(budgets={"daily_usd": TINY})) as agent:
        dispatcher = Dispatcher(agent)
        assert await say(dispatcher, "first") == ["echo: first"]  # under the limit: runs (and passes it)
        calls = len(fake_api.requests)
        fetched: list[int] = []

        async def fetch(limit: int) -> bytes:
            fetched.append(limit)
            return b"notes"

        [shown] = await say(dispatcher, "second", prefix="!", files=[IncomingFile("notes.txt", "text/plain", 5, fetch)])
        assert shown.startswith("💸 You have used your daily budget here ($0.00 of $0.00)")
        assert "It resets at midnight (UTC)" in shown and "!cost shows your spend" in shown
        assert len(fake_api.requests) == calls  # the model was never called
        assert fetched == []  # nor the file downloaded
        history = await agent.conversations.history(ConversationKey("chat", "alice"))
        assert [t.user_text for t in history] == ["first"]  # nothing recorded either
        assert await say(dispatcher, "hi", user="bob") == ["echo: hi"]  # another user's budget is their own
        # the library and the HTTP API refuse the same way: one error of kind "budget", nothing run
        result = await agent.chat("third", user_id="alice", platform="chat")
        assert result.is_error and result.error_kind == "budget" and "daily budget" in (result.error or "")
        assert len(fake_api.requests) == calls + 1  # only bob's turn reached the model


async def test_messages_waiting_behind_the_turn_that_spent_the_budget_do_not_run(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    """The budget is checked again when a waiting message's turn starts: queued behind the turn that
    spends the budget, the next messages are refused then, not run."""
    from tests.fakes.anthropic_api import Text
    from tests.helpers import eventually

    fake_api.rules["slow one"] = [Text("the slow answer", chunks=6, delay=0.3)]
    async with Agent(make_sections(budgets={"daily_usd": TINY})) as agent:
        dispatcher = Dispatcher(agent)
        sinks = [RecordingSink() for _ in range(3)]
        key = ConversationKey("chat", "alice")
        dispatcher.submit(IncomingMessage(key, UserRef("alice"), "slow one", sinks[0]))
        await eventually(lambda: fake_api.requests, what="the first turn")
        for n, sink in enumerate(sinks[1:]):  # under the limit when they arrive: accepted, queued
            dispatcher.submit(IncomingMessage(key, UserRef("alice"), f"queued {n}", sink))
        await dispatcher.drain(60)
        assert sinks[0].visible()[-1] == "the slow answer"
        for sink in sinks[1:]:
            assert any("used your daily budget" in t for t in sink.visible()), sink.visible()
        assert [r.last_user_text() for r in fake_api.requests] == ["slow one"]
        history = await agent.conversations.history(key)
        assert [t.user_text for t in history] == ["slow one"]


async def test_the_monthly_limit_and_per_user_limits_admins_and_exempt_users(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    budgets = {
        "monthly_usd": TINY,
        "users": {"chat:rich": {"monthly_usd": 100}, "chat:capped": {"daily_usd": TINY}},
        "exempt": ["chat:vip"],
    }
    sections = make_sections(budgets=budgets, access={"admins": ["chat:boss"]})
    async with Agent(sections) as agent:
        b = agent.budgets
        assert b.limits("chat", "alice") == Limits(None, TINY)
        assert b.limits("chat", "rich") == Limits(None, 100)  # their own monthly limit replaces the default
        assert b.limits("chat", "capped") == Limits(TINY, TINY)  # a daily limit of their own, the default monthly
        assert b.limits("chat", "vip") is None and b.limits("chat", "boss", is_admin=True) is None
        dispatcher = Dispatcher(agent)
        for user in ("alice", "rich", "boss"):
            assert await say(dispatcher, "one", user=user) == ["echo: one"]
        calls = len(fake_api.requests)
        [refused] = await say(dispatcher, "two", user="alice")
        assert refused.startswith("💸 You have used your monthly budget here") and "1st of next month" in refused
        assert await say(dispatcher, "two", user="rich") == ["echo: two"]
        assert await say(dispatcher, "two", user="boss") == ["echo: two"]  # admins are exempt by default
        assert len(fake_api.requests) == calls + 2


async def test_cost_shows_today_and_this_month_and_survives_a_restart(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    sections = make_sections(budgets={"daily_usd": 5, "monthly_usd": 50})
    async with Agent(sections) as agent:
        dispatcher = Dispatcher(agent)
        await say(dispatcher, "one")
        await say(dispatcher, "two")
        spent = sum(t.cost_usd or 0 for t in await agent.conversations.history(ConversationKey("chat", "alice")))
        assert spent > 0
        [before] = await say(dispatcher, "/cost")
    async with Agent(sections) as restarted:  # a new process: the totals come from the store
        [after] = await say(Dispatcher(restarted), "/cost")
    assert after == before
    assert after.splitlines() == [
        "💰 **Your spend**",
        f"**Today** ${spent:.4f} of $5.00",
        f"**This month** ${spent:.4f} of $50.00",
        "Days and months begin at midnight UTC.",
    ]
    async with Agent(sections) as again:
        [other] = await say(Dispatcher(again), "/cost", user="bob")
        assert "**Today** $0.0000 of $5.00" in other


async def test_cost_without_limits_and_in_the_help(agent: Agent) -> None:
    dispatcher = Dispatcher(agent)
    await say(dispatcher, "hello")
    [shown] = await say(dispatcher, "/cost")
    assert "**Today** $0.0" in shown and "(no limit)" in shown
    [help_text] = await say(dispatcher, "/help")
    assert "`/cost` — what you spent today and this month, and your limits" in help_text


async def test_spend_the_store_refused_is_added_with_the_next_turn(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with Agent(make_sections()) as agent:
        budgets = agent.budgets
        path = agent.store.path  # type: ignore[attr-defined]
        with immutable(path, path.with_name(path.name + "-wal")):
            await budgets.record("chat", "alice", 0.25)  # logged, kept in memory
            assert (await budgets.spend("chat", "alice")).today_usd == pytest.approx(0.25)
        await budgets.record("chat", "alice", 0.5)
    async with Agent(make_sections()) as restarted:
        spend = await restarted.budgets.spend("chat", "alice")
    assert (spend.today_usd, spend.month_usd) == (pytest.approx(0.75), pytest.approx(0.75))


async def test_days_and_months_roll_over_in_the_configured_timezone_and_old_totals_go() -> None:
    now = [datetime(2025, 1, 31, 22, 30, tzinfo=UTC).timestamp()]
    settings = BudgetSettings(daily_usd=1, monthly_usd=2, timezone="Europe/Berlin")  # 23:30 there
    store = MemoryStore()
    budgets = Budgets(store, "tg", lambda: settings, clock=lambda: now[0])
    await budgets.record("telegram", "42", 0.75)
    assert await budgets.refusal("telegram", "42") is None
    await budgets.record("telegram", "42", 0.5)
    refusal = await budgets.refusal("telegram", "42")
    assert refusal is not None and (refusal.period, refusal.spent_usd, refusal.limit_usd) == ("day", 1.25, 1)
    assert "(Europe/Berlin)" in refusal.message()
    now[0] += 3600  # 00:30 on the 1st of February in Berlin: a new day and a new month
    assert await budgets.refusal("telegram", "42") is None
    spend = await budgets.spend("telegram", "42")
    assert (spend.today_usd, spend.month_usd) == (0, 0)
    await budgets.record("telegram", "42", 0.001)
    names = await store.list_meta("budget:tg:")
    assert names["budget:tg:telegram:42:month:2025-01"] == str(int(1.25 * MICRO))
    now[0] += 30 * 86400  # a month later: January's daily totals are removed, its monthly total kept
    await budgets.record("telegram", "42", 0.001)
    names = await store.list_meta("budget:tg:")
    assert not any(":day:2025-01" in n for n in names) and "budget:tg:telegram:42:month:2025-01" in names


def test_budgets_config_per_bot_defaults_and_errors_naming_the_key(tmp_path: Path) -> None:
    raw: dict[str, Any] = {
        "budgets": {"daily_usd": 5, "users": {"telegram:42": {"daily_usd": 10}}},
        "bots": {"tg": {"kind": "telegram", "budgets": {"daily_usd": 1, "monthly_usd": 20}}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    assert config.budgets.daily_usd == 5 and config.budgets.monthly_usd is None
    tg = config.for_bot("tg").budgets
    assert (tg.daily_usd, tg.monthly_usd) == (1, 20)  # the bot's own default
    assert "telegram:42" in tg.users  # the shared per-user limits still apply
    store = MemoryStore()
    assert Budgets(store, "tg", lambda: tg).limits("telegram", "42") == Limits(10, 20)  # theirs, then the bot's
    for bad, message in (
        ({"daily_usd": -1}, "budgets.daily_usd: Input should be greater than or equal to 0"),
        ({"exempt": ["nobody"]}, "budgets.exempt: 'nobody' must look like 'platform:user_id'"),
        ({"timezone": "Mars/Olympus"}, "budgets.timezone: 'Mars/Olympus' is not a time zone"),
    ):
        path.write_text(yaml.safe_dump({"budgets": bad}))
        with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_config(path)
