"""The Slack bot kind: settings validation (errors name the key) and running it from a config."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from bots import load_bot_class
from bots.slack import SlackBot, SlackSettings
from core import ConfigError, config_from_dict, load_config
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
        # blank = not set (``${SLACK_APP_TOKEN:-}`` with the variable unset): the mode says what is missing
        ({"bot_token": "xoxb-1", "app_token": ""}, "bots.team: app_token is required when mode is 'socket'"),
        (
            {"bot_token": "xoxb-1", "app_token": "xapp-1", "signing_secret": " ", "mode": "http"},
            "signing_secret is required",
        ),
        ({"bot_token": "", "app_token": "xapp-1"}, "bots.team.bot_token: is empty"),
    ],
)
def test_bad_settings_name_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(**raw)
    assert message in str(info.value)


def test_blank_optional_settings_mean_not_set() -> None:
    http = parse(bot_token="xoxb-1", mode="http", signing_secret="s", app_token="", slash_command="")
    assert http.app_token is None and http.slash_command is None
    socket = parse(bot_token="xoxb-1", app_token="xapp-1", signing_secret="")
    assert socket.signing_secret is None and socket.app_token is not None


EXAMPLE = Path(__file__).parents[2] / "config.yaml.example"


def example_config(tmp_path: Path, *, http: bool) -> Path:
    """The repository's config.yaml.example, switched to ``mode: http`` as the README says to."""
    text = EXAMPLE.read_text(encoding="utf-8")
    if http:
        text, switched = re.subn(r"^(\s+mode:) socket\b", r"\1 http", text, flags=re.M)
        assert switched == 1  # the signing secret comes from SLACK_SIGNING_SECRET, as the README says
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_config_starts_the_slack_bot_in_http_mode_without_an_app_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-env")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret-from-env")
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    [p] = plan(load_config(example_config(tmp_path, http=True)), ["slack"])
    settings = p.bot.settings
    assert isinstance(settings, SlackSettings) and settings.mode == "http" and settings.app_token is None
    assert settings.signing_secret is not None and settings.signing_secret.get_secret_value() == "secret-from-env"
    assert p.bot.describe() == "slack (slack, HTTP Events API on 0.0.0.0:3000/slack/events)"


def test_the_example_config_in_socket_mode_needs_only_the_two_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-env")
    monkeypatch.delenv("SLACK_SIGNING_SECRET", raising=False)
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    with pytest.raises(ConfigError) as info:  # the app token is what socket mode lacks, and the error says so
        plan(load_config(example_config(tmp_path, http=False)), ["slack"])
    assert "bots.slack: app_token is required when mode is 'socket'" in str(info.value)

    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-from-env")
    [p] = plan(load_config(example_config(tmp_path, http=False)), ["slack"])
    settings = p.bot.settings
    assert isinstance(settings, SlackSettings) and settings.mode == "socket" and settings.signing_secret is None
    assert settings.app_token is not None and settings.app_token.get_secret_value() == "xapp-from-env"
    assert p.bot.describe() == "slack (slack, Socket Mode)"


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
    from bots.slack import SlackBot
    from core import Agent

    settings = parse(bot_token="xoxb-wrong", mode="http", signing_secret="s", base_url=slack.api_url)
    with pytest.raises(ConfigError) as info:
        await SlackBot("team", Agent(make_sections()), settings).adapter.start()
    assert str(info.value) == "bots.team.bot_token: Slack rejected the bot token (invalid_auth)"


# The bot scope each Web API method the adapter calls needs (auth.test needs none).
METHOD_SCOPES = {
    "auth_test": None,
    "apps_connections_open": None,  # the app-level token's connections:write, not a bot scope
    "chat_postMessage": "chat:write",
    "chat_update": "chat:write",
    "chat_postEphemeral": "chat:write",
    "chat_startStream": "chat:write",
    "chat_appendStream": "chat:write",
    "chat_stopStream": "chat:write",
    "reactions_add": "reactions:write",
    "reactions_remove": "reactions:write",
    # chat:write is enough since Slack's 2026-03 scope update (no assistant:write, no split view).
    "assistant_threads_setStatus": "chat:write",
    "users_info": "users:read",
    "files_info": "files:read",
    "files_upload_v2": "files:write",
    "conversations_open": "im:write",
}


def test_the_app_manifest_asks_for_what_the_bridge_uses() -> None:
    import yaml

    root = Path(__file__).parents[2]
    manifest = yaml.safe_load((root / "adapters" / "slack" / "manifest.yaml").read_text())
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    source = "\n".join(p.read_text() for p in sorted((root / "adapters" / "slack").glob("*.py")))
    called = set(re.findall(r"\bclient\.([A-Za-z0-9_]+)", source))
    assert called - set(METHOD_SCOPES) == set(), "a Web API method without a known scope: add it to METHOD_SCOPES"
    assert {"chat_startStream", "assistant_threads_setStatus", "conversations_open", "files_upload_v2"} <= called
    needed = {METHOD_SCOPES[m] for m in called} - {None}
    assert needed <= scopes, f"missing scopes: {needed - scopes}"
    # events, the downloads of shared files (url_private) and the slash command
    assert {"app_mentions:read", "im:history", "channels:history", "groups:history", "files:read", "commands"} <= scopes
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert {"app_mention", "message.im", "message.channels", "message.groups"} <= events
    assert manifest["settings"]["interactivity"]["is_enabled"] and manifest["settings"]["socket_mode_enabled"]
    assert manifest["features"]["app_home"]["messages_tab_enabled"]  # people can DM the bot
    assert "assistant_view" not in manifest["features"]  # it would turn the bot's DMs into agent threads
    assert manifest["features"]["slash_commands"][0]["command"] == "/claude"
