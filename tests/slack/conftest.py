"""Fixtures for the Slack tests: the fake Slack and a running bridge (real bolt / slack-sdk)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from adapters.slack import SlackBridge, SlackConfig
from bots.slack import conversation_key
from core import Agent, Sections

from .fake_slack import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET, EventPoster, FakeSlack


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@dataclass
class Running:
    """A bridge serving the Events API on 127.0.0.1, its agent, and a signed-request poster."""

    bridge: SlackBridge
    agent: Agent
    poster: EventPoster
    fake: FakeSlack

    @property
    def url(self) -> str:
        return self.poster.url


def slack_config(fake: FakeSlack, **settings: Any) -> SlackConfig:
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
    return SlackConfig.model_validate(base)


@pytest.fixture
async def make_bridge(
    make_sections: Callable[..., Sections], slack: FakeSlack
) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    started: list[Running] = []

    async def make(*, sections: dict[str, Any] | None = None, serve: bool = True, **settings: Any) -> Running:
        agent = Agent(make_sections(**(sections or {})))
        await agent.start()
        bridge = SlackBridge(agent, slack_config(slack, **settings), conversation_key)
        running = Running(bridge, agent, EventPoster(""), slack)
        started.append(running)
        await bridge.start()
        if serve:
            port = await bridge.serve_http()
            running.poster = EventPoster(f"http://127.0.0.1:{port}/slack/events")
        return running

    yield make
    for running in started:
        await running.bridge.dispatcher.drain(timeout=15)
        await running.bridge.close()
        await running.agent.close()
