"""In-process store: for tests, the library API and throwaway bots."""

from __future__ import annotations

import copy
import time
import uuid
from collections import OrderedDict
from typing import Unpack

from ..errors import Fenced
from ..keys import ConversationKey
from .base import ConversationStore, ListFilter, check_filter
from .records import Conversation, TurnRecord


class MemoryStore(ConversationStore):
    def __init__(self, history_limit: int = 1000) -> None:
        self.history_limit = history_limit
        self._conversations: dict[ConversationKey, Conversation] = {}
        self._turns: dict[ConversationKey, OrderedDict[str, TurnRecord]] = {}
        self._claimed: dict[str, float] = {}
        self._meta: dict[str, str] = {}
        self._id = uuid.uuid4().hex

    def describe(self) -> str:
        return "memory (lost when the process ends)"

    async def ping(self, *, write: bool = False) -> None:
        return None

    async def store_id(self) -> str:
        return self._id

    async def get(self, key: ConversationKey) -> Conversation | None:
        conv = self._conversations.get(key)
        return copy.deepcopy(conv) if conv else None

    async def put(self, conversation: Conversation) -> None:
        current = self._conversations.get(conversation.key)
        if current is not None and current.fence > conversation.fence:
            raise Fenced(f"{conversation.key} has a newer owner (fence {current.fence} > {conversation.fence})")
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

    async def put_turn(self, turn: TurnRecord) -> None:
        history = self._turns.setdefault(turn.key, OrderedDict())
        history[turn.turn_id] = copy.deepcopy(turn)
        while len(history) > self.history_limit:
            history.popitem(last=False)

    async def turns(self, key: ConversationKey, limit: int = 20) -> list[TurnRecord]:
        history = list(self._turns.get(key, {}).values())
        return [copy.deepcopy(t) for t in history[-limit:]] if limit > 0 else []

    async def mark_interrupted(self, instance_id: str) -> int:
        count = 0
        for conv in self._conversations.values():
            if conv.status == "running" and conv.instance_id in (instance_id, None):
                conv.status = "interrupted"
                count += 1
        for history in self._turns.values():
            for turn in history.values():
                if turn.status == "running" and turn.instance_id in (instance_id, None):
                    turn.status = "interrupted"
                    turn.error = turn.error or "cut off by a restart"
        return count

    async def claim_key(self, key: str, ttl: float) -> bool:
        now = time.time()
        expires = self._claimed.get(key)
        if expires is not None and expires > now:
            return False
        if len(self._claimed) > 50_000:
            self._claimed = {k: t for k, t in self._claimed.items() if t > now}
        self._claimed[key] = now + ttl
        return True

    async def put_meta(self, name: str, value: str) -> None:
        self._meta[name] = value

    async def get_meta(self, name: str) -> str | None:
        return self._meta.get(name)

    async def delete_meta(self, name: str) -> bool:
        return self._meta.pop(name, None) is not None

    async def list_meta(self, prefix: str) -> dict[str, str]:
        return {k: v for k, v in self._meta.items() if k.startswith(prefix)}

    async def add_meta(self, name: str, amount: int) -> int:
        total = int(self._meta.get(name, "0")) + int(amount)
        self._meta[name] = str(total)
        return total
