"""Fixtures: the fake Bot API server, and Telegram bots (real PTB + real agent CLI) pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bots.telegram import TelegramBot, TelegramSettings
from core import Agent, Sections

from .fake_bot_api import FakeBotAPI

BotFactory = Callable[..., Awaitable[TelegramBot]]


@pytest.fixture
async def bot_api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as fake:
        yield fake


def bot_settings(bot_api: FakeBotAPI, **overrides: Any) -> TelegramSettings:
    """Settings pointing PTB at the fake, with fast pacing for tests."""
    raw: dict[str, Any] = {
        "token": bot_api.token,
        "base_url": bot_api.base_url,
        "base_file_url": bot_api.base_file_url,
        "poll_timeout": 5,
        "edit_interval": 0.05,
        "typing_interval": 1.0,
    }
    raw.update(overrides)
    return TelegramSettings.model_validate(raw)


@pytest.fixture
async def make_bot(bot_api: FakeBotAPI, make_sections: Callable[..., Sections]) -> AsyncIterator[BotFactory]:
    """Start a Telegram bot: ``await make_bot(settings={...}, access={...}, ...)`` (rest: Sections overrides)."""
    started: list[TelegramBot] = []

    async def make(*, settings: dict[str, Any] | None = None, **sections: Any) -> TelegramBot:
        agent = await Agent(make_sections(**sections)).start()
        bot = TelegramBot("telegram", agent, bot_settings(bot_api, **(settings or {})))
        started.append(bot)
        await bot.adapter.start()
        return bot

    yield make
    for bot in started:
        await bot.adapter.stop(drain_timeout=5)
        await bot.agent.close()
