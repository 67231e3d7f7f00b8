"""What a turn is while it runs: the request the conversation layer made, and where its events go."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..attachments import Attachment
from ..events import AgentEvent
from ..keys import ConversationKey
from ..translate import TurnTranslator


@dataclass
class TurnRequest:
    key: ConversationKey
    session_id: str
    resume: bool  # the session already has a transcript
    cwd: str
    root: str
    model: str | None
    text: str
    user_id: str
    is_admin: bool = False
    attachments: list[Attachment] = field(default_factory=list)
    repository: str | None = None  # a project's main checkout, when the conversation works in its worktree
    branch: str | None = None  # the conversation's branch there (its git may write it, not the others)
    #: the session's total as Claude Code last reported it (the turn's cost is counted from it when the
    #: process's own starting total is unknown: a transcript resumed from the store)
    reported_total: float = 0.0
    stop_requested: bool = False  # set by /stop, even before the CLI has the prompt
    stopped: asyncio.Event = field(default_factory=asyncio.Event, repr=False, compare=False)

    def request_stop(self) -> None:
        self.stop_requested = True
        self.stopped.set()


@dataclass
class TurnState:
    """The running turn of a warm client: where its events go."""

    request: TurnRequest
    queue: asyncio.Queue[AgentEvent] = field(default_factory=asyncio.Queue)
    translator: TurnTranslator = field(default_factory=TurnTranslator)
    healthy: bool = True
    timed_out: bool = False

    def emit(self, event: AgentEvent) -> None:
        self.queue.put_nowait(event)
