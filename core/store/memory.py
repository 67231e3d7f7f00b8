"""In-process store: for tests, the library API and throwaway bots."""

from __future__ import annotations

import copy
from collections import defaultdict, deque
from typing import Unpack

from ..keys import ConversationKey
from .base import ConversationStore, ListFilter, check_filter
from .records import Conversation, TurnRecord


class MemoryStore(ConversationStore):
    def __init__(self, history_limit: int = 1000) -> None:
        self.history_limit = history_limit
        self._conversations: dict[ConversationKey, Conversation] = {}
        self._turns: dict[ConversationKey, deque[TurnRecord]] = defaultdict(lambda: deque(maxlen=self.history_limit))

    async def ping(self) -> None:
        return None

    async def get(self, key: ConversationKey) -> Conversation | None:
        conv = self._conversations.get(key)
        return copy.deepcopy(conv) if conv else None

    async def put(self, conversation: Conversation) -> None:
        self._conversations[conversation.key] = copy.deepcopy(conversation)

    async def delete(self, key: ConversationKey) -> bool:
        self._turns.pop(key, None)
        return self._conversations.pop(key, None) is not None

    async def find_session(self, session_id: str) -> Conversation | None:
        for conv in self._conversations.values():
            if conv.session_id == session_id:
                return copy.deepcopy(conv)
        return None

    async def list(self, *, limit: int = 100, **where: Unpack[ListFilter]) -> list[Conversation]:
        check_filter(where)
        found = [c for c in self._conversations.values() if all(getattr(c.key, f) == v for f, v in where.items())]
        found.sort(key=lambda c: c.last_active_at, reverse=True)
        return [copy.deepcopy(c) for c in found[:limit]]

    async def add_turn(self, turn: TurnRecord) -> None:
        self._turns[turn.key].append(copy.deepcopy(turn))

    async def turns(self, key: ConversationKey, limit: int = 20) -> list[TurnRecord]:
        history = list(self._turns.get(key, ()))
        return [copy.deepcopy(t) for t in history[-limit:]] if limit > 0 else []

    async def mark_interrupted(self) -> int:
        count = 0
        for conv in self._conversations.values():
            if conv.status == "running":
                conv.status = "interrupted"
                count += 1
        return count
