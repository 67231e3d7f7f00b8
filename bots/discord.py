"""The Discord server bot: Claude Code in DMs, server threads and forum posts.

Policies:

* DMs: every message is for the bot; one session per user (``discord:<user id>``,
  workspace ``discord/<user id>``). ``dms: false`` turns DMs off.
* Servers: a message that mentions the bot (not ``@everyone``), or replies to one of
  its messages, opens a thread from it and is answered there; the thread is one
  session (``discord:guild<server id>:<thread id>``; the server's threads share its
  workspace ``discord/guild<server id>``), followed without further mentions. A
  forum post is a thread like any other. Other channel chatter is never forwarded.
  ``guilds`` / ``channels`` restrict the bot to some servers / channels (a thread
  counts as its channel).
* Projects (``projects.*.places``): a server thread's place is its channel
  (``discord:channel/<channel id>``, a thread's parent: a text or forum channel)
  and its server (``discord:guild/<server id>``), the channel first; a DM's is
  the user (``discord:<user id>``).
* Access: ``access.allowlist`` entries ``discord:<user id>`` and
  ``discord:role:<role id>`` (members holding the role; in DMs, roles in the
  servers the bot shares with them); admins likewise.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from adapters.discord import PLATFORM, DiscordAdapter, DiscordConfig, DiscordPlace
from core import Agent, ConversationKey

from .base import BotSettings, ChatBot

_PLACE = re.compile(r"(?:guild/|channel/)?[0-9]+")  # Discord ids are numbers (snowflakes)
CHANNELS_KEPT = 10_000  # conversations whose channel is remembered (every message routed tells it again)


class DiscordSettings(DiscordConfig, BotSettings):
    """``bots.<name>:`` keys of a ``kind: discord`` bot (see adapters/discord/config.py)."""


def discord_places(key: ConversationKey, channel: str | None = None) -> list[str]:
    """The names a conversation's place goes by in ``projects.*.places``, the most specific first.

    A server thread (owner ``guild<server id>``): ``discord:channel/<channel>`` (the channel the
    thread is in; when unknown, the thread's own id, itself a channel) and ``discord:guild/<server>``.
    A DM: ``discord:<user id>``.
    """
    if not key.owner.startswith("guild"):
        return [key.place]
    channel = channel or key.thread
    return ([f"{PLATFORM}:channel/{channel}"] if channel else []) + [f"{PLATFORM}:guild/{key.owner[5:]}"]


def conversation_key(
    place: DiscordPlace,
    *,
    dms: bool = True,
    guilds: frozenset[str] = frozenset(),
    channels: frozenset[str] = frozenset(),
) -> ConversationKey | None:
    """The conversation a message belongs to, or None when the bot should not answer it.

    A thread message without a mention is passed on too: the dispatcher answers it only
    when that thread is a conversation already (the bot was mentioned there, or opened it).
    """
    if place.direct:
        return ConversationKey(PLATFORM, place.user_id) if dms else None
    if guilds and place.guild_id not in guilds:
        return None
    if channels and not ({place.channel_id, place.parent_id} & channels):
        return None
    owner = f"guild{place.guild_id}"
    if place.thread_id is not None:
        return ConversationKey(PLATFORM, owner, place.thread_id)
    if place.mentioned or place.reply_to_bot:
        return ConversationKey(PLATFORM, owner, place.anchor)  # the thread opened from it has the anchor's id
    return None


class DiscordBot(ChatBot):
    kind = "discord"
    platform = PLATFORM
    Settings = DiscordSettings
    Adapter = DiscordAdapter
    settings: DiscordSettings
    adapter: DiscordAdapter

    @classmethod
    def place_problem(cls, where: str) -> str | None:
        if _PLACE.fullmatch(where):
            return None
        return (
            "is not a Discord place: write discord:guild/<server id>, "
            "discord:channel/<channel id> or discord:<user id> (their DMs), with numeric ids"
        )

    def __init__(self, name: str, agent: Agent, settings: BotSettings) -> None:
        # (owner, thread) -> the channel the conversation's thread is in: the key does not carry it
        self._channels: OrderedDict[tuple[str, str | None], str] = OrderedDict()
        super().__init__(name, agent, settings)

    def route(self, place: DiscordPlace) -> ConversationKey | None:
        s = self.settings
        key = conversation_key(
            place,
            dms=s.dms,
            guilds=frozenset(str(g) for g in s.guilds),
            channels=frozenset(str(c) for c in s.channels),
        )
        if key is not None and not place.direct:
            channel = place.parent_id if place.thread_id is not None else place.channel_id
            if channel:
                self._channels[(key.owner, key.thread)] = channel
                self._channels.move_to_end((key.owner, key.thread))
                while len(self._channels) > CHANNELS_KEPT:
                    self._channels.popitem(last=False)
        return key

    def places(self, key: ConversationKey) -> list[str]:
        return discord_places(key, self._channels.get((key.owner, key.thread)))

    def describe(self) -> str:
        s = self.settings
        where = f"{len(s.guilds)} server(s)" if s.guilds else "every server it is in"
        content = "message content intent" if s.message_content else "no message content intent"
        return f"{self.name} (discord, gateway; {where}; {content})"

    def warnings(self) -> list[str]:
        out = super().warnings()
        if not self.settings.message_content:
            out.append(
                f"bots.{self.name}.message_content is false: in server threads the bot only reads messages that "
                "mention it (DMs and mentions work as usual)."
            )
        return out


BOT = DiscordBot
