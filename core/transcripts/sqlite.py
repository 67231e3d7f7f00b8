"""Transcripts in the SQLite database of the conversation store (tables ``transcript_*``).

Opens its own connection to the same file (WAL lets both write in turn), with
the conversation store's checks: the schema is migrated by
:class:`~core.store.sqlite.SQLiteStore`, a deleted file is noticed, faults are
classified the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from claude_agent_sdk.types import SessionKey, SessionListSubkeysKey, SessionStoreEntry, SessionStoreListEntry

from ..store.sqlite import SQLiteStore
from .base import Clock, TranscriptStore, encode_entries, make_key, subpath_of


class SQLiteTranscripts(TranscriptStore):
    def __init__(self, path: str | Path) -> None:
        self.db = SQLiteStore(path)
        self._clock = Clock()

    def describe(self) -> str:
        return f"transcripts in {self.db.describe()}"

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        if not entries:
            return
        ident = (key["project_key"], key["session_id"], subpath_of(key))
        statements: list[tuple[str, tuple[Any, ...]]] = [
            (
                "INSERT INTO transcript_sessions (project_key, session_id, subpath, mtime) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(project_key, session_id, subpath) DO UPDATE SET mtime = excluded.mtime",
                (*ident, self._clock.now()),
            )
        ]
        statements += [
            (
                "INSERT OR IGNORE INTO transcript_entries (project_key, session_id, subpath, uuid, entry) "
                "VALUES (?, ?, ?, ?, ?)",
                (*ident, uuid, text),
            )
            for uuid, text in encode_entries(entries)
        ]
        await self.db.write(*statements)

    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None:
        ident = (key["project_key"], key["session_id"], subpath_of(key))
        rows = await self.db.fetch(
            "SELECT entry FROM transcript_entries WHERE project_key = ? AND session_id = ? AND subpath = ? ORDER BY id",
            ident,
        )
        return [json.loads(r["entry"]) for r in rows] or None

    async def list_sessions(self, project_key: str) -> list[SessionStoreListEntry]:
        rows = await self.db.fetch(
            "SELECT session_id, mtime FROM transcript_sessions WHERE project_key = ? AND subpath = ''", (project_key,)
        )
        return [{"session_id": str(r["session_id"]), "mtime": int(r["mtime"])} for r in rows]

    async def delete(self, key: SessionKey) -> None:
        sub = subpath_of(key)
        where = "project_key = ? AND session_id = ?" + (" AND subpath = ?" if sub else "")
        params = (key["project_key"], key["session_id"], *((sub,) if sub else ()))
        await self.db.write(
            (f"DELETE FROM transcript_entries WHERE {where}", params),
            (f"DELETE FROM transcript_sessions WHERE {where}", params),
        )

    async def list_subkeys(self, key: SessionListSubkeysKey) -> list[str]:
        rows = await self.db.fetch(
            "SELECT subpath FROM transcript_sessions WHERE project_key = ? AND session_id = ? AND subpath != ''",
            (key["project_key"], key["session_id"]),
        )
        return [str(r["subpath"]) for r in rows]

    async def keys(self) -> list[SessionKey]:
        rows = await self.db.fetch("SELECT project_key, session_id, subpath FROM transcript_sessions")
        return [make_key(str(r["project_key"]), str(r["session_id"]), str(r["subpath"])) for r in rows]
