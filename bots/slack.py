"""The Slack workspace bot: Claude Code in DMs and channel threads.

* DMs: one session per user. Channels: mention the bot and it answers in a
  thread; the thread is one session, followed without further mentions.
* Replies stream natively in threads (``chat.startStream``), else by edits.
* Tool approvals as buttons (the requester or an admin), files both ways,
  the core commands as ``/new`` after a mention, ``!new``, or a slash command.
* Socket Mode by default (no public URL); ``mode: http`` serves the Events API.
"""

from __future__ import annotations

from adapters.slack import SlackAdapter, SlackConfig, SlackPlace
from adapters.slack.events import PLATFORM
from core import ConversationKey

from .base import BotSettings, ChatBot


def conversation_key(place: SlackPlace) -> ConversationKey | None:
    """The conversation a message belongs to, or None when the bot should not answer it.

    A DM is one conversation per user. In a channel, a message mentioning the bot
    opens (or continues) the conversation of its thread; a thread message without a
    mention is passed on too (the dispatcher answers it only if that thread's
    conversation exists); top-level chatter is ignored.
    """
    if place.direct:
        return ConversationKey(PLATFORM, place.user_id)
    if not place.mentioned and place.thread_ts is None:
        return None
    return ConversationKey(PLATFORM, place.channel, place.thread_ts or place.ts)


class SlackSettings(SlackConfig, BotSettings):
    """``bots.<name>:`` keys of a ``kind: slack`` bot (see adapters/slack/config.py)."""


class SlackBot(ChatBot):
    kind = "slack"
    platform = PLATFORM
    Settings = SlackSettings
    Adapter = SlackAdapter
    settings: SlackSettings
    adapter: SlackAdapter

    def route(self, place: SlackPlace) -> ConversationKey | None:
        return conversation_key(place)

    def legacy_upload_limit_mb(self) -> float | None:
        return self.settings.max_file_mb

    def describe(self) -> str:
        s = self.settings
        where = "Socket Mode" if s.mode == "socket" else f"HTTP Events API on {s.host}:{s.port}{s.path}"
        return f"{self.name} (slack, {where})"


BOT = SlackBot
