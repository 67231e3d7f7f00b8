"""Coordination interfaces (:mod:`.base`) and their implementations, chosen by the ``coordination`` section."""

from __future__ import annotations

import hashlib
import os
import socket
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .base import (
    ApprovalAnswer,
    ApprovalBus,
    ApprovalHandler,
    ConversationLocks,
    Coordination,
    RefusalCooldown,
    SeenKeys,
    SharedNotes,
)
from .instances import InstanceClaim, claim_instance_id
from .memory import MemoryApprovalBus, MemoryLocks, MemoryNotes, MemoryRefusals, MemorySeenKeys

if TYPE_CHECKING:
    from ..config import CoordinationSettings
    from ..store import ConversationStore

__all__ = [
    "ApprovalAnswer",
    "ApprovalBus",
    "ApprovalHandler",
    "ConversationLocks",
    "Coordination",
    "InstanceClaim",
    "MemoryApprovalBus",
    "MemoryLocks",
    "MemoryNotes",
    "MemoryRefusals",
    "MemorySeenKeys",
    "RefusalCooldown",
    "SeenKeys",
    "SharedNotes",
    "StoreSeenKeys",
    "claim_instance_id",
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
    """A stable id for this machine + home + working directory: the same after a restart, distinct for
    another ``HOME``. It is the *base* of the ids agents claim (:mod:`.instances`): a second agent live at
    the same time (same base) runs as ``<base>-2``."""
    home = os.environ.get("CLAUDE_CONFIG_DIR") or os.path.expanduser("~")
    digest = hashlib.sha256(f"{home}|{os.getcwd()}".encode()).hexdigest()[:6]
    return f"{socket.gethostname()}-{digest}"


def create_coordination(
    settings: CoordinationSettings, store: ConversationStore, name: str = "bot", instance_id: str | None = None
) -> Coordination:
    """The coordination parts the ``coordination`` section asks for (memory: one process).

    ``instance_id``: the id this agent claimed (:func:`claim_instance_id`); ``coordination.instance_id``
    wins over it, and the base :func:`default_instance_id` stands in for it when neither is given."""
    instance_id = settings.instance_id or instance_id or default_instance_id()
    if settings.backend == "memory":
        return Coordination(
            instance_id=instance_id,
            locks=MemoryLocks(),
            seen=StoreSeenKeys(store),
            refusals=MemoryRefusals(),
            approvals=MemoryApprovalBus(),
            notes=MemoryNotes(),
        )
    try:
        from .redis import create_redis_coordination  # optional extra: the redis package
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"redis coordination needs the package {(exc.name or 'redis').split('.')[0]!r}: "
            "pip install 'ccbridge[redis]'",
            key="coordination.backend",
        ) from None
    return create_redis_coordination(settings, store, instance_id, name)
