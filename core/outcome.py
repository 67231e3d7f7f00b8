"""How a turn ended, built once from its terminal event.

The store's :class:`~core.store.TurnRecord`, the library's
:class:`~core.agent.ChatResult` and the HTTP API's answers all read a
:class:`TurnOutcome`, so "what counts as an error, an interruption, the reply
text, the cost" is decided in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .events import ToolCallRecord, TurnError, TurnResult

OutcomeStatus = Literal["ok", "error", "interrupted"]


@dataclass
class TurnOutcome:
    session_id: str
    text: str
    status: OutcomeStatus
    error: str | None = None
    error_kind: str | None = None  # None when ok; agent | unavailable | timeout | internal | store
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    cost_usd: float | None = None
    session_cost_usd: float | None = None
    usage: dict[str, Any] | None = None
    duration_ms: int | None = None
    num_turns: int | None = None

    @property
    def is_error(self) -> bool:
        return self.status == "error"

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"

    @classmethod
    def of(cls, terminal: TurnResult | TurnError, session_id: str) -> TurnOutcome:
        if isinstance(terminal, TurnError):
            return cls(
                session_id=session_id,
                text=terminal.text,
                status="error",
                error=terminal.message,
                error_kind=terminal.kind,
                tool_calls=list(terminal.tool_calls),
            )
        if terminal.interrupted:
            status: OutcomeStatus = "interrupted"
        else:
            status = "error" if terminal.is_error else "ok"
        return cls(
            session_id=terminal.session_id or session_id,
            text=terminal.text,
            status=status,
            error=(terminal.error or "the agent reported an error") if terminal.is_error else None,
            error_kind="agent" if terminal.is_error else None,
            tool_calls=list(terminal.tool_calls),
            cost_usd=terminal.cost_usd,
            session_cost_usd=terminal.session_cost_usd,
            usage=terminal.usage,
            duration_ms=terminal.duration_ms,
            num_turns=terminal.num_turns,
        )
