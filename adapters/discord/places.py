"""Messages and interactions -> who is talking, where, and whether the bot is addressed.

The bot's routing policy (``bots/discord.py``) sees a :class:`DiscordPlace` and
picks the conversation. This module only reads discord.py's objects: it never
decides whether a message is answered.

* Addressed: a DM; a message mentioning the bot (``<@bot>`` or the bot's own role;
  ``@everyone`` / ``@here`` never count); a reply to one of the bot's messages; a
  slash command.
* Text: the bot's mention removed; ``!new``-style commands read as ``/new``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import discord

from core import ConversationKey, UserRef

PLATFORM = "discord"
THREAD_NAME_LIMIT = 90  # Discord allows 100
_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


@dataclass(frozen=True)
class DiscordPlace:
    """Where a message was written (or a slash command run), as a bot's routing policy sees it."""

    direct: bool  # a DM with the bot
    user_id: str
    guild_id: str | None
    channel_id: str  # the channel it was written in (a thread's own id inside a thread)
    message_id: str  # the message (a slash command: the interaction)
    mentioned: bool  # addressed to the bot: a DM, a mention of it, a slash command
    thread_id: str | None = None  # the thread it was written in (a forum post is a thread)
    parent_id: str | None = None  # a thread's channel (a text or forum channel)
    reply_to_bot: bool = False  # a reply to one of the bot's messages
    reference_id: str | None = None  # the message it replies to
    replied_reference_id: str | None = None  # the message that one replies to itself
    forum: bool = False  # written in a forum post
    roles: frozenset[str] = field(default_factory=frozenset)  # the author's role ids (servers)

    @property
    def anchor(self) -> str:
        """The message a conversation opened here starts at: this one; for a reply to the bot, the bot's
        message, or the message that one answers (the bot answers a conversation's first message where it
        could open no thread from it)."""
        if self.reply_to_bot and self.reference_id:
            return self.replied_reference_id or self.reference_id
        return self.message_id


Router = Callable[[DiscordPlace], ConversationKey | None]


def roles_of(user: discord.abc.User | discord.Member) -> frozenset[str]:
    """A server member's role ids (``@everyone`` included: its id is the server's); none outside a server."""
    if isinstance(user, discord.Member):
        return frozenset(str(r.id) for r in user.roles)
    return frozenset()


def user_ref(user: discord.abc.User | discord.Member, roles: frozenset[str] | None = None) -> UserRef:
    return UserRef(str(user.id), user.display_name, roles_of(user) if roles is None else roles)


def _bot_role(guild: discord.Guild | None) -> int | None:
    if guild is None:
        return None
    role = guild.self_role
    return role.id if role is not None else None


def mentions_bot(message: discord.Message, bot_id: int) -> bool:
    """``<@bot>`` (or a reply that pings the bot) or the bot's own role; not @everyone / @here."""
    if any(u.id == bot_id for u in message.mentions):
        return True
    role = _bot_role(message.guild)
    return role is not None and role in message.raw_role_mentions


def replied_message(message: discord.Message) -> discord.Message | None:
    ref = message.reference
    if ref is None:
        return None
    resolved = ref.resolved if isinstance(ref.resolved, discord.Message) else None
    return resolved or ref.cached_message


def thread_of(channel: Any) -> discord.Thread | None:
    return channel if isinstance(channel, discord.Thread) else None


def _reference_id(message: discord.Message | None) -> str | None:
    ref = message.reference if message is not None else None
    return str(ref.message_id) if ref is not None and ref.message_id else None


def message_place(message: discord.Message, bot_id: int) -> DiscordPlace:
    direct = message.guild is None
    thread = thread_of(message.channel)
    replied = replied_message(message)
    reference_id = message.reference.message_id if message.reference is not None else None
    return DiscordPlace(
        direct=direct,
        user_id=str(message.author.id),
        guild_id=str(message.guild.id) if message.guild is not None else None,
        channel_id=str(message.channel.id),
        message_id=str(message.id),
        mentioned=direct or mentions_bot(message, bot_id),
        thread_id=str(thread.id) if thread is not None else None,
        parent_id=str(thread.parent_id) if thread is not None and thread.parent_id else None,
        reply_to_bot=replied is not None and replied.author.id == bot_id,
        reference_id=str(reference_id) if reference_id else None,
        replied_reference_id=_reference_id(replied),
        forum=thread is not None and isinstance(thread.parent, discord.ForumChannel),
        roles=roles_of(message.author),
    )


def interaction_place(interaction: discord.Interaction[Any]) -> DiscordPlace:
    thread = thread_of(interaction.channel)
    direct = interaction.guild_id is None
    return DiscordPlace(
        direct=direct,
        user_id=str(interaction.user.id),
        guild_id=str(interaction.guild_id) if interaction.guild_id is not None else None,
        channel_id=str(interaction.channel_id),
        message_id=str(interaction.id),
        mentioned=True,
        thread_id=str(thread.id) if thread is not None else None,
        parent_id=str(thread.parent_id) if thread is not None and thread.parent_id else None,
        forum=thread is not None and isinstance(thread.parent, discord.ForumChannel),
        roles=roles_of(interaction.user),
    )


def strip_mentions(text: str, bot_id: int, bot_role: int | None = None) -> str:
    text = re.sub(rf"<@!?{bot_id}>", " ", text)
    if bot_role is not None:
        text = re.sub(rf"<@&{bot_role}>", " ", text)
    return text.strip()


def message_text(message: discord.Message, bot_id: int) -> str:
    return strip_mentions(message.content or "", bot_id, _bot_role(message.guild))


def other_mentions(message: discord.Message, bot_id: int) -> tuple[list[str], list[str]]:
    """The users and roles a message mentions, the bot (and its role) left out (for ``/allow @someone``)."""
    role = _bot_role(message.guild)
    users = [str(u.id) for u in message.mentions if u.id != bot_id]
    roles = [str(r) for r in message.raw_role_mentions if r != role]
    return list(dict.fromkeys(users)), list(dict.fromkeys(roles))


def mentions_in(text: str, bot_id: int) -> tuple[list[str], list[str]]:
    """``<@id>`` / ``<@&id>`` in a slash command's text (Discord puts them there when you pick someone)."""
    users = [u for u in _USER_MENTION.findall(text) if u != str(bot_id)]
    return list(dict.fromkeys(users)), list(dict.fromkeys(_ROLE_MENTION.findall(text)))


def thread_name(text: str, fallback: str = "Claude Code") -> str:
    """A thread's name from the words that opened it (Discord allows 1-100 characters)."""
    words = " ".join(_USER_MENTION.sub("", _ROLE_MENTION.sub("", text)).split())
    words = words.lstrip("/!") if words.startswith(("/", "!")) else words
    if not words:
        return fallback
    return words if len(words) <= THREAD_NAME_LIMIT else words[: THREAD_NAME_LIMIT - 1].rstrip() + "…"
