"""One turn at a time per conversation, never a global lock.

Each conversation gets a lane (a lock plus a count of waiters) while it is in
use; idle lanes are dropped so the table does not grow with every chat ever seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from .keys import ConversationKey


@dataclass
class _Lane:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holders + waiters


class Lanes:
    def __init__(self) -> None:
        self._lanes: dict[ConversationKey, _Lane] = {}

    def busy(self, key: ConversationKey) -> bool:
        lane = self._lanes.get(key)
        return bool(lane and lane.lock.locked())

    def waiting(self, key: ConversationKey) -> int:
        """How many turns wait behind the running one."""
        lane = self._lanes.get(key)
        if lane is None:
            return 0
        return max(0, lane.users - (1 if lane.lock.locked() else 0))

    def __len__(self) -> int:
        return len(self._lanes)

    @asynccontextmanager
    async def hold(self, key: ConversationKey) -> AsyncIterator[None]:
        lane = self._lanes.setdefault(key, _Lane())
        lane.users += 1
        try:
            async with lane.lock:
                yield
        finally:
            lane.users -= 1
            if lane.users == 0 and self._lanes.get(key) is lane:
                del self._lanes[key]
