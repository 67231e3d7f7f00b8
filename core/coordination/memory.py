"""In-process coordination: one bot process, nothing shared."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from ..events import ApprovalRequest
from ..keys import ConversationKey
from .base import (
    ApprovalAnswer,
    ApprovalBus,
    ApprovalHandler,
    ConversationLocks,
    RefusalCooldown,
    SeenKeys,
    SharedNotes,
)


@dataclass
class _Lane:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holders + waiters


class MemoryLocks(ConversationLocks):
    """A lane (a lock plus a count of waiters) per conversation in use; idle lanes are dropped."""

    def __init__(self) -> None:
        self._lanes: dict[ConversationKey, _Lane] = {}
        self._creating: dict[ConversationKey, _Lane] = {}

    def busy(self, key: ConversationKey) -> bool:
        lane = self._lanes.get(key)
        return bool(lane and lane.lock.locked())

    def waiting(self, key: ConversationKey) -> int:
        lane = self._lanes.get(key)
        if lane is None:
            return 0
        return max(0, lane.users - (1 if lane.lock.locked() else 0))

    def __len__(self) -> int:
        return len(self._lanes)

    @staticmethod
    @asynccontextmanager
    async def _hold(
        table: dict[ConversationKey, _Lane], key: ConversationKey, on_queued: Callable[[], None] | None = None
    ) -> AsyncIterator[None]:
        lane = table.setdefault(key, _Lane())
        lane.users += 1
        try:
            if on_queued is not None:
                on_queued()  # no await between this and acquire(): our place in line is taken
            async with lane.lock:
                yield
        finally:
            lane.users -= 1
            if lane.users == 0 and table.get(key) is lane:
                del table[key]

    def hold(  # type: ignore[override]
        self, key: ConversationKey, on_queued: Callable[[], None] | None = None
    ) -> AsyncIterator[None]:
        return self._hold(self._lanes, key, on_queued)

    def creating(self, key: ConversationKey) -> AsyncIterator[None]:  # type: ignore[override]
        return self._hold(self._creating, key)


class MemorySeenKeys(SeenKeys):
    """A bounded memory of keys; the oldest are forgotten first (and any past their ttl)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._keys: OrderedDict[str, float] = OrderedDict()

    async def first_time(self, key: str, ttl: float) -> bool:
        now = time.monotonic()
        expires = self._keys.get(key)
        if expires is not None and expires > now:
            return False
        self._keys[key] = now + ttl
        self._keys.move_to_end(key)
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._keys)


class MemoryRefusals(RefusalCooldown):
    def __init__(self, prune_at: int = 1024) -> None:
        self.prune_at = prune_at
        self._told: dict[str, float] = {}

    async def should_notify(self, who: str, cooldown: float) -> bool:
        now = time.monotonic()
        last = self._told.get(who)
        if last is not None and now - last < cooldown:
            return False
        if len(self._told) >= self.prune_at:  # forget refusals older than the cooldown
            self._told = {k: t for k, t in self._told.items() if now - t < cooldown}
        self._told[who] = now
        return True


class MemoryNotes(SharedNotes):
    """Notes of one process, bounded: the oldest are forgotten first (and any past their ttl)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._notes: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def put(self, name: str, text: str, ttl: float) -> None:
        self._notes[name] = (text, time.monotonic() + ttl)
        self._notes.move_to_end(name)
        while len(self._notes) > self.size:
            self._notes.popitem(last=False)

    async def get(self, name: str) -> str | None:
        entry = self._notes.get(name)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]


class MemoryApprovalBus(ApprovalBus):
    def __init__(self) -> None:
        self._requests: dict[str, ApprovalRequest] = {}
        self._handlers: list[ApprovalHandler] = []

    async def subscribe(self, handler: ApprovalHandler) -> None:
        self._handlers.append(handler)

    async def announce(self, request: ApprovalRequest) -> None:
        self._requests[request.id] = request

    async def withdraw(self, request_id: str) -> None:
        self._requests.pop(request_id, None)

    async def lookup(self, request_id: str) -> ApprovalRequest | None:
        return self._requests.get(request_id)

    async def asked_by(self, user_id: str) -> list[ApprovalRequest]:
        return [r for r in self._requests.values() if r.requested_by == user_id]

    async def publish(self, answer: ApprovalAnswer) -> None:
        for handler in list(self._handlers):
            await handler(answer)
