"""Claude Code's session transcripts kept in the conversation store's backend (``store.transcripts: store``).

One :class:`TranscriptStore` per backend (memory, SQLite, Redis, PostgreSQL),
each an SDK ``SessionStore``; :class:`LocalMirror` is what a conversation's CLI
is handed (``ClaudeAgentOptions.session_store``). With ``transcripts: store`` a
conversation resumes on a machine that has never seen it.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..store.settings import (
    MemoryStoreSettings,
    PostgresStoreSettings,
    RedisStoreSettings,
    SQLiteStoreSettings,
)
from .base import TranscriptStore, make_key
from .memory import MemoryTranscripts
from .mirror import LocalMirror

__all__ = ["LocalMirror", "MemoryTranscripts", "TranscriptStore", "create_transcripts", "make_key", "transcripts_for"]


def transcripts_for(settings: Any) -> TranscriptStore:
    """The transcript store on the backend of a ``store`` section (not yet opened), whatever its mode."""
    if isinstance(settings, MemoryStoreSettings):
        return MemoryTranscripts()
    if isinstance(settings, SQLiteStoreSettings):
        from .sqlite import SQLiteTranscripts

        return SQLiteTranscripts(settings.path)
    if isinstance(settings, RedisStoreSettings):
        module = importlib.import_module("core.transcripts.redis")
        assert settings.url is not None
        return module.RedisTranscripts(settings.url.get_secret_value(), key_prefix=settings.key_prefix)  # type: ignore[no-any-return]
    if isinstance(settings, PostgresStoreSettings):
        module = importlib.import_module("core.transcripts.postgres")
        assert settings.dsn is not None
        return module.PostgresTranscripts(  # type: ignore[no-any-return]
            settings.dsn.get_secret_value(), pool_max=max(2, settings.pool_max // 2), timeout=settings.connect_timeout
        )
    raise TypeError(f"no transcript store for {type(settings).__name__}")


def create_transcripts(settings: Any) -> TranscriptStore | None:
    """The transcript store a ``store`` section asks for: None when transcripts stay local."""
    return transcripts_for(settings) if settings.transcript_mode() == "store" else None
