"""The normalized event stream of one agent turn.

A turn yields, in order: any number of :class:`TextDelta`, :class:`ToolUse`,
:class:`ToolResult`, :class:`ApprovalRequested` / :class:`ApprovalResolved`,
:class:`FileOffered`, :class:`AgentRetrying` and :class:`TurnWaiting` events, then
exactly one terminal event: :class:`TurnResult`
(also for agent-reported errors, with ``is_error``) or :class:`TurnError` (the
turn could not complete: the CLI died, a timeout, an internal failure).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .keys import ConversationKey


class Decision(enum.StrEnum):
    """An answer to an approval request."""

    ALLOW_ONCE = "allow_once"
    ALLOW_SESSION = "allow_session"
    DENY = "deny"

    @property
    def allowed(self) -> bool:
        return self is not Decision.DENY

    @property
    def label(self) -> str:
        return {
            Decision.ALLOW_ONCE: "Allowed once",
            Decision.ALLOW_SESSION: "Allowed for this session",
            Decision.DENY: "Denied",
        }[self]


@dataclass
class ApprovalRequest:
    """A tool call waiting for a user's decision."""

    id: str
    key: ConversationKey
    requested_by: str
    tool_name: str
    summary: str
    input: dict[str, Any]
    timeout: float
    created_at: float = field(default_factory=time.time)
    decision: Decision | None = None
    decided_by: str | None = None
    reason: str | None = None  # e.g. "timed out", "turn stopped"

    @property
    def pending(self) -> bool:
        return self.decision is None

    def describe(self) -> str:
        return f"{self.tool_name}: {self.summary}" if self.summary else self.tool_name

    def outcome(self) -> str:
        """Human-readable decision line, e.g. 'Denied by alice (timed out)' (no marks, no markup)."""
        from .approval_text import PLAIN, decision_line  # it builds on this module's ApprovalRequest

        return decision_line(self, marks=PLAIN)


@dataclass
class TextDelta:
    text: str
    new_block: bool = False  # first delta of a new text block (after tools / another message)


@dataclass
class ToolUse:
    id: str
    name: str
    summary: str
    input: dict[str, Any] = field(default_factory=dict)


@dataclass
class ToolResult:
    tool_use_id: str
    name: str
    is_error: bool
    summary: str


@dataclass
class ApprovalRequested:
    request: ApprovalRequest


@dataclass
class ApprovalResolved:
    request: ApprovalRequest


@dataclass
class FileOffered:
    """The agent hands a file from its workspace back to the user."""

    path: Path
    caption: str = ""


@dataclass
class AgentRetrying:
    """The model API failed (overloaded, rate limited, a server error) and Claude Code retries."""

    attempt: int
    max_retries: int | None
    delay: float  # seconds until the retry
    status: int | None = None  # the API's HTTP status (529 overloaded, 429 rate limited, 5xx)
    reason: str = ""

    def describe(self) -> str:
        """``Claude is overloaded, retrying (n)...``, then what the API said and how many retries there are."""
        overloaded = self.status in (None, 529, 429)
        notes = (
            [] if self.status in (None, 529) else ["rate limited" if self.status == 429 else f"API error {self.status}"]
        )
        if self.max_retries:
            notes.append(f"{self.attempt} of {self.max_retries}")
        tail = f" ({'; '.join(notes)})" if notes else ""
        return f"Claude is {'overloaded' if overloaded else 'unavailable'}, retrying ({self.attempt})...{tail}"


@dataclass
class TurnWaiting:
    """The turn waits before Claude starts: behind another turn of its conversation, or for a free process."""

    reason: str
    kind: str = "process"  # process | conversation


@dataclass
class MessagesMerged:
    """The turn answers several messages at once; ``restored`` of them waited through a restart."""

    count: int
    restored: int = 0


@dataclass
class ToolCallRecord:
    name: str
    summary: str
    is_error: bool | None = None


@dataclass
class TurnResult:
    text: str
    session_id: str
    is_error: bool = False
    error: str | None = None
    interrupted: bool = False
    cost_usd: float | None = None  # this turn's cost
    usage: dict[str, Any] | None = None
    duration_ms: int | None = None
    num_turns: int | None = None
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    session_cost_usd: float | None = None  # the session's total so far (the sum of its turns)


@dataclass
class TurnError:
    message: str
    kind: str = "agent"  # agent | unavailable | timeout | internal | store | budget (nothing ran)
    text: str = ""  # text produced before the failure
    tool_calls: list[ToolCallRecord] = field(default_factory=list)


AgentEvent = (
    TextDelta
    | ToolUse
    | ToolResult
    | ApprovalRequested
    | ApprovalResolved
    | FileOffered
    | AgentRetrying
    | TurnWaiting
    | MessagesMerged
    | TurnResult
    | TurnError
)
TERMINAL_EVENTS = (TurnResult, TurnError)
