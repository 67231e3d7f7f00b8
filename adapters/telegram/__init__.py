"""Telegram adapter on python-telegram-bot v22 (async).

Modules: :mod:`.adapter` (receiving, routing, buttons), :mod:`.client` (the PTB
bot, skipping updates it can't parse), :mod:`.sink` (streaming replies),
:mod:`.formatting` (Markdown -> text + entities), :mod:`.updates` (what a
message means), :mod:`.albums` (photo albums as one message),
:mod:`.approvals` (inline keyboards), :mod:`.files` (incoming photos and
documents), :mod:`.errors` (PTB errors -> core errors), :mod:`.config` (settings).
"""

from .adapter import ALLOWED_UPDATES, Router, TelegramAdapter, TelegramUnavailable
from .albums import Album, AlbumCollector
from .client import ScreeningBot
from .config import TelegramConfig, WebhookConfig
from .formatting import MAX_TEXT, Rendered, render, telegram_length
from .sink import ChatPacer, ChatTarget, DraftSupport, TelegramSink, telegram_limits
from .updates import MessageView, inspect_message

__all__ = [
    "ALLOWED_UPDATES",
    "MAX_TEXT",
    "Album",
    "AlbumCollector",
    "ChatPacer",
    "ChatTarget",
    "DraftSupport",
    "MessageView",
    "Rendered",
    "Router",
    "ScreeningBot",
    "TelegramAdapter",
    "TelegramConfig",
    "TelegramSink",
    "TelegramUnavailable",
    "WebhookConfig",
    "inspect_message",
    "render",
    "telegram_length",
    "telegram_limits",
]
