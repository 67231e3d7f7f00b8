"""The "Telegram chat" bot: Claude Code in Telegram private chats, groups and forum topics.

Policies:

* Private chat: every message is for the bot; one session per user
  (``telegram:<user id>``, workspace ``telegram/<user id>``).
* Groups and supergroups: the bot answers when @mentioned, replied to, or sent
  one of its commands; everything else is never forwarded. One session per
  chat (``telegram:chat<chat id>``), and per forum topic (the topic's
  ``message_thread_id`` as the thread); the chat shares one workspace.
* Access: ``access.allowlist`` entries ``telegram:<user id>``; others get one
  polite refusal (per hour) and nothing runs.
"""

from __future__ import annotations

from urllib.parse import urlparse

from adapters.telegram import MessageView, TelegramAdapter, TelegramConfig
from core import ConversationKey

from .base import BotSettings, ChatBot

PLATFORM = "telegram"


class TelegramSettings(BotSettings, TelegramConfig):
    """``bots.<name>:`` keys of a ``kind: telegram`` bot (see adapters/telegram/config.py)."""


def conversation_key(view: MessageView, *, groups: bool = True) -> ConversationKey | None:
    """The conversation a message belongs to, or None when the bot should not answer it."""
    if view.private:
        return ConversationKey(PLATFORM, view.user.id)
    if not groups or not view.addressed:
        return None
    thread = str(view.thread_id) if view.thread_id is not None else None
    return ConversationKey(PLATFORM, f"chat{view.chat_id}", thread)


class TelegramBot(ChatBot):
    kind = "telegram"
    platform = PLATFORM
    Settings = TelegramSettings
    Adapter = TelegramAdapter
    settings: TelegramSettings
    adapter: TelegramAdapter

    def route(self, view: MessageView) -> ConversationKey | None:
        return conversation_key(view, groups=self.settings.groups)

    def legacy_upload_limit_mb(self) -> float | None:
        return self.settings.max_upload_mb

    def places(self, key: ConversationKey) -> list[str]:
        """A group is named by its chat id (``telegram:-100123``); a private chat by its user."""
        if key.owner.startswith("chat"):
            return [f"{PLATFORM}:{key.owner[4:]}", key.place]
        return [key.place]

    def describe(self) -> str:
        s = self.settings
        host = urlparse(s.base_url).netloc or s.base_url
        how = f"webhook at {s.webhook.url}" if s.mode == "webhook" and s.webhook else "long polling"
        return f"{self.name} (telegram, {how}, Bot API {host})"


BOT = TelegramBot
