"""Photo albums: Telegram delivers each item as its own message sharing a ``media_group_id``.

Only one item (usually the first) carries the caption, so in a group only that
item mentions the bot. :class:`AlbumCollector` gathers the items of one album
for ``window`` seconds after the latest one and hands them on together; items
that follow an addressed item belong to it (its conversation, its sender),
items before it or of an album nobody addressed are not for the bot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from telegram import Message

from core import ConversationKey

from .updates import MessageView

log = logging.getLogger(__name__)


@dataclass
class Album:
    """The items of one album addressed to the bot, in arrival order."""

    key: ConversationKey
    view: MessageView  # the addressed item: who sent it, where the reply goes
    messages: list[Message]
    texts: list[str] = field(default_factory=list)  # the captions (mention removed), in order
    place: Any = None  # the adapter's bookkeeping: where the album stands among the chat's messages


class AlbumCollector:
    """Collects album items; calls ``complete(album)`` once no item came for ``window`` seconds."""

    def __init__(self, window: float, complete: Callable[[Album], None]) -> None:
        self.window = window
        self._complete = complete
        self._open: dict[tuple[int, str], Album] = {}
        self._timers: dict[tuple[int, str], asyncio.TimerHandle] = {}

    def add(self, message: Message, view: MessageView, key: ConversationKey | None) -> Album | None:
        """Take an album item (``key``: where the bot's policy routes it alone); returns a newly opened album."""
        assert message.media_group_id is not None
        group = (view.chat_id, message.media_group_id)
        album = self._open.get(group)
        opened = None
        if album is None:
            if key is None:
                log.debug("album item %s in %s is not for the bot", view.message_id, view.chat_id)
                return None
            album = opened = self._open[group] = Album(key, view, [])
        album.messages.append(message)
        if view.text:
            album.texts.append(view.text)
        if (timer := self._timers.get(group)) is not None:
            timer.cancel()  # the window counts from the latest item
        self._timers[group] = asyncio.get_running_loop().call_later(self.window, self._finish, group)
        return opened

    def _finish(self, group: tuple[int, str]) -> None:
        self._timers.pop(group, None)
        album = self._open.pop(group, None)
        if album is not None:
            log.debug("album %s in %s: %d items", group[1], group[0], len(album.messages))
            self._complete(album)

    def flush(self) -> None:
        """Hand on every open album now (at shutdown)."""
        for group, timer in list(self._timers.items()):
            timer.cancel()
            self._finish(group)

    def __len__(self) -> int:
        return len(self._open)
