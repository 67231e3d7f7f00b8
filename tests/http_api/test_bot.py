"""bots/http_api: BOT serves the app with uvicorn inside run() until cancelled."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest

from bots import load_bot_class
from core import Agent, ConfigError

from .conftest import KEY, wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_bot_runs_uvicorn_until_cancelled(agent: Agent) -> None:
    bot_class = load_bot_class("http_api")
    assert bot_class.kind == "http_api" and bot_class.platform == "api"
    port = free_port()
    settings = bot_class.parse_settings("api", {"api_keys": [KEY], "port": port})
    bot = bot_class("api", agent, settings)
    assert bot.describe() == f"api (http_api on http://127.0.0.1:{port}, 1 API key(s))"
    assert any("allowed_users is empty" in w for w in bot.warnings())
    running = asyncio.create_task(bot.run())
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": KEY}, timeout=60) as client:

        async def healthy() -> bool:
            try:
                return (await client.get("/health")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(healthy, what="the bot's server to answer")
        chat = await client.post("/api/v1/chat", json={"text": "from the bot", "user_id": "botuser"})
        assert chat.status_code == 200 and chat.json()["text"] == "echo: from the bot"
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    with pytest.raises(httpx.TransportError):
        async with httpx.AsyncClient(base_url=base) as client:
            await client.get("/health")


async def test_bot_reports_a_port_in_use_as_a_config_error(agent: Agent) -> None:
    bot_class = load_bot_class("http_api")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings: Any = bot_class.parse_settings("api", {"api_keys": [KEY], "port": port})
        with pytest.raises(ConfigError, match=rf"bots.api.port: the HTTP API could not start on 127.0.0.1:{port}"):
            await bot_class("api", agent, settings).run()
