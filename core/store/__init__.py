"""Conversation stores: one interface, several backends."""

from __future__ import annotations

from ..config import StoreSettings
from ..errors import ConfigError
from .base import ConversationStore
from .memory import MemoryStore
from .records import Conversation, ConversationStatus, TurnRecord, TurnStatus
from .sqlite import SQLiteStore

__all__ = [
    "Conversation",
    "ConversationStatus",
    "ConversationStore",
    "MemoryStore",
    "SQLiteStore",
    "TurnRecord",
    "TurnStatus",
    "create_store",
]


def create_store(settings: StoreSettings) -> ConversationStore:
    """The store a config's ``store`` section asks for (not yet opened)."""
    if settings.backend == "memory":
        return MemoryStore(history_limit=settings.history_limit)
    if settings.backend == "sqlite":
        return SQLiteStore(settings.path, history_limit=settings.history_limit)
    raise ConfigError(f"unknown store backend {settings.backend!r}", key="store.backend")
