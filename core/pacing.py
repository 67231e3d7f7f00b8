"""Spacing a bot's messages per chat, for platforms that limit how fast one chat may receive them.

Each :meth:`ChatPacer.wait` reserves the chat's next free slot and sleeps until it, so
concurrent replies in one chat (threads, forum topics, a notice) take turns instead of
tripping the platform's per-chat limit. Chats whose slots have passed are forgotten
once more than ``max_chats`` are remembered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

ChatId = TypeVar("ChatId", bound=Hashable)


class ChatPacer(Generic[ChatId]):
    """Spaces the sends into each chat by ``interval`` seconds (0: not at all)."""

    def __init__(
        self,
        interval: float,
        *,
        max_chats: int = 1024,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.interval = interval
        self.max_chats = max_chats
        self._clock = clock
        self._sleep = sleep
        self._next: dict[ChatId, float] = {}

    async def wait(self, chat_id: ChatId) -> None:
        """Wait for ``chat_id``'s next free slot (at once when it is free now)."""
        if self.interval <= 0:
            return
        now = self._clock()
        if len(self._next) > self.max_chats:
            self._next = {c: t for c, t in self._next.items() if t > now}
        slot = max(now, self._next.get(chat_id, now))
        self._next[chat_id] = slot + self.interval
        if slot > now:
            await self._sleep(slot - now)
