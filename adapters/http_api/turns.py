"""One agent turn run for an HTTP request, in its own task.

The turn runs in a task of its own (not in the request's task) so that a
client going away, a timeout or a server shutdown stops it the same way:
the task is cancelled once, the core's turn generator unwinds (interrupting
Claude Code and recording the turn), and the concurrency slot is released.
Consumers read :meth:`TurnRunner.events`: the turn's core events, then one
:class:`TurnAnswer`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core import (
    Agent,
    AgentEvent,
    ApprovalRequest,
    ApprovalRequested,
    Attachment,
    CCBridgeError,
    ConversationKey,
    ConversationNotFound,
    FileOffered,
    StoreError,
    TextDelta,
    ToolCallRecord,
    ToolUse,
    TurnError,
    TurnOutcome,
    TurnResult,
)

log = logging.getLogger(__name__)

ApprovalModeName = Literal["deny", "ask"]
DENY_REASON = "no one to ask: approval_mode is 'deny'"


@dataclass
class TurnSpec:
    key: ConversationKey
    text: str
    user_id: str
    session_id: str | None
    approval_mode: ApprovalModeName
    timeout: float
    attachments: list[Attachment] = field(default_factory=list)


@dataclass
class FileRef:
    name: str
    path: str  # relative to the workspace root
    caption: str = ""
    inside: bool = True  # in the workspace (downloadable through the files routes)


@dataclass
class ToolCallOut:
    """A tool call of the turn: the core's record plus the input the model gave it."""

    name: str
    summary: str
    is_error: bool | None = None
    id: str | None = None
    input: dict[str, Any] | None = None


@dataclass
class TurnAnswer:
    """How a turn ended, in the terms the HTTP API answers with.

    Built from the core's :class:`~core.outcome.TurnOutcome` (what counts as an error, an
    interruption, the text, the cost is decided there), plus what HTTP clients are given
    besides: the conversation, each tool call's input, the files offered.
    """

    key: ConversationKey
    session_id: str
    text: str
    tool_calls: list[ToolCallOut] = field(default_factory=list)
    files: list[FileRef] = field(default_factory=list)
    cost_usd: float | None = None  # this turn's cost
    session_cost_usd: float | None = None  # the session's total, this turn included
    usage: dict[str, Any] | None = None
    duration_ms: int | None = None
    num_turns: int | None = None
    interrupted: bool = False
    error_kind: str | None = None  # None = success; agent | timeout | unavailable | store | internal | not_found
    error: str | None = None
    timestamp: float = field(default_factory=time.time)
    saved: bool = True  # False: the store could not record the turn's end; it is written once it is back

    @property
    def warning(self) -> str | None:
        return None if self.saved else UNSAVED_WARNING

    @property
    def ok(self) -> bool:
        return self.error_kind is None

    @classmethod
    def of(
        cls, key: ConversationKey, outcome: TurnOutcome, tool_calls: list[ToolCallOut], files: list[FileRef]
    ) -> TurnAnswer:
        kind = outcome.error_kind
        return cls(
            key=key,
            session_id=outcome.session_id,
            text=outcome.text,
            tool_calls=tool_calls,
            files=files,
            cost_usd=outcome.cost_usd,
            session_cost_usd=outcome.session_cost_usd,
            usage=outcome.usage,
            duration_ms=outcome.duration_ms,
            num_turns=outcome.num_turns,
            interrupted=outcome.interrupted,
            error_kind=kind if kind is None or kind in ERROR_STATUS else "agent",
            error=outcome.error,
        )


UNSAVED_WARNING = (
    "the conversation store is unavailable: this reply is not in the history yet "
    "(it is written when the store is back; do not rely on it surviving a restart before then)"
)

ERROR_STATUS: dict[str, tuple[int, str]] = {
    "agent": (502, "agent_error"),
    "timeout": (504, "turn_timeout"),
    "unavailable": (503, "agent_unavailable"),
    "store": (503, "store_unavailable"),
    "budget": (429, "budget_exceeded"),  # the user's spend limit (budgets:) is reached; nothing ran
    "not_found": (404, "session_not_found"),
    "internal": (500, "internal_error"),
}


def error_status(outcome: TurnAnswer) -> tuple[int, str]:
    return ERROR_STATUS.get(outcome.error_kind or "agent", ERROR_STATUS["agent"])


_END = object()


