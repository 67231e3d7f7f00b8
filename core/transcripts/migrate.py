"""Copy everything from one store to another (``run_bot.py --migrate-store FROM_CONFIG TO_CONFIG``).

Conversations, their turn history and named values, then the transcripts: those
the source backend keeps, and those only on this machine's disk (in the source's
``agent.sessions_dir``: transcripts kept local). Copying is idempotent — a record is
replaced, the part of a transcript the target holds already is not sent again —
so an interrupted migration can be run again. Stop the bots first: a turn running meanwhile may be missed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claude_agent_sdk._internal.session_store import file_path_to_session_key
from claude_agent_sdk.types import SessionKey

from ..store import ConversationStore
from .base import TranscriptStore, not_yet_stored
from .mirror import read_jsonl

log = logging.getLogger(__name__)


@dataclass
class Copied:
    conversations: int = 0
    turns: int = 0
    named_values: int = 0
    transcripts: int = 0
    local_transcripts: int = 0

    def __str__(self) -> str:
        return (
            f"{self.conversations} conversation(s), {self.turns} turn(s), {self.named_values} named value(s), "
            f"{self.transcripts} transcript(s) from the store and {self.local_transcripts} from local disk"
        )


def local_transcripts(sessions_dir: Path) -> list[tuple[SessionKey, Path]]:
    """The transcripts under every conversation's private config dir in ``sessions_dir`` (blocking)."""
    found = []
    for projects in sessions_dir.glob("**/config/projects"):
        for path in projects.glob("**/*.jsonl"):
            key = file_path_to_session_key(str(path), str(projects))
            if key is not None:
                found.append((key, path))
    return found


async def copy_store(
    source: ConversationStore,
    target: ConversationStore,
    source_transcripts: TranscriptStore | None,
    target_transcripts: TranscriptStore,
    sessions_dir: Path | None = None,
) -> Copied:
    """Copy ``source`` into ``target`` (all four opened); returns what was copied."""
    copied = Copied()
    for conv in await source.list(limit=10_000_000):
        await target.put(conv)
        copied.conversations += 1
        for record in await source.turns(conv.key, limit=max(source.history_limit, 1)):
            await target.put_turn(record)
            copied.turns += 1
    try:
        for name, value in (await source.list_meta("")).items():
            await target.put_meta(name, value)
            copied.named_values += 1
    except NotImplementedError:
        pass
    if source_transcripts is not None:
        for key in await source_transcripts.keys():
            entries = await source_transcripts.load(key)
            if entries:
                await _send(target_transcripts, key, entries)
                copied.transcripts += 1
    if sessions_dir is not None:
        for key, path in await asyncio.to_thread(local_transcripts, sessions_dir):
            entries = await asyncio.to_thread(read_jsonl, path)
            if entries:
                await _send(target_transcripts, key, entries)
                copied.local_transcripts += 1
    return copied


async def _send(target: TranscriptStore, key: SessionKey, entries: list[Any]) -> None:
    """``entries`` (a whole transcript) into ``target``, but what it holds already (a run again)."""
    missing = not_yet_stored(await target.load(key) or [], entries)
    if missing:
        await target.append(key, missing)
