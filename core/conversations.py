"""Conversations: records in the store, their workspaces, their turns (one at a time)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

from .events import AgentEvent, TurnError, TurnResult
from .keys import ConversationKey, UserRef
from .lanes import Lanes
from .runtime import AgentRuntime, Attachment, TurnRequest
from .store import Conversation, ConversationStore, TurnRecord
from .workspace import Workspaces

log = logging.getLogger(__name__)


class Conversations:
    """The platform-neutral heart of ccbridge, shared by chat bots, the library and the HTTP API."""

    def __init__(
        self, store: ConversationStore, workspaces: Workspaces, runtime: AgentRuntime, default_model: str | None = None
    ) -> None:
        self.store = store
        self.workspaces = workspaces
        self.runtime = runtime
        self.default_model = default_model
        self.lanes = Lanes()
        self._running: dict[ConversationKey, TurnRequest] = {}
        self._creating: dict[ConversationKey, asyncio.Lock] = {}
        self._idle = asyncio.Event()  # set while no turn runs
        self._idle.set()

    # -- records -------------------------------------------------------------
    async def get(self, key: ConversationKey) -> Conversation | None:
        return await self.store.get(key)

    async def open(
        self, key: ConversationKey, *, subdir: str | None = None, metadata: dict[str, Any] | None = None
    ) -> Conversation:
        """The conversation of ``key``, created (with its workspace) when new.

        Concurrent calls for a new key create it once: all of them get the same session.
        """
        conv = await self.store.get(key)
        if conv is not None:
            return conv
        lock = self._creating.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                conv = await self.store.get(key)
                if conv is None:
                    conv = await self.create(key, subdir=subdir, metadata=metadata)
                return conv
        finally:
            if not lock.locked() and self._creating.get(key) is lock:
                del self._creating[key]

    async def create(
        self, key: ConversationKey, *, subdir: str | None = None, metadata: dict[str, Any] | None = None
    ) -> Conversation:
        """A new conversation (replacing any record under ``key``)."""
        cwd = await self.workspaces.ensure(key, subdir)
        conv = Conversation(key=key, session_id=str(uuid.uuid4()), cwd=str(cwd), metadata=dict(metadata or {}))
        await self.store.put(conv)
        return conv

    async def find_session(self, session_id: str) -> Conversation | None:
        return await self.store.find_session(session_id)

    async def delete(self, key: ConversationKey) -> bool:
        conv = await self.store.get(key)
        await self.stop(key)
        self.runtime.forget(key, conv.session_id if conv else None)
        return await self.store.delete(key)

    async def reset(self, key: ConversationKey) -> tuple[Conversation, str | None]:
        """``/new``: stop what runs, then start a fresh session in the same place."""
        await self.stop(key)
        async with self.lanes.hold(key):
            old = await self.store.get(key)
            if old is None:
                return await self.open(key), None
            self.runtime.forget(key, old.session_id)
            new = Conversation(
                key=key,
                session_id=str(uuid.uuid4()),
                cwd=old.cwd,
                model=old.model,
                created_at=time.time(),
                metadata=old.metadata,
            )
            await self.store.put(new)
            return new, old.session_id

    async def set_cwd(self, key: ConversationKey, subdir: str) -> Conversation:
        async with self.lanes.hold(key):
            conv = await self.open(key)
            conv.cwd = str(await self.workspaces.ensure(key, subdir))
            await self.store.put(conv)
            return conv

    async def set_model(self, key: ConversationKey, model: str | None) -> Conversation:
        async with self.lanes.hold(key):
            conv = await self.open(key)
            conv.model = model
            await self.store.put(conv)
            return conv

    async def history(self, key: ConversationKey, limit: int = 10) -> list[TurnRecord]:
        return await self.store.turns(key, limit)

    def model_of(self, conv: Conversation) -> str | None:
        return conv.model or self.default_model

    # -- turns ---------------------------------------------------------------
    def busy(self, key: ConversationKey) -> bool:
        return self.lanes.busy(key)

    def waiting(self, key: ConversationKey) -> int:
        return self.lanes.waiting(key)

    async def stop(self, key: ConversationKey) -> bool:
        """Interrupt the running turn (the session is kept). True if one was running.

        Works at any point of the turn, also while its Claude Code process is still starting.
        """
        request = self._running.get(key)
        if request is None:
            return False
        request.stop_requested = True
        await self.runtime.interrupt(key)
        return True

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop every running turn and give them ``grace`` seconds to record how they ended."""
        for key in list(self._running):
            await self.stop(key)
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            log.warning("%d turn(s) still running after %gs at shutdown", len(self._running), grace)

    async def turn(
        self,
        key: ConversationKey,
        text: str,
        user: UserRef,
        *,
        is_admin: bool = False,
        attachments: list[Attachment] | None = None,
        speaker: str | None = None,
    ) -> AsyncIterator[AgentEvent]:
        """Run one turn in ``key`` after any turn already running there; yields its events."""
        async with self.lanes.hold(key):
            conv = await self.open(key)
            cwd = await self._working_dir(conv)
            conv.cwd = str(cwd)
            conv.status = "running"
            conv.last_active_at = time.time()
            await self.store.put(conv)
            prompt = f"[{speaker}] {text}" if speaker else text
            request = TurnRequest(
                key=key,
                session_id=conv.session_id,
                resume=conv.message_count > 0,
                cwd=str(cwd),
                root=str(self.workspaces.root(key)),
                model=self.model_of(conv),
                text=prompt,
                user_id=user.id,
                is_admin=is_admin,
                attachments=list(attachments or []),
            )
            record = TurnRecord(key=key, session_id=conv.session_id, user_id=user.id, user_text=text)
            self._running[key] = request
            self._idle.clear()
            try:
                async with aclosing(self.runtime.run_turn(request)) as events:
                    async for event in events:
                        if isinstance(event, TurnResult):
                            record.reply_text = event.text
                            record.tool_calls = event.tool_calls
                            record.cost_usd = event.cost_usd
                            record.duration_ms = event.duration_ms
                            record.status = (
                                "interrupted" if event.interrupted else ("error" if event.is_error else "ok")
                            )
                            record.error = event.error
                        elif isinstance(event, TurnError):
                            record.reply_text = event.text
                            record.tool_calls = event.tool_calls
                            record.status = "error"
                            record.error = event.message
                        yield event
            except BaseException:
                if record.finished_at is None and record.status == "ok" and not record.reply_text:
                    record.status, record.error = "interrupted", "the turn was abandoned"
                raise
            finally:
                self._running.pop(key, None)
                if not self._running:
                    self._idle.set()
                record.finished_at = time.time()
                await self._finish_turn(key, conv.session_id, record)

    async def _working_dir(self, conv: Conversation) -> Path:
        """The conversation's directory, recreated if deleted; back to the root if it moved away."""
        rel = self.workspaces.relative(conv.key, Path(conv.cwd))
        if Path(rel).is_absolute():  # e.g. workspace.base_dir changed since it was stored
            log.warning("%s: stored cwd %s is outside its workspace; using the workspace root", conv.key, conv.cwd)
            rel = "."
        return await self.workspaces.ensure(conv.key, rel)

    async def _finish_turn(self, key: ConversationKey, session_id: str, record: TurnRecord) -> None:
        conv = await self.store.get(key)
        if conv is not None and conv.session_id == session_id:
            conv.message_count += 1
            conv.status = "idle"
            conv.last_active_at = time.time()
            await self.store.put(conv)
        await self.store.add_turn(record)
