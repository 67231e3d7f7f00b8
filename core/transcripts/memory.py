"""Transcripts in process memory: for tests and ``store.backend: memory`` with ``transcripts: store``."""

from __future__ import annotations

import copy

from claude_agent_sdk.types import SessionKey, SessionListSubkeysKey, SessionStoreEntry, SessionStoreListEntry

from .base import Clock, TranscriptStore, encode_entries, make_key, subpath_of

_Id = tuple[str, str, str]  # (project_key, session_id, subpath)


class MemoryTranscripts(TranscriptStore):
    def __init__(self) -> None:
        self._entries: dict[_Id, list[SessionStoreEntry]] = {}
        self._uuids: dict[_Id, set[str]] = {}
        self._mtimes: dict[_Id, int] = {}
        self._clock = Clock()

    def describe(self) -> str:
        return "memory (lost when the process ends)"

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        if not entries:
            return
        ident = (key["project_key"], key["session_id"], subpath_of(key))
        kept = self._entries.setdefault(ident, [])
        seen = self._uuids.setdefault(ident, set())
        for entry, (uuid, _) in zip(entries, encode_entries(entries), strict=True):
            if uuid is not None:
                if uuid in seen:
                    continue
                seen.add(uuid)
            kept.append(copy.deepcopy(entry))
        self._mtimes[ident] = self._clock.now()

    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None:
        entries = self._entries.get((key["project_key"], key["session_id"], subpath_of(key)))
        return None if entries is None else copy.deepcopy(entries)

    async def list_sessions(self, project_key: str) -> list[SessionStoreListEntry]:
        return [
            {"session_id": sid, "mtime": self._mtimes[(pk, sid, sub)]}
            for (pk, sid, sub) in self._entries
            if pk == project_key and not sub
        ]

    async def delete(self, key: SessionKey) -> None:
        sub = subpath_of(key)
        for ident in list(self._entries):
            if ident[:2] == (key["project_key"], key["session_id"]) and (not sub or ident[2] == sub):
                self._entries.pop(ident, None)
                self._uuids.pop(ident, None)
                self._mtimes.pop(ident, None)

    async def list_subkeys(self, key: SessionListSubkeysKey) -> list[str]:
        return [sub for (pk, sid, sub) in self._entries if (pk, sid) == (key["project_key"], key["session_id"]) and sub]

    async def keys(self) -> list[SessionKey]:
        return [make_key(*ident) for ident in self._entries]
