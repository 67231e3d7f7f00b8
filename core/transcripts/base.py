"""The transcript store interface: Claude Code's session transcripts kept in the conversation store's backend.

A :class:`TranscriptStore` is an SDK :class:`~claude_agent_sdk.SessionStore`
(``ClaudeAgentOptions.session_store``), and passes the SDK's conformance suite
(``claude_agent_sdk.testing.run_session_store_conformance``). Contract:

* ``append(key, entries)`` adds entries in call order. An entry carrying a
  ``uuid`` is stored once per transcript: a retried append (the SDK retries a
  failed batch) never duplicates it; entries without one are always appended
  (a transcript sent again whole sends only :func:`not_yet_stored`).
* ``load(key)`` returns every entry of the transcript, deep-equal to what was
  appended, in order; ``None`` for a transcript never written.
* ``list_sessions(project_key)``: the main transcripts of a project with their
  storage time (epoch ms); ``list_subkeys``: a session's subagent transcripts.
* ``delete`` of a main transcript removes its subkeys too.
* ``keys()`` lists every transcript (for ``run_bot.py --migrate-store``).
* Failures raise :class:`~core.errors.StoreError`;
  :class:`~core.errors.StoreUnavailable` when the backend cannot be reached. A
  backend that comes back is used again without reopening.
* Every method is a coroutine and never blocks the event loop.
"""

from __future__ import annotations

import json
import time
from abc import abstractmethod
from typing import Any

from claude_agent_sdk import SessionStore
from claude_agent_sdk.types import SessionKey, SessionListSubkeysKey, SessionStoreEntry, SessionStoreListEntry


def subpath_of(key: SessionKey) -> str:
    """The key's subpath, ``""`` for a main transcript."""
    return key.get("subpath") or ""


def make_key(project_key: str, session_id: str, subpath: str = "") -> SessionKey:
    key: SessionKey = {"project_key": project_key, "session_id": session_id}
    if subpath:
        key["subpath"] = subpath
    return key


def encode_entries(entries: list[SessionStoreEntry]) -> list[tuple[str | None, str]]:
    """``(uuid or None, JSON text)`` for each entry: the uuid is the idempotency key."""
    rows = []
    for entry in entries:
        uuid = entry.get("uuid") if isinstance(entry, dict) else None
        rows.append((uuid if isinstance(uuid, str) and uuid else None, json.dumps(entry, ensure_ascii=False)))
    return rows


def not_yet_stored(stored: list[Any], entries: list[Any]) -> list[Any]:
    """What of ``entries`` (a whole transcript, sent again) a store holding ``stored`` lacks.

    When the store holds a beginning of the transcript, the rest; otherwise the entries whose uuid
    it lacks. Entries without a uuid (``last-prompt``, ``cost-state``, ...) are appended whenever
    sent, so a transcript sent whole again must not send them twice.
    """
    if len(stored) <= len(entries) and entries[: len(stored)] == stored:
        return entries[len(stored) :]
    known = {e["uuid"] for e in stored if isinstance(e, dict) and isinstance(e.get("uuid"), str)}
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("uuid"), str) and e["uuid"] not in known]


def ahead_of(batch: list[Any], entries: list[Any]) -> list[Any] | None:
    """The entries of a transcript that come after ``batch`` (its last occurrence in it): what the
    CLI had written beyond the batch being sent, which its next batches will bring again. None when
    ``batch`` is not found in it."""
    n = len(batch)
    if not n:
        return None
    for end in range(len(entries), n - 1, -1):
        if entries[end - n : end] == batch:
            return entries[end:]
    return None


class Clock:
    """Storage time in epoch milliseconds, strictly increasing within the process."""

    def __init__(self) -> None:
        self._last = 0

    def now(self) -> int:
        now = int(time.time() * 1000)
        self._last = now if now > self._last else self._last + 1
        return self._last


class TranscriptStore(SessionStore):
    """Where mirrored transcripts live; one implementation per conversation-store backend."""

    async def open(self) -> None:
        """Connect / create the tables. Called once before use."""

    async def close(self) -> None:
        """Release connections."""

    def describe(self) -> str:
        return type(self).__name__

    @abstractmethod
    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None: ...

    @abstractmethod
    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None: ...

    @abstractmethod
    async def list_sessions(self, project_key: str) -> list[SessionStoreListEntry]: ...

    @abstractmethod
    async def delete(self, key: SessionKey) -> None: ...

    @abstractmethod
    async def list_subkeys(self, key: SessionListSubkeysKey) -> list[str]: ...

    @abstractmethod
    async def keys(self) -> list[SessionKey]:
        """Every transcript kept (main ones and subkeys)."""

    async def __aenter__(self) -> TranscriptStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
