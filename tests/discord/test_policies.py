"""The Discord adapter's pure parts: settings, routing policy, error mapping, command comparison, buttons."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import discord
import pytest

from adapters.discord import DiscordPlace, discord_len
from adapters.discord.approvals import TEMPLATE, custom_id, parse
from adapters.discord.commands import argument_of, command_shape, same_commands
from adapters.discord.errors import gateway_error, to_sink_error
from adapters.discord.places import strip_mentions, thread_name
from adapters.discord.ratelimits import RateLimitSurfaced
from bots import load_bot_class
from bots.discord import DiscordBot, conversation_key
from core import ConfigError, ConversationKey, Decision, MessageGone, PlatformUnavailable, RateLimited, SinkError
from core.commands import COMMANDS, Command, parse_command


def place(**fields: Any) -> DiscordPlace:
    base: dict[str, Any] = {
        "direct": False,
        "user_id": "7",
        "guild_id": "100",
        "channel_id": "200",
        "message_id": "300",
        "mentioned": False,
    }
    base.update(fields)
    return DiscordPlace(**base)


# -- settings ----------------------------------------------------------------------


def test_the_kind_loads_and_settings_name_the_key() -> None:
    assert load_bot_class("discord") is DiscordBot
    settings = DiscordBot.parse_settings("team", {"token": "  Bot abc.def.ghi  ", "guilds": ["123"]})
    assert settings.token.get_secret_value() == "abc.def.ghi" and settings.guilds == [123]
    with pytest.raises(ConfigError) as empty:
        DiscordBot.parse_settings("team", {"token": ""})
    assert str(empty.value).startswith("bots.team.token")
    with pytest.raises(ConfigError) as unknown:
        DiscordBot.parse_settings("team", {"token": "x", "max_message_chars": 4000})
    assert "bots.team.max_message_chars" in str(unknown.value)


# -- who is answered where ----------------------------------------------------------


def test_dms_are_one_session_per_user() -> None:
    dm = place(direct=True, guild_id=None, mentioned=True)
    assert conversation_key(dm) == ConversationKey("discord", "7")
    assert conversation_key(dm, dms=False) is None


def test_server_messages_open_or_continue_a_thread() -> None:
    assert conversation_key(place()) is None  # chatter
    assert conversation_key(place(mentioned=True)) == ConversationKey("discord", "guild100", "300")
    replied = place(mentioned=True, reply_to_bot=True, reference_id="250")
    assert conversation_key(replied) == ConversationKey("discord", "guild100", "250")  # the bot message's thread
    in_thread = place(thread_id="400", channel_id="400", parent_id="200")
    assert conversation_key(in_thread) == ConversationKey("discord", "guild100", "400")  # the dispatcher decides


def test_servers_and_channels_can_be_restricted() -> None:
    mention = place(mentioned=True)
    assert conversation_key(mention, guilds=frozenset({"999"})) is None
    assert conversation_key(mention, channels=frozenset({"999"})) is None
    assert conversation_key(mention, channels=frozenset({"200"})) is not None
    thread = place(thread_id="400", channel_id="400", parent_id="200")
    assert conversation_key(thread, channels=frozenset({"200"})) is not None  # a thread counts as its channel


def test_text_without_the_bot_and_bang_commands() -> None:
    assert strip_mentions("<@42> hello <@!42>", 42) == "hello"
    assert strip_mentions("<@&5> hi", 42, bot_role=5) == "hi"
    assert parse_command("!status") == Command("status", "") and parse_command("!nope") is None
    assert thread_name("<@42>   fix the   build") == "fix the build"
    assert thread_name("") == "Claude Code"
    assert len(thread_name("x" * 300)) <= 100


# -- errors ------------------------------------------------------------------------


def http_error(status: int, code: int, cls: type[discord.HTTPException] = discord.HTTPException) -> Exception:
    response = SimpleNamespace(status=status, reason="x", headers={"Retry-After": "3"})
    return cls(response, {"code": code, "message": "m"})  # type: ignore[arg-type]


def test_discord_failures_become_the_cores_errors() -> None:
    assert isinstance(to_sink_error(RateLimitSurfaced(2.5), "edit"), RateLimited)
    assert to_sink_error(RateLimitSurfaced(2.5), "edit").retry_after == 2.5  # type: ignore[attr-defined]
    assert isinstance(to_sink_error(discord.RateLimited(40.0), "edit"), RateLimited)
    assert isinstance(to_sink_error(http_error(404, 10008, discord.NotFound), "edit"), MessageGone)
    assert isinstance(to_sink_error(http_error(400, 30046), "edit"), MessageGone)  # too old to edit
    cloudflare = to_sink_error(http_error(429, 0), "edit")
    assert isinstance(cloudflare, RateLimited) and cloudflare.retry_after >= 3
    other = to_sink_error(http_error(400, 50035), "send")
    assert type(other) is SinkError and other.code == 50035


def test_gateway_failures_name_what_to_fix() -> None:
    intents = gateway_error(discord.PrivilegedIntentsRequired(None), token_key="t", intent_key="bots.d.message_content")
    assert isinstance(intents, ConfigError) and str(intents).startswith("bots.d.message_content:")
    assert isinstance(gateway_error(discord.LoginFailure(), token_key="bots.d.token", intent_key="i"), ConfigError)
    assert isinstance(gateway_error(OSError("down"), token_key="t", intent_key="i"), PlatformUnavailable)


# -- slash commands and buttons ------------------------------------------------------


def test_core_commands_get_their_option_from_the_usage() -> None:
    assert argument_of(COMMANDS["new"]) is None
    cwd = argument_of(COMMANDS["cwd"])
    assert cwd is not None and (cwd.name, cwd.required) == ("subdir", False)
    allow = argument_of(COMMANDS["allow"])
    assert allow is not None and (allow.name, allow.required) == ("user", True)


def test_registered_commands_compare_without_ids_and_defaults() -> None:
    mine = [
        {
            "name": "claude",
            "type": 1,
            "description": "Ask",
            "options": [{"name": "prompt", "type": 3, "description": "p", "required": True}],
            "nsfw": False,
            "dm_permission": True,
            "default_member_permissions": None,
            "contexts": [0, 1],
            "integration_types": [0],
        }
    ]
    registered = [{**mine[0], "id": "1", "version": "2", "application_id": "3", "dm_permission": None}]
    assert same_commands(mine, registered, guild=False)
    changed = [{**registered[0], "description": "Ask Claude"}]
    assert not same_commands(mine, changed, guild=False)
    assert not same_commands(mine, [], guild=False)
    guild_copy = [{**registered[0], "contexts": None, "guild_id": "9"}]
    assert same_commands(mine, guild_copy, guild=True)  # contexts only apply to global commands
    assert command_shape(mine[0]) != command_shape({**mine[0], "options": []})


def test_button_ids_carry_the_request_and_the_decision() -> None:
    for decision in Decision:
        cid = custom_id("Ab-_12xyZ9qq", decision)
        assert len(cid) <= 100 and TEMPLATE.fullmatch(cid)
        assert parse(cid) == ("Ab-_12xyZ9qq", decision)
    assert parse("ccb:ap:x:q") is None and parse("something else") is None


def test_length_is_counted_as_strictly_as_discord_could() -> None:
    assert discord_len("abc") == 3
    assert discord_len("😀") == 2  # UTF-16 units
