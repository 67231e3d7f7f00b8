"""Webhook mode: PTB's webhook server with a secret token, fed by real HTTP POSTs."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

import aiohttp
import pytest
from telegram import Bot, Update

from adapters.telegram.config import WebhookConfig
from adapters.telegram.webhook import SECRET_HEADER, WebhookServer
from bots.telegram import TelegramBot
from core import Agent, ConfigError
from tests.fakes.anthropic_api import FakeAnthropicAPI

from .conftest import BotFactory, bot_settings
from .fake_bot_api import FakeBotAPI
from .people import ADA, ADA_DM

SECRET = "right-secret_42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_webhook_requires_the_secret_token(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    port = free_port()
    webhook = {
        "url": "https://bot.example.com/tg-hook",
        "secret_token": SECRET,
        "listen": "127.0.0.1",
        "port": port,
        "path": "tg-hook",
    }
    await make_bot(settings={"mode": "webhook", "webhook": webhook})
    assert bot_api.webhook is not None
    assert (bot_api.webhook["url"], bot_api.webhook["secret_token"]) == ("https://bot.example.com/tg-hook", SECRET)
    assert not bot_api.calls_of("getUpdates")  # no polling in webhook mode

    def update(text: str) -> dict:
        return {"update_id": len(bot_api.calls) + 5000, "message": bot_api.new_message(ADA_DM, ADA, text)}

    url = f"http://127.0.0.1:{port}/tg-hook"
    async with aiohttp.ClientSession() as http:
        wrong = await http.post(url, json=update("wrong secret"), headers={"X-Telegram-Bot-Api-Secret-Token": "nope"})
        missing = await http.post(url, json=update("no secret"))
        garbage = await http.post(
            url,
            data=b"{not json",
            headers={"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"},
        )
        right = await http.post(url, json=update("right secret"), headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
    assert (wrong.status, missing.status) == (403, 403)
    assert garbage.status == 200  # acknowledged and skipped: Telegram would redeliver it forever
    assert right.status == 200
    await bot_api.wait_for(lambda: bot_api.texts(42), what="the reply")
    assert bot_api.texts(42) == ["echo: right secret"]
    assert [r.last_user_text() for r in fake_api.requests] == ["right secret"]  # the others were never processed


async def test_a_webhook_url_telegram_refuses_is_a_config_error_naming_the_key(
    bot_api: FakeBotAPI, make_sections
) -> None:
    bot_api.fail("setWebhook", 400, "Bad Request: bad webhook: Failed to resolve host: Name or service not known")
    port = free_port()
    webhook = {"url": "https://no-such-host.example/hook", "secret_token": SECRET, "port": port, "path": "hook"}
    async with Agent(make_sections()) as agent:
        bot = TelegramBot("tg", agent, bot_settings(bot_api, mode="webhook", webhook=webhook))
        with pytest.raises(ConfigError) as info:
            await bot.adapter.start()
    message = str(info.value)
    assert "bots.tg.webhook.url" in message and "failed to resolve host" in message.lower()
    assert not bot.adapter.application.running
    with socket.socket() as s:  # the local webhook server is not left listening
        s.bind(("127.0.0.1", port))


# -- the webhook server alone (adapters.telegram.webhook), fed by a stand-in for PTB's Application --
class QueueOnly:
    """What the server uses of PTB's ``Application``: its bot and its update queue."""

    def __init__(self) -> None:
        self.bot = Bot("123456:TEST-token")
        self.update_queue: asyncio.Queue[Update] = asyncio.Queue()


def update_of(text: str, update_id: int = 7001) -> dict:
    chat = {"id": 42, "type": "private", "first_name": "Ada"}
    user = {"id": 42, "is_bot": False, "first_name": "Ada"}
    message = {"message_id": 1, "date": 1_700_000_000, "chat": chat, "from": user, "text": text}
    return {"update_id": update_id, "message": message}


async def test_the_webhook_server_queues_updates_bound_to_the_bot_and_listens_on_loopback_only() -> None:
    app = QueueOnly()
    port = free_port()
    server = WebhookServer(app, WebhookConfig(url="https://x.example/h", secret_token=SECRET, port=port, path="/h/"))  # type: ignore[arg-type]
    await server.stop()  # before start: nothing to stop
    assert server.path == "/h"
    await server.start()
    try:
        assert server._runner is not None and [a[:2] for a in server._runner.addresses] == [("127.0.0.1", port)]
        url = f"http://127.0.0.1:{port}/h"
        headers = {SECRET_HEADER: SECRET}
        big = "x" * (2 * 1024 * 1024)  # over aiohttp's default 1 MB, under the server's 4 MB
        async with aiohttp.ClientSession() as http:
            for body in (update_of("hello", 7001), update_of(big, 7002)):
                async with http.post(url, json=body, headers=headers) as resp:
                    assert resp.status == 200
            async with http.post(url, json={"no": "update_id"}, headers=headers) as resp:
                assert resp.status == 200  # acknowledged, so Telegram does not redeliver it, and skipped
            async with http.post(url, json=update_of("forged", 7003)) as resp:
                assert resp.status == 403
        queued = [app.update_queue.get_nowait() for _ in range(app.update_queue.qsize())]
        assert [u.update_id for u in queued] == [7001, 7002]
        assert queued[0].message is not None and queued[0].message.text == "hello"
        assert queued[0].get_bot() is app.bot  # replies through the update reach the real bot
    finally:
        await server.stop()


async def test_the_webhook_server_refuses_bodies_over_4_mb_and_leaves_signals_and_logs_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: None)  # the bot's own graceful shutdown
    try:
        app = QueueOnly()
        port = free_port()
        server = WebhookServer(app, WebhookConfig(url="https://x.example/h", secret_token=SECRET, port=port, path="h"))  # type: ignore[arg-type]
        await server.start()
        url = f"http://127.0.0.1:{port}/h"
        with caplog.at_level(logging.DEBUG, logger="aiohttp.access"):
            async with aiohttp.ClientSession() as http:
                huge = update_of("x" * (4 * 1024 * 1024 + 1))
                async with http.post(url, json=huge, headers={SECRET_HEADER: SECRET}) as resp:
                    assert resp.status == 413
                async with http.post(url, json=update_of("after"), headers={SECRET_HEADER: SECRET}) as resp:
                    assert resp.status == 200
        await server.stop()
        queued = app.update_queue.get_nowait()  # only the update after the refused one
        assert queued.message is not None and queued.message.text == "after" and app.update_queue.empty()
        assert [r for r in caplog.records if r.name == "aiohttp.access"] == []  # no request lines in the log
    finally:
        assert loop.remove_signal_handler(signal.SIGTERM)  # neither replaced nor removed by the server
