"""What one Claude Code process is given as ``session_store``: its conversation's private
config directory in front of the shared :class:`~.base.TranscriptStore`.

* ``append`` mirrors the CLI's transcript lines to the store. When a batch
  failed (the store was down: the SDK retries it, then drops it), the next
  append sends what the local transcript holds beyond the store's (read back
  once), so the batches it missed are filled in and nothing is duplicated;
  lines of a later batch already sent that way are not sent again.
* ``load`` is called by the SDK before a resume. It writes the store's
  transcript into the conversation's own config directory
  (``<sessions_dir>/.../config/projects/<project key>/<session>.jsonl``) and
  returns ``None``, so the CLI resumes from there: in the same private directory
  as every other start (the SDK's own materialization would use a shared temp
  directory, outside the isolation and the sandbox's hidden paths). A local
  transcript that already holds everything the store has is kept as it is (and
  what it has beyond the store is sent to it; a transcript the store does not
  have at all is sent whole, so switching to ``transcripts: store`` keeps
  the conversations' memory). When the store cannot be read,
  a local transcript is used if there is one; otherwise the resume fails
  (better than silently starting a conversation without its memory).

The SDK derives the project key from the conversation's cwd (realpath,
non-alphanumerics replaced by ``-``), so machines sharing a store must put
workspaces at the same absolute path (``workspace.base_dir``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from claude_agent_sdk import SessionStore
from claude_agent_sdk.types import SessionKey, SessionStoreEntry

from ..errors import StoreError
from .base import TranscriptStore, ahead_of, make_key, not_yet_stored, subpath_of

log = logging.getLogger(__name__)


def transcript_path(config_dir: Path, key: SessionKey) -> Path:
    """Where the CLI keeps the transcript of ``key`` under ``config_dir`` (as the SDK maps files to keys)."""
    session_dir = config_dir / "projects" / key["project_key"]
    sub = subpath_of(key)
    if not sub:
        return session_dir / f"{key['session_id']}.jsonl"
    return session_dir / key["session_id"] / f"{sub}.jsonl"


def read_jsonl(path: Path) -> list[Any] | None:
    """The entries of a JSONL file (unparsable lines skipped), None when it does not exist (blocking)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    entries = []
    for line in text.splitlines():
        if line.strip():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries


def write_jsonl(path: Path, entries: list[Any]) -> None:
    """Replace ``path`` with ``entries``, atomically, readable by its owner only (blocking)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8", opener=lambda p, f: os.open(p, f, 0o600)) as out:
        for entry in entries:
            out.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")
    os.replace(tmp, path)


def _uuids(entries: list[Any]) -> set[str]:
    return {e["uuid"] for e in entries if isinstance(e, dict) and isinstance(e.get("uuid"), str)}


def _reconcile(path: Path, stored: list[Any]) -> list[Any]:
    """Make the local transcript complete; returns the local entries the store lacks (blocking)."""
    local = read_jsonl(path)
    if local is None:
        write_jsonl(path, stored)
        return []
    known = _uuids(local)
    if _uuids(stored) <= known and len(local) >= len(stored):
        kept = _uuids(stored)
        return [e for e in local if isinstance(e, dict) and e.get("uuid") and e["uuid"] not in kept]
    dropped = len(known - _uuids(stored))
    if dropped:
        log.warning("%s: the store's transcript is ahead; %d local line(s) not in it are replaced", path, dropped)
    write_jsonl(path, stored)
    return []


class LocalMirror(SessionStore):
    """The session store of one CLI process (see the module's docstring)."""

    def __init__(self, store: TranscriptStore, config_dir: Path) -> None:
        self.store = store
        self.config_dir = Path(config_dir)
        self._behind: set[str] = set()  # transcripts a batch of which the store missed
        self._ahead: dict[str, list[Any]] = {}  # lines sent ahead of the SDK's batches when the store caught up

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        name = json.dumps([key["project_key"], key["session_id"], subpath_of(key)])
        batch: list[Any] = self._not_sent_ahead(name, list(entries))
        ahead: list[Any] = []
        if name in self._behind:  # send what the store lacks of the local file (read back once)
            local = await asyncio.to_thread(read_jsonl, transcript_path(self.config_dir, key))
            if local:
                stored = await self.store.load(key) or []
                ahead = ahead_of(list(entries), local) or []
                batch = not_yet_stored(stored, local)
        try:
            if batch:
                await self.store.append(key, batch)
        except Exception:
            self._behind.add(name)
            self._ahead.pop(name, None)
            raise
        if ahead:
            self._ahead[name] = ahead
        if name in self._behind:
            self._behind.discard(name)
            log.info("session %s: the store has its whole transcript again", key["session_id"])

    def _not_sent_ahead(self, name: str, batch: list[Any]) -> list[Any]:
        """``batch`` without the lines already sent with the local file when the store caught up."""
        ahead = self._ahead.get(name)
        if not ahead:
            return batch
        k = 0
        while k < len(batch) and k < len(ahead) and batch[k] == ahead[k]:
            k += 1
        if k == len(ahead) or k < len(batch):  # all of it seen again (or the lines went another way)
            del self._ahead[name]
        else:
            self._ahead[name] = ahead[k:]
        return batch[k:]

    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None:
        path = transcript_path(self.config_dir, key)
        try:
            stored = await self.store.load(key)
            subkeys = await self.store.list_subkeys(key) if stored and not subpath_of(key) else []
        except StoreError as exc:
            if await asyncio.to_thread(path.is_file):
                log.warning("session %s: the store is unavailable (%s); resuming from the local transcript", key, exc)
                return None
            raise
        if not stored:  # kept locally only so far (transcripts were local, or the store is new): send it
            local = await asyncio.to_thread(read_jsonl, path)
            if local:
                await self.store.append(key, local)
            return None
        missing = await asyncio.to_thread(_reconcile, path, stored)
        if missing:
            await self.store.append(key, missing)
        for sub in subkeys:
            sub_key = make_key(key["project_key"], key["session_id"], sub)
            sub_path = transcript_path(self.config_dir, sub_key)
            if ".." in Path(sub).parts or not sub_path.resolve().is_relative_to(self.config_dir.resolve()):
                continue
            entries = await self.store.load(sub_key)
            if entries:
                await asyncio.to_thread(_write_subagent, sub_path, entries)
        return None


def _write_subagent(path: Path, entries: list[Any]) -> None:
    """A subagent's transcript, and its ``.meta.json`` sidecar (mirrored as an ``agent_metadata`` entry)."""
    meta = [e for e in entries if isinstance(e, dict) and e.get("type") == "agent_metadata"]
    lines = [e for e in entries if not (isinstance(e, dict) and e.get("type") == "agent_metadata")]
    if lines:
        write_jsonl(path, lines)
    if meta:
        sidecar = path.with_name(path.name[: -len(".jsonl")] + ".meta.json")
        sidecar.write_text(json.dumps({k: v for k, v in meta[-1].items() if k != "type"}), encoding="utf-8")
