"""Re-warming: Claude Code processes started before the turns most likely to come next.

* **After a restart** (a deploy, a crash), ``agent.prewarm`` (default 4; 0: off) of the most
  recently active conversations (active within ``agent.prewarm_within`` seconds, with a session to resume)
  get a warm client in the background, most recent first and within the pool's size, so
  their first turn answers as fast as any warm turn. Start-up does not wait for it.
* **After an eviction**: a conversation whose client was closed to make room for another
  while its user was still active (used within ``agent.idle_timeout`` and ``prewarm_within``)
  is re-warmed first when the pool has room again (an idle client reaped, one closed after
  a failure).

Pre-warming never costs a turn anything (:meth:`~core.runtime.pool.ClientPool.prewarm`): it
takes only free room and a free process slot, closes no client, and a message arriving for
a conversation being pre-warmed is answered by that process, never a second one. With
several instances (``coordination: redis``), a conversation another live instance owns is
left to it; one nobody owns is taken, as its next message would take it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .config import AgentSettings
from .conversations import Conversations
from .errors import CCBridgeError
from .keys import ConversationKey
from .runtime import AgentRuntime, WarmClient
from .store import Conversation, ConversationStore

log = logging.getLogger(__name__)

OwnerOf = Callable[[ConversationKey], Awaitable[str | None]]  # another instance owning a conversation (None: us)


class Prewarmer:
    def __init__(
        self,
        settings: Callable[[], AgentSettings],
        store: ConversationStore,
        conversations: Conversations,
        runtime: AgentRuntime,
        owner: OwnerOf,
    ) -> None:
        self.settings = settings
        self.store = store
        self.conversations = conversations
        self.runtime = runtime
        self.pool = runtime.pool
        self.owner = owner
        #: whose conversations these are: ``(platform, bot scope)``, set by the bot running the agent
        #: (None: every conversation in the store, e.g. the library)
        self.scope: tuple[str, str | None] | None = None
        self._evicted: OrderedDict[ConversationKey, float] = OrderedDict()  # key -> when last used (monotonic)
        self._tasks: set[asyncio.Task[int]] = set()
        self._rewarming: asyncio.Task[int] | None = None
        self._closed = False
        self.pool.on_evicted = self._on_evicted
        self.pool.on_room = self._on_room

    @property
    def enabled(self) -> bool:
        return self.settings().prewarm > 0 and not self._closed

    def start(self) -> asyncio.Task[int] | None:
        """Pre-warm the most recent conversations in the background; the task returns how many."""
        if not self.enabled:
            return None
        return self._spawn(self.warm_recent(), "ccbridge-prewarm")

    async def wait(self) -> None:
        """Until no pre-warming runs (for tests and benchmarks: nothing needs to wait for it)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    def forget_evicted(self) -> None:
        """Re-warm none of the conversations evicted so far (a benchmark between its phases)."""
        self._evicted.clear()

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- after a restart -----------------------------------------------------------
    async def warm_recent(self) -> int:
        """Warm clients for the most recently active conversations; returns how many were opened."""
        s = self.settings()
        wanted = min(s.prewarm, self.pool.size)
        if wanted <= 0:
            return 0
        try:
            recent = await self._recent(wanted, time.time() - s.prewarm_within)
        except CCBridgeError as exc:
            log.warning("not pre-warming: could not list the recent conversations (%s)", exc)
            return 0
        opened = 0
        for conv in recent:
            if opened >= wanted or self._closed or not self.pool.has_room():
                break
            opened += int(await self._warm(conv))
        if opened:
            log.info("pre-warmed %d conversation(s) active in the last %gs", opened, s.prewarm_within)
        return opened

    async def _recent(self, wanted: int, since: float) -> list[Conversation]:
        """This agent's conversations active since ``since``, with a session to resume, most recent first."""
        where: dict[str, str] = {}
        if self.scope is not None:
            platform, bot = self.scope
            where["platform"] = platform
            if bot is not None:
                where["bot"] = bot
        listed = await self.store.list(limit=max(50, 4 * wanted), **where)  # type: ignore[arg-type]
        found = []
        for conv in listed:  # newest-active first
            if conv.last_active_at < since:
                break
            if conv.message_count > 0 and self._belongs(conv.key):
                found.append(conv)
        return found

    def _belongs(self, key: ConversationKey) -> bool:
        return self.scope is None or (key.platform, key.bot) == self.scope

    async def _warm(self, conv: Conversation) -> bool:
        key = conv.key
        if self.conversations.busy(key):
            return False  # its turn is on the way: it starts the process itself
        try:
            if await self.owner(key) is not None:
                return False  # another live instance runs this conversation
            request = await self.conversations.warm_request(conv)
        except CCBridgeError as exc:
            log.info("not pre-warming %s: %s", key, exc)
            return False
        if request is None:
            return False
        opened = await self.runtime.prewarm(request)
        if opened:
            log.debug("pre-warmed %s", key)
        return opened

    # -- after an eviction ---------------------------------------------------------
    def _on_evicted(self, warm: WarmClient) -> None:
        if not warm.used:  # opened ahead of a turn that never came: its user is not known to be active
            return
        self._evicted[warm.key] = warm.last_used
        self._evicted.move_to_end(warm.key)
        while len(self._evicted) > 4 * self.pool.size:
            self._evicted.popitem(last=False)

    def _on_room(self) -> None:
        if self._evicted and self.enabled and (self._rewarming is None or self._rewarming.done()):
            self._rewarming = self._spawn(self.rewarm_evicted(), "ccbridge-rewarm")

    async def rewarm_evicted(self) -> int:
        """Re-warm the conversations evicted while their users were active, most recent first; returns how many."""
        s = self.settings()
        opened = 0
        while self._evicted and self.pool.has_room() and not self._closed:
            key = max(self._evicted, key=self._evicted.__getitem__)
            last_used = self._evicted.pop(key)
            if last_used < time.monotonic() - min(s.idle_timeout, s.prewarm_within):
                self._evicted.clear()  # the most recent is no longer active: neither is any other
                break
            if key in self.pool.keys():
                continue  # its user came back meanwhile
            try:
                conv = await self.store.get(key)
            except CCBridgeError as exc:
                log.info("not re-warming %s: %s", key, exc)
                continue
            if conv is not None and conv.message_count > 0:
                opened += int(await self._warm(conv))
        return opened

    def _spawn(self, work: Coroutine[Any, Any, int], name: str) -> asyncio.Task[int]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[int]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("pre-warming failed: %r", task.exception())