class TurnRunner:
    def __init__(
        self,
        agent: Agent,
        spec: TurnSpec,
        on_finish: Callable[[], None],
    ) -> None:
        self.agent = agent
        self.spec = spec
        self._on_finish = on_finish
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._text: list[str] = []
        self._files: list[FileRef] = []
        self._tool_uses: list[ToolUse] = []
        self.session_id: str | None = spec.session_id  # known once the conversation is (for file URLs)

    def start(self) -> TurnRunner:
        self._task = asyncio.create_task(self._run(), name=f"ccbridge-http-turn-{self.spec.key}")
        return self

    async def pending_approvals(self) -> list[ApprovalRequest]:
        """Approvals this turn waits for, wherever it runs (one turn runs per conversation at a time)."""
        return await self.agent.approvals.pending_anywhere(requested_by=self.spec.user_id, key=self.spec.key)

    async def events(self) -> AsyncIterator[AgentEvent | TurnAnswer]:
        """The turn's non-terminal events, then its :class:`TurnAnswer` (read once)."""
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            yield item

    async def result(self) -> TurnAnswer:
        """Wait for the end of the turn."""
        async for item in self.events():
            if isinstance(item, TurnAnswer):
                return item
        raise RuntimeError("the turn ended without an outcome")  # pragma: no cover

    async def close(self) -> None:
        """Stop the turn if it still runs (the consumer left) and wait for it to unwind."""
        task = self._task
        if task is None:  # never started
            self._on_finish()
            return
        if not task.done():
            task.cancel()
        await asyncio.wait({task})

    # -- the turn's task -----------------------------------------------------
    async def _run(self) -> None:
        spec = self.spec
        outcome: TurnAnswer | None = None
        try:
            async with asyncio.timeout(spec.timeout):
                stream = self.agent.stream(
                    spec.text,
                    user_id=spec.user_id,
                    session_id=spec.session_id,
                    thread=spec.key.thread if spec.session_id is None else None,
                    attachments=spec.attachments or None,
                    bot=spec.key.bot,
                )
                async with aclosing(stream) as events:
                    async for event in events:
                        outcome = await self._handle(event) or outcome
                if outcome is not None and outcome.ok and self.agent.conversations.unsaved(spec.key):
                    outcome.saved = False  # the answer stands; the history shows it once the store is back
        except TimeoutError:
            outcome = await self._failed("timeout", f"the turn took longer than {spec.timeout:g}s and was stopped")
        except ConversationNotFound as exc:
            outcome = await self._failed("not_found", str(exc))
        except StoreError as exc:
            outcome = await self._failed("store", f"the conversation store is unavailable ({exc})")
        except CCBridgeError as exc:
            outcome = await self._failed("agent", str(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("HTTP turn of %s failed: %r", spec.key, exc)
            outcome = await self._failed("internal", "internal error (see the server log)")
        finally:
            self._on_finish()
            if outcome is None and not self._cancelling():
                outcome = await self._failed("internal", "the turn ended without a result")
            if outcome is not None:
                self._queue.put_nowait(outcome)
            self._queue.put_nowait(_END)

    def _cancelling(self) -> bool:
        task = asyncio.current_task()
        return bool(task and task.cancelling())

    async def _handle(self, event: AgentEvent) -> TurnAnswer | None:
        spec = self.spec
        if isinstance(event, TextDelta):
            self._text.append(event.text)
        elif isinstance(event, ApprovalRequested):
            if spec.approval_mode == "deny":  # also when the turn runs on another instance
                await self.agent.approvals.deny(event.request, DENY_REASON)
        elif isinstance(event, ToolUse):
            self._tool_uses.append(event)
        elif isinstance(event, FileOffered):
            self._files.append(self.file_ref(event))
            if self.session_id is None:
                try:
                    conv = await self.agent.conversations.get(spec.key)
                except CCBridgeError:
                    conv = None
                self.session_id = conv.session_id if conv else None
        elif isinstance(event, TurnResult):
            outcome = TurnOutcome.of(event, event.session_id)
            return TurnAnswer.of(spec.key, outcome, self._calls(event.tool_calls), list(self._files))
        elif isinstance(event, TurnError):
            return await self._answer_failure(event)
        self._queue.put_nowait(event)
        return None

    def _calls(self, records: list[ToolCallRecord]) -> list[ToolCallOut]:
        """The core's records (in order, one per ``ToolUse``) with each call's id and input."""
        out = []
        for index, record in enumerate(records):
            use = self._tool_uses[index] if index < len(self._tool_uses) else None
            if use is not None and use.name != record.name:
                use = None
            out.append(
                ToolCallOut(
                    name=record.name,
                    summary=record.summary,
                    is_error=record.is_error,
                    id=use.id if use else None,
                    input=dict(use.input) if use else {},
                )
            )
        return out

    def file_ref(self, event: FileOffered) -> FileRef:
        root = self.agent.workspaces.root(self.spec.key)
        try:
            rel = Path(event.path).relative_to(root).as_posix()
        except ValueError:
            return FileRef(name=Path(event.path).name, path=Path(event.path).name, caption=event.caption, inside=False)
        return FileRef(name=Path(event.path).name, path=rel, caption=event.caption)

    async def _failed(self, kind: str, message: str) -> TurnAnswer:
        """The turn was cut off here (a timeout, the store, ...): the text streamed so far is kept."""
        return await self._answer_failure(TurnError(message, kind=kind, text="".join(self._text)))

    async def _answer_failure(self, failure: TurnError) -> TurnAnswer:
        conv = None
        try:
            conv = await self.agent.conversations.get(self.spec.key)
        except CCBridgeError:
            pass
        outcome = TurnOutcome.of(failure, conv.session_id if conv else (self.spec.session_id or ""))
        return TurnAnswer.of(self.spec.key, outcome, self._calls(failure.tool_calls), list(self._files))
