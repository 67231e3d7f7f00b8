"""Coordination interfaces (:mod:`.base`) and their implementations, chosen by the ``coordination`` section."""

from __future__ import annotations

import hashlib
import os
import socket
from typing import TYPE_CHECKING

from .base import (
    ApprovalAnswer,
    ApprovalBus,
    ApprovalHandler,
    ConversationLocks,
    Coordination,
    RefusalCooldown,
    SeenKeys,
)
from .memory import MemoryApprovalBus, MemoryLocks, MemoryRefusals, MemorySeenKeys

if TYPE_CHECKING:
    from ..config import CoordinationSettings
    from ..store import ConversationStore

__all__ = [
    "ApprovalAnswer",
    "ApprovalBus",
    "ApprovalHandler",
    "ConversationLocks",
    "Coordination",
    "MemoryApprovalBus",
    "MemoryLocks",
    "MemoryRefusals",
    "MemorySeenKeys",
    "RefusalCooldown",
    "SeenKeys",
    "StoreSeenKeys",
    "create_coordination",
    "default_instance_id",
]


class StoreSeenKeys(SeenKeys):
    """Seen keys kept in the conversation store, so dedupe survives a restart (Slack retries for an hour)."""

    def __init__(self, store: ConversationStore) -> None:
        self.store = store

    async def first_time(self, key: str, ttl: float) -> bool:
        return await self.store.claim_key(key, ttl)


def default_instance_id() -> str:
    """A stable id for this machine + home: the same after a restart, distinct for another ``HOME``."""
    home = os.environ.get("CLAUDE_CONFIG_DIR") or os.path.expanduser("~")
    digest = hashlib.sha256(f"{home}|{os.getcwd()}".encode()).hexdigest()[:6]
    return f"{socket.gethostname()}-{digest}"


def create_coordination(settings: CoordinationSettings, store: ConversationStore, name: str = "bot") -> Coordination:
    """The coordination parts the ``coordination`` section asks for (memory: one process)."""
    instance_id = settings.instance_id or default_instance_id()
    if settings.backend == "memory":
        return Coordination(
            instance_id=instance_id,
            locks=MemoryLocks(),
            seen=StoreSeenKeys(store),
            refusals=MemoryRefusals(),
            approvals=MemoryApprovalBus(),
        )
    from .redis import create_redis_coordination  # optional extra: the redis package

    return create_redis_coordination(settings, store, instance_id, name)
