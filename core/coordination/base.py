"""Coordination: the per-process state of a bot, behind small interfaces.

Everything that must agree between turns, between messages, and — with a shared
backend — between several instances of one bot lives behind these interfaces;
nothing else in core keeps such state in a global:

* :class:`ConversationLocks` — one turn at a time per conversation (a queue, never
  a global lock), and a create-once guard for new conversations;
* :class:`SeenKeys` — deliveries already handled (dedupe of platform retries);
* :class:`RefusalCooldown` — whom we refused recently (one polite refusal per hour);
* :class:`ApprovalBus` — carries an approval decision to the instance whose turn waits for it.

:class:`Coordination` bundles one of each with the instance's id. The in-memory
implementations (:mod:`.memory`) serve a single process; shared backends
(Redis) implement the same interfaces.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from ..events import ApprovalRequest, Decision
from ..keys import ConversationKey


class ConversationLocks(ABC):
    """Serializes turns per conversation; waiters are served in arrival order."""

    @abstractmethod
    def hold(
        self, key: ConversationKey, on_queued: Callable[[], None] | None = None
    ) -> AbstractAsyncContextManager[None]:
        """Hold ``key``'s lock for the duration of a turn (waits behind the turns before it).

        ``on_queued`` is called once the caller has its place in line (before waiting), so
        the caller can let the next message of the conversation line up behind it.
        """

    @abstractmethod
    def busy(self, key: ConversationKey) -> bool:
        """A turn holds ``key`` right now."""

    @abstractmethod
    def waiting(self, key: ConversationKey) -> int:
        """How many turns wait behind the running one."""

    @abstractmethod
    def creating(self, key: ConversationKey) -> AbstractAsyncContextManager[None]:
        """Held while a new conversation of ``key`` is created, so concurrent first messages create it once."""


class SeenKeys(ABC):
    """Keys (platform event ids) already handled; each is claimed at most once within ``ttl``."""

    @abstractmethod
    async def first_time(self, key: str, ttl: float) -> bool:
        """Claim ``key``; False when it was claimed already within its ttl."""

    async def confirm(self, key: str, ttl: float) -> None:
        """The delivery was accepted: remember ``key`` for ``ttl`` (a claim alone is kept briefly)."""


class RefusalCooldown(ABC):
    """Remembers whom the bot refused, so an outsider is told once per cooldown, not on every message."""

    @abstractmethod
    async def should_notify(self, who: str, cooldown: float) -> bool:
        """True (and remembered) when ``who`` was not told within ``cooldown`` seconds."""


class SharedNotes(ABC):
    """Short texts every instance can read back for a while (e.g. the HTTP API's async tasks, polled
    through any instance): ``put`` replaces a note, which is gone ``ttl`` seconds later."""

    @abstractmethod
    async def put(self, name: str, text: str, ttl: float) -> None: ...

    @abstractmethod
    async def get(self, name: str) -> str | None: ...


@dataclass(frozen=True)
class ApprovalAnswer:
    request_id: str
    decision: Decision
    user_id: str  # "" when no one answered (denied by a rule: ``reason`` says which)
    reason: str | None = None


ApprovalHandler = Callable[[ApprovalAnswer], Awaitable[None]]


class ApprovalBus(ABC):
    """Makes pending approval requests known to every instance and delivers answers to the one waiting.

    ``announce`` publishes a request when its turn starts waiting, ``withdraw`` when
    it ends; ``lookup`` finds a request announced anywhere (so any instance can check
    who may answer it) and ``asked_by`` lists one user's; ``publish`` hands an answer to
    the instance that announced it, which receives it through the handler given to ``subscribe``.
    """

    @abstractmethod
    async def subscribe(self, handler: ApprovalHandler) -> None: ...

    @abstractmethod
    async def announce(self, request: ApprovalRequest) -> None: ...

    @abstractmethod
    async def withdraw(self, request_id: str) -> None: ...

    @abstractmethod
    async def lookup(self, request_id: str) -> ApprovalRequest | None: ...

    @abstractmethod
    async def publish(self, answer: ApprovalAnswer) -> None: ...

    @abstractmethod
    async def asked_by(self, user_id: str) -> list[ApprovalRequest]:
        """The requests announced anywhere that ``user_id`` asked for, still waiting."""

    async def close(self) -> None:
        """Release connections."""


@dataclass
class Coordination:
    """The coordination parts one bot's agent uses, and the id of this instance.

    ``shared`` is True when several instances coordinate (a shared backend): messages then
    go to the instance owning their conversation (:mod:`core.routing`).
    """

    instance_id: str
    locks: ConversationLocks
    seen: SeenKeys
    refusals: RefusalCooldown
    approvals: ApprovalBus
    notes: SharedNotes

    @property
    def shared(self) -> bool:
        return getattr(self, "backend", None) is not None

    @property
    def owned(self) -> int:
        """How many conversations this instance owns (0 without a shared backend)."""
        backend = getattr(self, "backend", None)
        return len(backend.owned) if backend is not None else 0

    async def start(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None:
            await backend.start()

    async def close(self) -> None:
        await self.approvals.close()


class OwnerGone(Exception):
    """The instance a message was handed to died; ``started``: it had begun answering."""

    def __init__(self, instance: str, started: bool) -> None:
        super().__init__(f"instance {instance} stopped answering")
        self.instance = instance
        self.started = started
