"""bots/http_api: BOT serves the app with uvicorn inside run() until cancelled."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from types import FrameType
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


async def wait_for_server(client: httpx.AsyncClient) -> None:
    async def healthy() -> bool:
        try:
            return (await client.get("/health")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_until(healthy, what="the bot's server to answer")


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
        await wait_for_server(client)
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


async def test_bot_leaves_the_process_signal_handlers_alone(agent: Agent) -> None:
    # run_bot.py owns SIGINT/SIGTERM (it stops turns, then bots, then agents); uvicorn must not take them.
    assert threading.current_thread() is threading.main_thread()  # where uvicorn would install its own

    def ours(signum: int, frame: FrameType | None) -> None:
        raise AssertionError("not expected to be called")

    bot_class = load_bot_class("http_api")
    port = free_port()
    bot = bot_class("api", agent, bot_class.parse_settings("api", {"api_keys": [KEY], "port": port}))
    previous = {sig: signal.signal(sig, ours) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        running = asyncio.create_task(bot.run())
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            await wait_for_server(client)
        assert signal.getsignal(signal.SIGTERM) is ours and signal.getsignal(signal.SIGINT) is ours
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
