"""The Feishu / Lark bot: Claude Code in p2p chats and group threads.

Policies:

* p2p chats: every message is for the bot; one session per user
  (``feishu:<open_id>``, workspace ``feishu/<open_id>``).
* Group chats: the bot answers when @mentioned (its own open_id among the message's
  mentions; ``@all`` does not count), in a thread under the message (``reply_in_thread``).
  The thread is one session (``feishu:<chat_id>:<thread's root message id>``), continued by
  later messages in it without a mention; the group's threads share the chat's workspace.
  Anything else in a group is ignored.
* The core commands as text (``/new``, ``/stop``, ...) in p2p, or after a mention.
* Access: ``access.allowlist`` entries ``feishu:<open_id>``; others get one polite refusal
  (per hour in groups) and nothing runs.
* Feishu (``domain: feishu``) or Lark (``domain: lark``) by configuration; the long
  connection by default (no public URL), or HTTP callbacks (``mode: callback``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from adapters.feishu import PLATFORM, FeishuAdapter, FeishuConfig, FeishuPlace
from core import ConversationKey

from .base import BotSettings, ChatBot


def conversation_key(place: FeishuPlace) -> ConversationKey | None:
    """The conversation a message belongs to, or None when the bot should not answer it.

    A p2p chat is one conversation per user. In a group, a message mentioning the bot
    opens (or continues) the conversation of its thread, named after the thread's root
    message; outside a thread it starts one (the bot answers in a thread under that very
    message, so it is named after the message — also when it quotes another, whose
    ``root_id`` names the quoted message, not the thread to come). A message in a thread
    without a mention is passed on too (the dispatcher answers it only if that thread's
    conversation exists); other chatter is ignored.
    """
    if place.p2p:
        return ConversationKey(PLATFORM, place.sender)
    if place.thread_id is None:
        return ConversationKey(PLATFORM, place.chat_id, place.message_id) if place.mentioned else None
    return ConversationKey(PLATFORM, place.chat_id, place.root_id or place.message_id)


class FeishuSettings(FeishuConfig, BotSettings):
    """``bots.<name>:`` keys of a ``kind: feishu`` bot (see adapters/feishu/config.py)."""


class FeishuBot(ChatBot):
    kind = "feishu"
    platform = PLATFORM
    Settings = FeishuSettings
    Adapter = FeishuAdapter
    settings: FeishuSettings
    adapter: FeishuAdapter

    def route(self, place: FeishuPlace) -> ConversationKey | None:
        return conversation_key(place)

    def describe(self) -> str:
        s = self.settings
        host = urlsplit(s.domain).netloc or s.domain
        how = "long connection" if s.mode == "long_connection" else f"callbacks on {s.host}:{s.port}{s.path}"
        return f"{self.name} (feishu, {how}, {host})"


BOT = FeishuBot
