"""What the stores keep: conversations and their turn history."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from ..events import ToolCallRecord
from ..keys import ConversationKey

ConversationStatus = Literal["idle", "running", "interrupted"]
TurnStatus = Literal["queued", "merged", "running", "ok", "error", "interrupted"]


@dataclass
class Conversation:
    """One conversation: its current Claude Code session and where it works."""

    key: ConversationKey
    session_id: str
    cwd: str
    model: str | None = None
    created_at: float = field(default_factory=time.time)
    last_active_at: float = field(default_factory=time.time)
    message_count: int = 0
    status: ConversationStatus = "idle"
    metadata: dict[str, Any] = field(default_factory=dict)
    instance_id: str | None = None  # the instance running (or that last ran) its turn
    total_cost_usd: float = 0.0  # the current session's spend: the sum of its turns' costs
    cli_cost_usd: float = 0.0  # the session's cumulative cost as Claude Code last reported it
    fence: int = 0  # the owning instance's fencing token when it was written (several instances)


@dataclass
class TurnRecord:
    """One exchange: what the user said, what the agent answered, what it cost.

    Written when the turn starts (``status="running"``, the user's text already
    in) and again when it ends, so a crash mid-turn loses nothing. A message that
    waits to be answered together with others (``busy_policy: merge``, ``debounce``)
    is recorded ``queued`` at once, and becomes ``merged`` when the turn answering
    it starts; one still ``queued`` after a restart is answered by the next turn.
    """

    key: ConversationKey
    session_id: str
    user_id: str
    user_text: str
    reply_text: str = ""
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    cost_usd: float | None = None
    duration_ms: int | None = None
    status: TurnStatus = "ok"
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    turn_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    instance_id: str | None = None
