"""Conversation stores: one interface (:mod:`.base`), several backends, chosen by ``store.backend``.

Backends are found through :data:`BACKENDS` and imported only when used, so each
one's driver (``redis``, ``asyncpg``) is an optional extra.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import ConfigError
from .base import ConversationStore, ListFilter
from .memory import MemoryStore
from .records import Conversation, ConversationStatus, TurnRecord, TurnStatus
from .settings import (
    MemoryStoreSettings,
    PostgresStoreSettings,
    RedisStoreSettings,
    SQLiteStoreSettings,
    StoreSettings,
)
from .sqlite import SQLiteStore

__all__ = [
    "BACKENDS",
    "Conversation",
    "ConversationStatus",
    "ConversationStore",
    "ListFilter",
    "MemoryStore",
    "MemoryStoreSettings",
    "PostgresStoreSettings",
    "RedisStoreSettings",
    "SQLiteStore",
    "SQLiteStoreSettings",
    "StoreSettings",
    "TurnRecord",
    "TurnStatus",
    "create_store",
]

#: backend name -> (module, class, the pip extra that brings its driver)
BACKENDS: dict[str, tuple[str, str, str | None]] = {
    "memory": ("core.store.memory", "MemoryStore", None),
    "sqlite": ("core.store.sqlite", "SQLiteStore", None),
    "redis": ("core.store.redis", "RedisStore", "redis"),
    "postgres": ("core.store.postgres", "PostgresStore", "postgres"),
}


def store_class(backend: str) -> Any:
    try:
        module_name, class_name, extra = BACKENDS[backend]
    except KeyError:
        raise ConfigError(f"unknown store backend {backend!r}", key="store.backend") from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigError(f"the {backend} store is not available in this install", key="store.backend") from None
        raise ConfigError(
            f"the {backend} store needs the package {(exc.name or backend).split('.')[0]!r}: "
            f"pip install 'ccbridge[{extra or backend}]'",
            key="store.backend",
        ) from None
    return getattr(module, class_name)


def create_store(settings: Any) -> ConversationStore:
    """The store a config's ``store`` section asks for (not yet opened)."""
    if isinstance(settings, MemoryStoreSettings):
        return MemoryStore(history_limit=settings.history_limit)
    if isinstance(settings, SQLiteStoreSettings):
        return SQLiteStore(settings.path, history_limit=settings.history_limit)
    return store_class(settings.backend).from_settings(settings)
