"""The conversation store interface every backend implements.

Contract (``tests/contracts/store_contract.py``, a class every backend's test plugs into):

* ``put`` inserts or replaces a conversation by its key — unless the stored record
  carries a higher ``fence`` (a newer owner wrote it): then it raises
  :class:`~core.errors.Fenced` and changes nothing; ``get`` returns an equal copy
  (mutating it does not change the store) or ``None``.
* ``find_session`` finds a conversation by its current Claude Code session id.
* ``list`` returns conversations newest-active first, filtered by any of
  platform / owner / thread / bot (:class:`ListFilter`).
* ``delete`` removes a conversation and its history; returns whether it existed.
* ``put_turn`` inserts a turn, or updates the one with the same ``turn_id``
  (a turn is written when it starts and when it ends); a conversation keeps at
  most ``history_limit`` turns. ``turns`` returns the last ``limit`` turns,
  oldest first.
* ``mark_interrupted(instance_id)`` turns the ``running`` conversations and turns
  of that instance (and those recorded without an instance) into
  ``interrupted``, never another instance's: called at start-up, so a turn cut
  off by a crash is marked, never replayed.
* ``claim_key(key, ttl)`` records a key (a platform event id) atomically: True
  the first time, False while an earlier claim is within its ttl.
* ``put_meta`` / ``get_meta`` / ``delete_meta`` / ``list_meta(prefix)`` keep small named
  values (access granted in the chat, for instance), shared by every instance on the store.
* ``add_meta(name, amount)`` adds an integer to the named value (absent: 0) atomically, also
  between instances, and returns the new total (spend per user, for instance); the value reads
  back as its decimal text through ``get_meta`` / ``list_meta``.
* ``ping(write=...)`` raises :class:`~core.errors.StoreUnavailable` when the
  backend cannot be reached (or, with ``write=True``, written).
* Failures raise :class:`~core.errors.StoreError`;
  :class:`~core.errors.StoreUnavailable` when the backend is unreachable, read
  only, full or gone (worth retrying later). A store that comes back is used
  again without a restart.
* Every method is a coroutine and never blocks the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypedDict, TypeVar, Unpack

from ..errors import StoreError
from ..keys import ConversationKey
from .records import Conversation, TurnRecord


class ListFilter(TypedDict, total=False):
    """Fields of a conversation key ``list`` can filter on (all given must match)."""

    platform: str
    owner: str
    thread: str
    bot: str


FILTER_FIELDS = frozenset(ListFilter.__annotations__)


def check_filter(where: ListFilter) -> None:
    unknown = set(where) - FILTER_FIELDS
    if unknown:
        raise TypeError(f"cannot filter conversations by {', '.join(sorted(unknown))}")


class ConversationStore(ABC):
    history_limit: int = 1000
    #: ``store_id`` is watched while running: a server that lost its data gets noticed (``/ready``); a
    #: store in a file watches the file itself instead (a deleted or replaced database)
    watch_identity: bool = True

    async def open(self) -> None:
        """Connect / create or migrate the schema. Called once before use."""

    async def close(self) -> None:
        """Release connections."""

    def describe(self) -> str:
        """Where the data lives, for logs and errors (no secrets)."""
        return type(self).__name__

    @abstractmethod
    async def ping(self, *, write: bool = False) -> None:
        """Raise :class:`~core.errors.StoreUnavailable` when the backend is unreachable (or not writable)."""

    @abstractmethod
    async def get(self, key: ConversationKey) -> Conversation | None: ...

    @abstractmethod
    async def put(self, conversation: Conversation) -> None: ...

    @abstractmethod
    async def delete(self, key: ConversationKey) -> bool: ...

    @abstractmethod
    async def find_session(self, session_id: str) -> Conversation | None: ...

    @abstractmethod
    async def list(self, *, limit: int = 100, **where: Unpack[ListFilter]) -> list[Conversation]:
        """Conversations matching every filter given, most recently active first."""

    @abstractmethod
    async def put_turn(self, turn: TurnRecord) -> None: ...

    @abstractmethod
    async def turns(self, key: ConversationKey, limit: int = 20) -> list[TurnRecord]: ...

    @abstractmethod
    async def mark_interrupted(self, instance_id: str) -> int:
        """Mark the running conversations (and turns) of ``instance_id`` interrupted; returns how many conversations."""

    @abstractmethod
    async def claim_key(self, key: str, ttl: float) -> bool: ...

    async def put_meta(self, name: str, value: str) -> None:
        """Keep ``value`` under ``name`` (replacing it)."""
        raise NotImplementedError(f"{type(self).__name__} does not keep named values")

    async def get_meta(self, name: str) -> str | None:
        raise NotImplementedError(f"{type(self).__name__} does not keep named values")

    async def delete_meta(self, name: str) -> bool:
        """Remove ``name``; whether it existed."""
        raise NotImplementedError(f"{type(self).__name__} does not keep named values")

    async def list_meta(self, prefix: str) -> dict[str, str]:
        """Every named value whose name starts with ``prefix``."""
        raise NotImplementedError(f"{type(self).__name__} does not keep named values")

    async def add_meta(self, name: str, amount: int) -> int:
        """Add ``amount`` to the integer kept under ``name`` (0 when absent), atomically; the new total."""
        raise NotImplementedError(f"{type(self).__name__} does not keep named values")

    @abstractmethod
    async def store_id(self) -> str:
        """A random id created with the store's data: a store recreated empty gets a new one."""

    async def __aenter__(self) -> ConversationStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


P = ParamSpec("P")
R = TypeVar("R")


def translating(
    server: str, errors: tuple[type[BaseException], ...], classify: Callable[[BaseException, str], StoreError]
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """A decorator for a server-backed store's methods: the client library's ``errors`` become the
    store's (``classify`` picks StoreUnavailable or StoreError), naming ``server`` and the store
    (``self.describe()``)."""

    def decorate(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(method)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(*args, **kwargs)
            except StoreError:
                raise
            except errors as exc:
                store = args[0]
                raise classify(exc, f"{server} ({store.describe()}) failed") from exc  # type: ignore[attr-defined]

        return wrapper

    return decorate
