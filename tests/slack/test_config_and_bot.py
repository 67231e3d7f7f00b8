"""The Slack bot kind: settings validation (errors name the key) and running it from a config."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bots import load_bot_class
from bots.slack import SlackBot, SlackSettings
from core import ConfigError, config_from_dict
from run_bot import plan
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.helpers import eventually

from .fake_slack import BOT_TOKEN, SIGNING_SECRET, TEAM, EventPoster, FakeSlack


def parse(**raw: Any) -> SlackSettings:
    return SlackBot.parse_settings("team", raw)  # type: ignore[return-value]


def test_the_kind_loads_and_defaults_to_socket_mode() -> None:
    assert load_bot_class("slack") is SlackBot and SlackBot.platform == "slack"
    settings = parse(bot_token="xoxb-1", app_token="xapp-1")
    assert settings.mode == "socket" and settings.base_url == "https://slack.com/api/" and settings.streaming


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"bot_token": "xoxb-1"}, "bots.team: app_token is required when mode is 'socket'"),
        ({"bot_token": "xoxb-1", "mode": "http"}, "bots.team: signing_secret is required when mode is 'http'"),
        ({"bot_token": "xoxp-1", "app_token": "xapp-1"}, "bots.team.bot_token: must be a bot token"),
        ({"bot_token": "xoxb-1", "app_token": "xoxb-2"}, "bots.team.app_token: must be an app-level token"),
        ({"bot_token": "xoxb-1", "app_token": "xapp-1", "path": "events"}, "bots.team.path: must start with '/'"),
        ({"bot_token": "xoxb-1", "app_token": "xapp-1", "tokn": "x"}, "bots.team.tokn: Extra inputs"),
        ({"bot_token": "xoxb-1", "app_token": "xapp-1", "mode": "webhook"}, "bots.team.mode"),
    ],
)
def test_bad_settings_name_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(**raw)
    assert message in str(info.value)


def test_secrets_are_not_printed() -> None:
    settings = parse(bot_token="xoxb-secret-value", app_token="xapp-secret-value")
    assert "secret-value" not in repr(settings) and "secret-value" not in str(settings.model_dump())


async def test_the_bot_runs_from_a_config_file_until_cancelled(
    tmp_path: Path, cli_env: dict[str, str], fake_api: FakeAnthropicAPI, slack: FakeSlack, unused_tcp_port: int
) -> None:
    config = config_from_dict(
        {
            "agent": {"env": cli_env},
            "workspace": {"base_dir": str(tmp_path / "ws")},
            "store": {"path": str(tmp_path / "db.sqlite")},
            "bots": {
                "team": {
                    "kind": "slack",
                    "mode": "http",
                    "bot_token": BOT_TOKEN,
                    "signing_secret": SIGNING_SECRET,
                    "host": "127.0.0.1",
                    "port": unused_tcp_port,
                    "base_url": slack.api_url,
                    "access": {"allowlist": ["slack:U1"]},
                }
            },
        }
    )
    [p] = plan(config, [])
    assert p.bot.describe() == f"team (slack, HTTP Events API on 127.0.0.1:{unused_tcp_port}/slack/events)"
    assert p.bot.warnings() == []
    await p.bot.agent.start()
    task = asyncio.create_task(p.bot.run())
    try:
        poster = EventPoster(f"http://127.0.0.1:{unused_tcp_port}/slack/events")

        async def delivered() -> bool:
            try:
                return (
                    await poster.event(
                        {
                            "type": "message",
                            "user": "U1",
                            "text": "ping",
                            "ts": "1.5",
                            "channel": "D0X",
                            "channel_type": "im",
                            "team": TEAM,
                        }
                    )
                )[0] == 200
            except OSError:  # not listening yet
                return False

        await eventually(delivered, what="the bot to listen")
        await eventually(lambda: any("echo: ping" in m.rendered() for m in slack.bot_messages()), what="the answer")
        assert slack.called("auth.test")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await p.bot.agent.close()


async def test_a_bad_bot_token_is_a_config_error(make_sections: Any, slack: FakeSlack) -> None:
    from adapters.slack import SlackBridge
    from bots.slack import conversation_key
    from core import Agent

    settings = parse(bot_token="xoxb-wrong", mode="http", signing_secret="s", base_url=slack.api_url)
    with pytest.raises(ConfigError) as info:
        await SlackBridge(Agent(make_sections()), settings, conversation_key).start()
    assert str(info.value) == "bot_token: Slack rejected the bot token (invalid_auth)"


def test_the_app_manifest_asks_for_what_the_bridge_uses() -> None:
    import yaml

    manifest = yaml.safe_load((Path(__file__).parents[2] / "adapters" / "slack" / "manifest.yaml").read_text())
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {
        "app_mentions:read",
        "chat:write",
        "im:history",
        "channels:history",
        "reactions:write",
        "files:read",
        "files:write",
        "commands",
    } <= scopes
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert {"app_mention", "message.im", "message.channels", "message.groups"} <= events
    assert manifest["settings"]["interactivity"]["is_enabled"] and manifest["settings"]["socket_mode_enabled"]
    assert manifest["features"]["app_home"]["messages_tab_enabled"]  # people can DM the bot
