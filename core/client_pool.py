"""A bounded pool of warm Claude Code processes, one per active conversation.

A warm client answers a turn in ~0.05 s where a fresh process needs ~0.5 s.
The pool keeps at most ``size`` clients: when a new one is needed, the least
recently used *idle* client is closed (a client in the middle of a turn is
never evicted, so the pool can briefly exceed ``size`` when every client is
busy). Clients idle for ``idle_timeout`` seconds are closed by a reaper. A
closed conversation loses nothing: its next turn resumes the session from the
transcript Claude Code keeps on disk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import ConversationBusy
from .keys import ConversationKey

if TYPE_CHECKING:
    from claude_agent_sdk import ClaudeSDKClient

    from .runtime import TurnState

log = logging.getLogger(__name__)

_DISCONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class ClientSpec:
    """What a warm client was started with; a conversation whose spec changed gets a new one."""

    session_id: str
    cwd: str
    model: str | None


@dataclass(eq=False)
class WarmClient:
    key: ConversationKey
    spec: ClientSpec
    client: ClaudeSDKClient | None = None
    busy: bool = False
    last_used: float = field(default_factory=time.monotonic)
    turn: TurnState | None = None
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))

    async def disconnect(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            await asyncio.wait_for(client.disconnect(), _DISCONNECT_TIMEOUT)
        except Exception as exc:  # a dead or stuck CLI must not break the pool
            log.debug("disconnect of %s failed: %r", self.key, exc)


class ClientPool:
    def __init__(self, size: int, idle_timeout: float) -> None:
        self.size = size
        self.idle_timeout = idle_timeout
        self._clients: OrderedDict[ConversationKey, WarmClient] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._clients)

    def get(self, key: ConversationKey) -> WarmClient | None:
        return self._clients.get(key)

    def start(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_forever(), name="ccbridge-pool-reaper")

    async def lease(
        self, key: ConversationKey, spec: ClientSpec, connect: Callable[[WarmClient], Awaitable[None]]
    ) -> WarmClient:
        """A connected client for ``key``, marked busy until :meth:`release`."""
        warm = self._clients.get(key)
        if warm is not None and warm.busy:
            raise ConversationBusy(f"a turn is already running in {key}")
        if warm is not None and (warm.spec != spec or warm.client is None):
            self.discard(key)
            warm = None
        if warm is None:
            warm = WarmClient(key, spec, busy=True)
            await connect(warm)
            self._clients[key] = warm
        warm.busy = True
        self._clients.move_to_end(key)
        self._evict_over_capacity()
        return warm

    def release(self, warm: WarmClient, *, healthy: bool = True) -> None:
        warm.busy = False
        warm.turn = None
        warm.last_used = time.monotonic()
        if not healthy and self._clients.get(warm.key) is warm:
            self.discard(warm.key)
        self._evict_over_capacity()

    def discard(self, key: ConversationKey) -> bool:
        """Close a conversation's client in the background; True when there was one."""
        warm = self._clients.pop(key, None)
        if warm is None:
            return False
        task = asyncio.create_task(warm.disconnect(), name=f"ccbridge-disconnect-{key}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return True

    def _evict_over_capacity(self) -> None:
        while len(self._clients) > self.size:
            idle = next((k for k, w in self._clients.items() if not w.busy), None)
            if idle is None:
                return
            log.debug("pool full (%d): closing least recently used %s", self.size, idle)
            self.discard(idle)

    def reap(self) -> int:
        cutoff = time.monotonic() - self.idle_timeout
        stale = [k for k, w in self._clients.items() if not w.busy and w.last_used < cutoff]
        for key in stale:
            log.debug("closing idle client of %s", key)
            self.discard(key)
        return len(stale)

    async def _reap_forever(self) -> None:
        interval = max(0.5, min(self.idle_timeout / 2, 30.0))
        while True:
            await asyncio.sleep(interval)
            self.reap()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for key in list(self._clients):
            self.discard(key)
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)
