"""The Telegram bot's configuration: validation naming the key, self-hosted servers, per-bot overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import run_bot
from bots import load_bot_class
from bots.telegram import TelegramBot
from core import Agent, ConfigError, config_from_dict

from .conftest import bot_settings
from .fake_bot_api import FakeBotAPI

TOKEN = "123456:ABCdefGHIjklMNOpqrSTUvwxYZ012345"


def parse(raw: dict[str, Any]) -> Any:
    return load_bot_class("telegram").parse_settings("tg", raw)


def test_the_kind_is_registered() -> None:
    bot = load_bot_class("telegram")
    assert bot is TelegramBot and (bot.kind, bot.platform) == ("telegram", "telegram")


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({}, "bots.tg.token"),
        ({"token": "not-a-token"}, "bots.tg.token"),
        ({"token": TOKEN, "mode": "webhook"}, "bots.tg"),
        (
            {
                "token": TOKEN,
                "mode": "webhook",
                "webhook": {"url": "https://x.example/t", "secret_token": "has spaces"},
            },
            "bots.tg.webhook.secret_token",
        ),
        ({"token": TOKEN, "webhook": {"url": "x.example/t", "secret_token": "ok"}}, "bots.tg.webhook.url"),
        ({"token": TOKEN, "webhook": {"url": "http://x.example/t", "secret_token": "ok"}}, "bots.tg.webhook.url"),
        ({"token": TOKEN, "webhook": {"url": "https:///no-host", "secret_token": "ok"}}, "bots.tg.webhook.url"),
        ({"token": TOKEN, "album_window": -1}, "bots.tg.album_window"),
        ({"token": TOKEN, "tokn": TOKEN}, "bots.tg.tokn"),
        ({"token": TOKEN, "max_message_len": 5000}, "bots.tg.max_message_len"),
        ({"token": TOKEN, "mode": "smoke-signals"}, "bots.tg.mode"),
    ],
)
def test_bad_settings_are_errors_naming_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(raw)
    assert key in str(info.value)


@pytest.mark.parametrize(
    "url", ["https://bot.example.com/hook", "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]/h"]
)
def test_webhook_urls_are_https_or_loopback_http(url: str) -> None:
    settings = parse({"token": TOKEN, "mode": "webhook", "webhook": {"url": url, "secret_token": "ok"}})
    assert settings.webhook.url == url


def test_the_token_is_kept_secret() -> None:
    settings = parse({"token": TOKEN})
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())


def test_a_self_hosted_bot_api_server_and_per_bot_overrides(tmp_path: Path) -> None:
    config = config_from_dict(
        {
            "access": {"allowlist": ["telegram:1"]},
            "bots": {
                "team": {
                    "kind": "telegram",
                    "token": TOKEN,
                    "base_url": "http://localhost:8081/bot",
                    "base_file_url": "http://localhost:8081/file/bot",
                    "local_mode": True,
                    "agent": {"model": "claude-test-model", "system_prompt": "Be brief."},
                    "access": {"allowlist": ["telegram:42"], "admins": ["telegram:7"]},
                    "workspace": {"base_dir": str(tmp_path / "team-workspaces")},
                }
            },
        }
    )
    [plan] = run_bot.plan(config, ["team"])
    bot = plan.bot
    assert isinstance(bot, TelegramBot)
    ptb = bot.adapter.application.bot
    assert ptb.base_url == f"http://localhost:8081/bot{TOKEN}"
    assert ptb.base_file_url == f"http://localhost:8081/file/bot{TOKEN}"
    assert ptb.local_mode
    sections = bot.agent.sections
    assert sections.agent.model == "claude-test-model" and sections.agent.system_prompt == "Be brief."
    assert sections.access.allowlist == ["telegram:42"] and sections.access.admins == ["telegram:7"]
    assert sections.workspace.base_dir == tmp_path / "team-workspaces"
    assert "localhost:8081" in bot.describe() and "long polling" in bot.describe()
    assert not bot.warnings()


def test_nobody_allowed_is_a_startup_warning() -> None:
    config = config_from_dict({"bots": {"tg": {"kind": "telegram", "token": TOKEN}}})
    [plan] = run_bot.plan(config, ["tg"])
    assert any("nobody may use" in w for w in plan.bot.warnings())


async def test_a_rejected_token_is_a_config_error_naming_the_key(bot_api: FakeBotAPI, make_sections) -> None:
    settings = bot_settings(bot_api, token="111111:" + "x" * 30)  # the fake knows only its own token
    async with Agent(make_sections()) as agent:
        bot = TelegramBot("tg", agent, settings)
        with pytest.raises(ConfigError) as info:
            await bot.adapter.start()
    assert "bots.tg.token" in str(info.value) and "x" * 30 not in str(info.value)
