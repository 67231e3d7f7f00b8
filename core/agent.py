"""The library API: embed Claude Code sessions in your own Python app.

    async with Agent.from_config("config.yaml") as agent:
        result = await agent.chat("What's in this repo?", user_id="alice")
        print(result.text)

        async for event in agent.stream("Write tests", user_id="alice"):
            ...

Conversations are keyed by user (``platform="api"`` by default, shared with the
HTTP API) and optionally a ``thread``; ``session_id`` addresses a conversation by
its Claude Code session id. Chat bots use the same object through the dispatcher.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from .access import AccessPolicy
from .approvals import ApprovalBroker
from .config import Sections, load_config
from .conversations import Conversations
from .errors import AccessDenied, ApprovalNotFound, ConversationNotFound
from .events import (
    AgentEvent,
    ApprovalRequest,
    ApprovalRequested,
    Decision,
    ToolCallRecord,
    TurnError,
    TurnResult,
)
from .keys import ConversationKey, UserRef
from .runtime import AgentRuntime, Attachment
from .store import ConversationStore, create_store
from .tool_policy import ToolPolicy
from .workspace import Workspaces

log = logging.getLogger(__name__)

DEFAULT_PLATFORM = "api"
Approver = Callable[[ApprovalRequest], Awaitable[Decision]]


@dataclass
class ChatResult:
    text: str
    session_id: str
    key: ConversationKey
    is_error: bool = False
    error: str | None = None
    interrupted: bool = False
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    cost_usd: float | None = None
    usage: dict[str, Any] | None = None
    duration_ms: int | None = None
    timestamp: float = field(default_factory=time.time)


class Agent:
    def __init__(self, sections: Sections | None = None, *, store: ConversationStore | None = None) -> None:
        self.sections = sections or Sections()
        s = self.sections
        self.store = store or create_store(s.store)
        self.workspaces = Workspaces(s.workspace.base_dir, s.workspace.uploads_dir)
        self.approvals = ApprovalBroker()
        self.policy = ToolPolicy(s.agent, s.workspace.admin_paths)
        self.runtime = AgentRuntime(s.agent, self.policy, self.approvals)
        self.conversations = Conversations(self.store, self.workspaces, self.runtime, s.agent.model)
        self.access = AccessPolicy(s.access)
        self._started = False

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, *, bot: str | None = None) -> Agent:
        """An agent from a config file; ``bot`` applies that bot's overrides."""
        config = load_config(path)
        return cls(config.for_bot(bot) if bot else config.resolved())

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> Agent:
        if self._started:
            return self
        await self.store.open()
        interrupted = await self.store.mark_interrupted()
        if interrupted:
            log.warning("%d conversation(s) were cut off mid-turn by a restart; marked as interrupted", interrupted)
        await self.runtime.start()
        self._started = True
        return self

    async def close(self) -> None:
        if not self._started:
            return
        self._started = False
        await self.conversations.shutdown()  # running turns end as "stopped", and are recorded
        await self.runtime.close()
        await self.store.close()

    async def __aenter__(self) -> Agent:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- chatting --------------------------------------------------------------
    async def resolve_key(
        self,
        user_id: str,
        *,
        session_id: str | None = None,
        thread: str | None = None,
        platform: str = DEFAULT_PLATFORM,
    ) -> ConversationKey:
        """The conversation a call addresses: by session id, else the user's (thread's) default."""
        if session_id:
            conv = await self.conversations.find_session(session_id)
            if conv is None:
                raise ConversationNotFound(f"no session {session_id}")
            if conv.key.owner != user_id:
                raise AccessDenied(f"session {session_id} belongs to another user")
            return conv.key
        return ConversationKey(platform, user_id, thread)

    async def stream(
        self,
        text: str,
        *,
        user_id: str,
        session_id: str | None = None,
        thread: str | None = None,
        platform: str = DEFAULT_PLATFORM,
        user_name: str | None = None,
        attachments: list[Attachment] | None = None,
    ) -> AsyncIterator[AgentEvent]:
        """Run one turn and yield its events (approval requests included)."""
        await self.start()  # a no-op once started; convenient outside ``async with``
        key = await self.resolve_key(user_id, session_id=session_id, thread=thread, platform=platform)
        events = self.conversations.turn(
            key,
            text,
            UserRef(user_id, user_name),
            is_admin=self.access.is_admin(platform, user_id),
            attachments=attachments,
        )
        async with aclosing(events):
            async for event in events:
                yield event

    async def chat(
        self,
        text: str,
        *,
        user_id: str,
        session_id: str | None = None,
        thread: str | None = None,
        platform: str = DEFAULT_PLATFORM,
        on_approval: Approver | None = None,
        attachments: list[Attachment] | None = None,
    ) -> ChatResult:
        """Run one turn and return its outcome. Without ``on_approval``, tools needing approval are denied."""
        await self.start()
        key = await self.resolve_key(user_id, session_id=session_id, thread=thread, platform=platform)
        async with aclosing(
            self.stream(
                text, user_id=user_id, session_id=session_id, thread=thread, platform=platform, attachments=attachments
            )
        ) as events:
            async for event in events:
                if isinstance(event, ApprovalRequested):
                    decision = await on_approval(event.request) if on_approval else Decision.DENY
                    try:
                        self.approvals.resolve(event.request.id, decision, event.request.requested_by)
                    except ApprovalNotFound:
                        pass
                elif isinstance(event, TurnResult):
                    return ChatResult(
                        text=event.text,
                        session_id=event.session_id,
                        key=key,
                        is_error=event.is_error,
                        error=event.error,
                        interrupted=event.interrupted,
                        tool_calls=event.tool_calls,
                        cost_usd=event.cost_usd,
                        usage=event.usage,
                        duration_ms=event.duration_ms,
                    )
                elif isinstance(event, TurnError):
                    conv = await self.conversations.get(key)
                    return ChatResult(
                        text=event.text,
                        session_id=conv.session_id if conv else "",
                        key=key,
                        is_error=True,
                        error=event.message,
                        tool_calls=event.tool_calls,
                    )
        raise RuntimeError("the turn ended without a result")  # pragma: no cover - run_turn always ends one

    def resolve_approval(self, request_id: str, decision: Decision | str, user_id: str) -> ApprovalRequest:
        """Answer a pending approval as ``user_id`` (the requester or an admin)."""
        request = self.approvals.get(request_id)
        if request is None:
            raise ApprovalNotFound("this approval request was already answered or has expired")
        is_admin = self.access.is_admin(request.key.platform, user_id)
        return self.approvals.resolve(request_id, Decision(decision), user_id, is_admin=is_admin)

    async def stop(
        self,
        user_id: str,
        *,
        session_id: str | None = None,
        thread: str | None = None,
        platform: str = DEFAULT_PLATFORM,
    ) -> bool:
        key = await self.resolve_key(user_id, session_id=session_id, thread=thread, platform=platform)
        return await self.conversations.stop(key)
