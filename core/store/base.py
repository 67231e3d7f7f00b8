"""The conversation store interface every backend implements.

Contract (checked by ``tests/core/test_store_contract.py`` for every backend):

* ``put`` inserts or replaces a conversation by its key; ``get`` returns an equal
  copy (mutating it does not change the store) or ``None``.
* ``find_session`` finds a conversation by its current Claude Code session id.
* ``list`` returns conversations newest-active first, filtered by any of
  platform / owner / thread (:class:`ListFilter`).
* ``delete`` removes a conversation and its history; returns whether it existed.
* ``add_turn`` appends to a conversation's history, keeping at most
  ``history_limit`` turns; ``turns`` returns the last ``limit`` turns oldest first.
* ``mark_interrupted`` turns every ``running`` conversation into ``interrupted``
  (called at start-up: a turn cut off by a crash is marked, never replayed).
* Every method is a coroutine and never blocks the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TypedDict, Unpack

from ..keys import ConversationKey
from .records import Conversation, TurnRecord


class ListFilter(TypedDict, total=False):
    """Fields of a conversation key ``list`` can filter on (all given must match)."""

    platform: str
    owner: str
    thread: str


FILTER_FIELDS = frozenset(ListFilter.__annotations__)


def check_filter(where: ListFilter) -> None:
    unknown = set(where) - FILTER_FIELDS
    if unknown:
        raise TypeError(f"cannot filter conversations by {', '.join(sorted(unknown))}")


class ConversationStore(ABC):
    history_limit: int = 1000

    async def open(self) -> None:
        """Connect / create tables. Called once before use."""

    async def close(self) -> None:
        """Release connections."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise :class:`~core.errors.StoreError` when the backend is unreachable."""

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
    async def add_turn(self, turn: TurnRecord) -> None: ...

    @abstractmethod
    async def turns(self, key: ConversationKey, limit: int = 20) -> list[TurnRecord]: ...

    @abstractmethod
    async def mark_interrupted(self) -> int: ...

    async def __aenter__(self) -> ConversationStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
