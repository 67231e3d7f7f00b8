"""A bounded pool of warm Claude Code processes, one per active conversation.

A warm client answers a turn in ~0.05 s where a fresh process needs ~0.8 s.
The pool's size caps the Claude Code processes alive: the clients it keeps
(busy or idle) plus those being started never number more than ``size``
(:class:`~core.runtime.processes.ProcessSlots` hold one slot each). A turn
needing a new process when the pool is full has the least recently used *idle*
client closed for it; when every client is busy it waits for one to free —
never by closing a busy client, and never by starting one past the size. A
client being closed gives its slot back as its close begins, so a process
still shutting down does not hold the next start up: processes alive stay
within ``size`` plus the ones being closed. Clients idle for ``idle_timeout``
seconds are closed by a reaper. A closed conversation loses nothing: its next
turn resumes the session from its transcript.

A client can also be opened ahead of its turn (:meth:`ClientPool.prewarm`, driven by
:mod:`core.prewarm`): only into free room, never at a turn's expense, and a turn
arriving meanwhile uses the process being started instead of starting another.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ConversationBusy
from ..keys import ConversationKey
from .processes import ProcessSlots
from .state import TurnState

if TYPE_CHECKING:
    from claude_agent_sdk import ClaudeSDKClient

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
    spawn_id: str | None = None  # the launcher's pidfile name
    generation: int = 0  # the pool's settings generation it was started with
    cli_cost_usd: float | None = None  # the last cumulative cost this process reported
    owner: str = ""  # the user of its current (or last) turn
    used: bool = False  # a turn ran on it (a client opened ahead of a turn has not been used yet)

    async def disconnect(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            await asyncio.wait_for(client.disconnect(), _DISCONNECT_TIMEOUT)
        except Exception as exc:  # a dead or stuck CLI must not break the pool
            log.debug("disconnect of %s failed: %r", self.key, exc)


Closed = Callable[[WarmClient], None]
Connect = Callable[[WarmClient], Awaitable[None]]


class LeaseAborted(Exception):
    """The turn was stopped while it waited for a process."""


class ClientPool:
    def __init__(self, size: int, idle_timeout: float, slots: ProcessSlots, on_closed: Closed | None = None) -> None:
        self.size = size
        self.idle_timeout = idle_timeout
        self.slots = slots
        self._on_closed = on_closed
        self._clients: OrderedDict[ConversationKey, WarmClient] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._warming: dict[ConversationKey, asyncio.Task[bool]] = {}  # clients opened ahead of their turn
        self._starting: dict[ConversationKey, str] = {}  # turns starting their conversation's process: their user
        self.spawns = 0
        self.evictions = 0
        self.closed = 0  # processes whose close has finished
        self.prewarmed = 0  # clients opened ahead of their turn (counted in ``spawns`` too)
        self.generation = 0  # bumped when the settings change: older clients are replaced
        #: told of a client closed to make room for another (:mod:`core.prewarm` re-warms it first)
        self.on_evicted: Closed | None = None
        #: told when a process is gone and the pool has room for another client
        self.on_room: Callable[[], None] | None = None

    def __len__(self) -> int:
        return len(self._clients)

    @property
    def closing(self) -> int:
        return len(self._closing)

    def get(self, key: ConversationKey) -> WarmClient | None:
        return self._clients.get(key)

    def keys(self) -> list[ConversationKey]:
        return list(self._clients)

    def warming(self, key: ConversationKey) -> bool:
        """A client of ``key`` is being opened ahead of its turn."""
        return key in self._warming

    def turns_of(self, owner: str) -> int:
        """``owner``'s turns in progress here: running on a client, or starting (or waiting for) a process."""
        running = sum(1 for warm in self._clients.values() if warm.busy and warm.owner == owner)
        return running + sum(1 for user in self._starting.values() if user == owner)

    def has_room(self) -> bool:
        """Another client fits without closing one (clients kept plus those being opened ahead)."""
        return len(self._clients) + len(self._warming) + len(self._starting) < self.size

    def start(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_forever(), name="ccbridge-pool-reaper")

    async def lease(
        self,
        key: ConversationKey,
        spec: ClientSpec,
        connect: Connect,
        *,
        owner: str = "",
        abort: asyncio.Event | None = None,
        waiting: asyncio.Event | None = None,
    ) -> WarmClient:
        """A connected client for ``key``, marked busy until :meth:`release`.

        A new process needs a slot: when the pool is full, its least recently used idle client is
        closed for it; when every client is busy, ``owner`` (the user) waits in line for one to
        free (``waiting`` is set when it has to); ``abort`` being set gives the wait up
        (:class:`LeaseAborted`). Starting the process itself is never interrupted. When the
        conversation's client is being opened ahead of the turn (:meth:`prewarm`), the turn
        takes that process once it is up, instead of starting a second one.
        """
        opening = self._warming.get(key)
        if opening is not None:
            await asyncio.shield(opening)  # never cancelled by the turn leaving: the client stays
        warm = self._clients.get(key)
        if warm is not None and warm.busy:
            raise ConversationBusy(f"a turn is already running in {key}")
        if warm is not None and (warm.spec != spec or warm.client is None or warm.generation != self.generation):
            self.discard(key)
            warm = None
        if warm is None:
            self._starting[key] = owner
            try:
                await self._slot(owner, abort, waiting)
                warm = WarmClient(key, spec, busy=True, generation=self.generation)
                try:
                    async with self.slots.spawning():
                        await connect(warm)
                except BaseException:
                    self.slots.release()
                    if self._on_closed is not None:
                        self._on_closed(warm)
                    raise
            finally:
                self._starting.pop(key, None)
            self.spawns += 1
            self._clients[key] = warm
        warm.busy = True
        warm.owner = owner
        self._clients.move_to_end(key)
        self._evict_over_capacity()
        if self.slots.short:
            self._make_room()  # a turn queued behind this start while the pool filled: an idle client gives way
        return warm

    async def prewarm(self, key: ConversationKey, spec: ClientSpec, connect: Connect) -> bool:
        """Open a client for ``key`` ahead of its turn, if that costs no turn anything; True once it is up.

        Nothing happens (False) when ``key`` has a client or one starting, when the pool has no
        room (no client is closed for it) or when no process slot is free right now (a turn
        waiting for one comes first), and it leaves one of ``max_spawns``' start lanes free for a
        message that may arrive meanwhile (with ``max_spawns: 1``, nothing is pre-warmed). The client
        is the least recently used one: the first to give way. A turn of ``key`` arriving meanwhile
        waits for this process rather than starting another.
        """
        if key in self._clients or key in self._warming or key in self._starting or not self.has_room():
            return False
        if not self.slots.try_acquire(spare=1):  # one start lane stays free: a message arriving never waits
            return False
        task = asyncio.create_task(self._open(key, spec, connect), name=f"ccbridge-prewarm-{key}")
        self._warming[key] = task
        task.add_done_callback(lambda done: self._warming.pop(key) if self._warming.get(key) is done else None)
        return await asyncio.shield(task)  # the caller leaving never cuts a process start short

    async def _open(self, key: ConversationKey, spec: ClientSpec, connect: Connect) -> bool:
        warm = WarmClient(key, spec, generation=self.generation)
        try:
            async with self.slots.spawning():
                await connect(warm)
        except BaseException as exc:
            self._warming.pop(key, None)
            self.slots.release()
            if self._on_closed is not None:
                self._on_closed(warm)
            if not isinstance(exc, Exception):
                raise
            log.warning("could not open a warm client for %s ahead of its turn: %s", key, exc)
            return False
        self._warming.pop(key, None)
        self.spawns += 1
        warm.last_used = time.monotonic()
        self._clients[key] = warm
        self._clients.move_to_end(key, last=False)  # the least recently used: the first to give way
        if len(self._clients) > self.size or self.slots.short:
            self.discard(key)  # turns took the room meanwhile, or one waits for a process: they come first
            return False
        self.prewarmed += 1
        return True

    async def _slot(self, owner: str, abort: asyncio.Event | None, waiting: asyncio.Event | None) -> None:
        on_queue = waiting.set if waiting is not None else None
        if abort is None:
            await self.slots.acquire(owner, self._make_room, on_queue)
            return
        if abort.is_set():
            raise LeaseAborted
        acquiring = asyncio.ensure_future(self.slots.acquire(owner, self._make_room, on_queue))
        aborted = asyncio.ensure_future(abort.wait())
        try:
            await asyncio.wait({acquiring, aborted}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            if acquiring.done() and not acquiring.cancelled() and acquiring.exception() is None:
                self.slots.abandon()  # got a slot just as the turn was cancelled
            raise
        finally:
            aborted.cancel()
            if not acquiring.done():
                acquiring.cancel()
                await asyncio.gather(acquiring, return_exceptions=True)  # acquire() gives a late slot back
        if acquiring.cancelled():
            raise LeaseAborted
        acquiring.result()

    def release(self, warm: WarmClient, *, healthy: bool = True) -> None:
        warm.busy = False
        warm.turn = None
        warm.used = True
        warm.last_used = time.monotonic()
        if not healthy and self._clients.get(warm.key) is warm:
            self.discard(warm.key)
        self._evict_over_capacity()
        if self.slots.short:
            self._make_room()  # somebody waits for a process to end: an idle one gives way

    def discard(self, key: ConversationKey) -> bool:
        """Close a conversation's client in the background; True when there was one."""
        return self._discard(key) is not None

    async def close_client(self, key: ConversationKey) -> None:
        """Close a conversation's client and wait until its process has ended (if it had one)."""
        task = self._discard(key)
        if task is not None:
            await asyncio.shield(task)

    def _discard(self, key: ConversationKey) -> asyncio.Task[None] | None:
        warm = self._clients.pop(key, None)
        if warm is None:
            return None
        # its slot is free as its close begins: a process shutting down holds no start up (alive <= size + closing)
        self.slots.release()
        task = asyncio.create_task(self._close(warm), name=f"ccbridge-disconnect-{key}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return task

    async def _close(self, warm: WarmClient) -> None:
        try:
            await warm.disconnect()
        finally:
            self.closed += 1
            if self._on_closed is not None:
                self._on_closed(warm)
            if self.on_room is not None and self.has_room() and not self.slots.waiting:
                self.on_room()

    def _idle_lru(self) -> ConversationKey | None:
        return next((k for k, w in self._clients.items() if not w.busy), None)

    def _make_room(self) -> bool:
        idle = self._idle_lru()
        if idle is None:
            return False
        log.debug("pool full (%d processes): closing idle %s for a waiting turn", self.slots.limit, idle)
        self._evict(idle)
        return True

    def _evict(self, key: ConversationKey) -> None:
        """Close an idle client to make room for another (the conversation is remembered for re-warming)."""
        self.evictions += 1
        warm = self._clients.get(key)
        if warm is not None and self.on_evicted is not None:
            self.on_evicted(warm)
        self.discard(key)

    def _evict_over_capacity(self) -> None:
        """A safety net: with one slot per client and ``slots.limit <= size``, the pool never holds more."""
        while len(self._clients) > self.size:
            idle = self._idle_lru()
            if idle is None:
                return
            log.debug("pool full (%d): closing least recently used %s", self.size, idle)
            self._evict(idle)

    def retire_idle(self) -> int:
        """New settings: every client is replaced on its next turn; idle ones are closed now."""
        self.generation += 1
        idle = [k for k, w in self._clients.items() if not w.busy]
        for key in idle:
            self.discard(key)
        return len(idle)

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
        self.on_room = self.on_evicted = None
        if self._warming:  # a process being started is let finish (cutting it short could orphan it), then closed
            _, late = await asyncio.wait(list(self._warming.values()), timeout=_DISCONNECT_TIMEOUT)
            for task in late:
                task.cancel()
        for key in list(self._clients):
            self.discard(key)
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)
