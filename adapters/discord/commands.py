"""Slash commands: ``/claude <prompt>`` and the core commands, synced only when they changed.

Discord caps how many commands an application may create per day, so the tree
is not synced on every start: the commands registered now are fetched
(``GET .../commands``, not capped) and compared with the bot's own, field by
field (:func:`same_commands`: names, descriptions, options, permissions,
contexts; ids and versions ignored). Only a difference makes one bulk
overwrite (``PUT``). Commands are global by default; ``command_guilds`` puts
them in those servers instead (they show up at once there), and removes the
bot's global ones.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import discord
from discord import app_commands

from core.commands import COMMANDS, CommandSpec

from .errors import NETWORK_ERRORS

log = logging.getLogger(__name__)

CLAUDE = "claude"
Handler = Callable[[discord.Interaction[Any], str, str], Awaitable[None]]
_ARGUMENT = re.compile(r"^/\S+\s+([\[<])([^\]>|]+)")
_OPTION_NAME = re.compile(r"[^-_a-z0-9]")


@dataclass(frozen=True)
class Argument:
    name: str
    required: bool


def argument_of(spec: CommandSpec) -> Argument | None:
    """The option a core command takes, read from its usage (``/cwd [subdir]`` -> optional ``subdir``)."""
    m = _ARGUMENT.match(spec.usage)
    if m is None:
        return None
    name = _OPTION_NAME.sub("", m.group(2).strip().lower())[:32] or "args"
    return Argument(name, required=m.group(1) == "<")


def _clip(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build(handler: Handler) -> list[app_commands.Command[Any, ..., Any]]:
    """The slash commands; each calls ``handler(interaction, command name, its text)``."""

    async def claude(interaction: discord.Interaction[Any], prompt: str) -> None:
        await handler(interaction, CLAUDE, prompt)

    claude = app_commands.describe(prompt="What to ask or do (in a channel, I answer in a new thread)")(claude)
    commands = [
        app_commands.Command(name=CLAUDE, description="Ask Claude Code (in a channel: opens a thread)", callback=claude)
    ]
    commands += [_core(spec, handler) for spec in COMMANDS.values()]
    return commands


def _core(spec: CommandSpec, handler: Handler) -> app_commands.Command[Any, ..., Any]:
    arg = argument_of(spec)
    name = spec.name
    callback: Any
    if arg is None:

        async def plain(interaction: discord.Interaction[Any]) -> None:
            await handler(interaction, name, "")

        callback = plain
    elif arg.required:

        async def required(interaction: discord.Interaction[Any], value: str) -> None:
            await handler(interaction, name, value)

        callback = required
    else:

        async def optional(interaction: discord.Interaction[Any], value: str | None = None) -> None:
            await handler(interaction, name, value or "")

        callback = optional
    if arg is not None:
        callback = app_commands.rename(value=arg.name)(callback)
        callback = app_commands.describe(value=_clip(spec.usage))(callback)
    return app_commands.Command(name=name, description=_clip(spec.help), callback=callback)


# -- comparing what is registered with what the bot has ----------------------------------


def _option_shape(option: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": int(option.get("type") or 3),
        "name": option.get("name"),
        "description": option.get("description") or "",
        "required": bool(option.get("required", False)),
        "autocomplete": bool(option.get("autocomplete", False)),
        "choices": sorted(json.dumps(c, sort_keys=True) for c in option.get("choices") or []),
        "channel_types": sorted(option.get("channel_types") or []),
        **{k: option.get(k) for k in ("min_value", "max_value", "min_length", "max_length")},
        "options": [_option_shape(o) for o in option.get("options") or []],
    }


def command_shape(command: dict[str, Any], *, guild: bool = False) -> str:
    """What makes two definitions of a command the same (ids, versions, key order ignored)."""
    permissions = command.get("default_member_permissions")
    shape: dict[str, Any] = {
        "name": command.get("name"),
        "type": int(command.get("type") or 1),
        "description": command.get("description") or "",
        "options": [_option_shape(o) for o in command.get("options") or []],
        "default_member_permissions": None if permissions is None else str(permissions),
        "nsfw": bool(command.get("nsfw", False)),
    }
    if not guild:  # contexts and installs only apply to global commands
        contexts = command.get("contexts")
        shape["contexts"] = None if contexts is None else sorted(contexts)
        shape["integration_types"] = sorted(command.get("integration_types") or [0])
    return json.dumps(shape, sort_keys=True)


def same_commands(mine: Iterable[dict[str, Any]], registered: Iterable[dict[str, Any]], *, guild: bool) -> bool:
    return sorted(command_shape(c, guild=guild) for c in mine) == sorted(
        command_shape(c, guild=guild) for c in registered
    )


async def sync_if_changed(client: discord.Client, tree: app_commands.CommandTree[Any], guild_ids: list[int]) -> int:
    """Bring the registered commands up to date where they differ; returns how many scopes were synced."""
    app_id = client.application_id
    if app_id is None:
        log.warning("Discord: no application id; slash commands not synced")
        return 0
    scopes: list[discord.Object | None] = [discord.Object(g) for g in guild_ids] + [None]
    synced = 0
    for scope in scopes:
        where = "globally" if scope is None else f"in server {scope.id}"
        mine = [c.to_dict(tree) for c in tree.get_commands(guild=scope)]
        try:
            if scope is None:
                registered = await client.http.get_global_commands(app_id)
            else:
                registered = await client.http.get_guild_commands(app_id, scope.id)
            if same_commands(mine, registered, guild=scope is not None):
                log.info("Discord: slash commands %s are up to date (%d)", where, len(mine))
                continue
            await tree.sync(guild=scope)
            synced += 1
            log.info("Discord: synced %d slash commands %s", len(mine), where)
        except (discord.DiscordException, *NETWORK_ERRORS) as exc:
            log.warning("Discord: could not sync the slash commands %s: %s", where, exc)
    return synced
