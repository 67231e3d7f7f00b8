"""Fixtures for the Slack tests: the fake Slack and a running bridge (real bolt / slack-sdk)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.slack import SlackAdapter
from bots.slack import SlackBot, SlackSettings
from core import Agent, Sections

from .fake_slack import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET, EventPoster, FakeSlack


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@dataclass
class Running:
    """A Slack bot serving the Events API on 127.0.0.1, its agent, and a signed-request poster."""

    bot: SlackBot
    agent: Agent
    poster: EventPoster
    fake: FakeSlack

    @property
    def adapter(self) -> SlackAdapter:
        return self.bot.adapter

    @property
    def url(self) -> str:
        return self.poster.url


def slack_config(fake: FakeSlack, **settings: Any) -> SlackSettings:
    base: dict[str, Any] = {
        "bot_token": BOT_TOKEN,
        "mode": "http",
        "signing_secret": SIGNING_SECRET,
        "host": "127.0.0.1",
        "port": 0,
        "base_url": fake.api_url,
        "edit_interval": 0.05,
    }
    if settings.get("mode") == "socket":
        base["app_token"] = APP_TOKEN
    base.update(settings)
    return SlackSettings.model_validate(base)


@pytest.fixture
async def make_bridge(
    make_sections: Callable[..., Sections], slack: FakeSlack
) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    started: list[Running] = []

    async def make(*, sections: dict[str, Any] | None = None, serve: bool = True, **settings: Any) -> Running:
        agent = Agent(make_sections(**(sections or {})))
        await agent.start()
        bot = SlackBot("slack", agent, slack_config(slack, **settings))
        running = Running(bot, agent, EventPoster(""), slack)
        started.append(running)
        if serve:
            await bot.adapter.start()
            if bot.adapter.port:
                running.poster = EventPoster(f"http://127.0.0.1:{bot.adapter.port}/slack/events")
        return running

    yield make
    for running in started:
        await running.adapter.stop(drain_timeout=15)
        await running.agent.close()
