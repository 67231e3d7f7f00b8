"""Fixtures for several real ``run_bot.py`` instances: the fake Bot API and a launcher.

The instances of a test share the session's redis-server (under a key prefix of the test's own)
and, when a test asks for it, a PostgreSQL database of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from core.config import deep_merge
from tests.servers import RedisServer
from tests.telegram.fake_bot_api import FakeBotAPI

from .instances import Instance, start_instance


@pytest.fixture
async def bot_api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as api:
        yield api


@pytest.fixture
async def launch(
    tmp_path: Path, bot_api: FakeBotAPI, cli_env: dict[str, str], redis_server: RedisServer
) -> AsyncIterator[Callable[..., Awaitable[Instance]]]:
    started: list[Instance] = []
    prefix = f"t{uuid.uuid4().hex[:10]}:"

    async def start(name: str, *, mode: str = "webhook", wait: bool = True, **overrides: object) -> Instance:
        overrides = deep_merge({"coordination": {"key_prefix": prefix}}, overrides)
        instance = await start_instance(
            tmp_path, bot_api, cli_env, redis_server.url, name, mode=mode, overrides=overrides
        )
        started.append(instance)
        if wait:
            await instance.ready()
        return instance

    yield start
    for instance in started:
        await instance.stop()
