"""Webhook mode: PTB's webhook server with a secret token, fed by real HTTP POSTs."""

from __future__ import annotations

import socket

import aiohttp
import pytest

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
