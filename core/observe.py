"""What every turn leaves behind: its metrics, one log line, its cost on the user's budget.

Every turn — of a chat bot, the library or the HTTP API — runs through
:meth:`Conversations.turn <core.conversations.Conversations.turn>`, which :func:`observed`
wraps: the conversations' ``observer`` (a :class:`TurnObserver`, set by the agent) sees each
event as it passes and the turn's end. The log line (logger ``core.observe``), at INFO, or at
WARNING when the turn failed (with the reason)::

    turn ended: bot=tg conversation=telegram:42 user=telegram:42 outcome=ok duration=3.21s cost=$0.0123

carries the same facts as ``extra`` fields (``event="turn"``, ``bot``, ``conversation``, ``user``,
``outcome``, ``duration_s``, ``first_update_s``, ``cost_usd``, ``session_id``, ``error``), which
``log_format: json`` writes as JSON fields.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .events import (
    AgentEvent,
    AgentRetrying,
    ApprovalRequest,
    ApprovalResolved,
    Decision,
    TextDelta,
    ToolUse,
    TurnError,
    TurnResult,
)
from .keys import ConversationKey, UserRef

if TYPE_CHECKING:
    from .budgets import Budgets
    from .metrics import BotMetrics

log = logging.getLogger(__name__)

FAILED = frozenset({"error", "unavailable", "timeout", "internal", "store"})
TurnMethod = TypeVar("TurnMethod", bound=Callable[..., AsyncIterator[AgentEvent]])


def outcome_of(terminal: TurnResult | TurnError | None) -> str:
    """``ok`` | ``interrupted`` | ``error`` (the agent reported one) | a :class:`TurnError`'s kind."""
    if terminal is None:
        return "interrupted"  # the consumer left before the end: the turn was stopped
    if isinstance(terminal, TurnError):
        return "error" if terminal.kind == "agent" else terminal.kind
    if terminal.interrupted:
        return "interrupted"
    return "error" if terminal.is_error else "ok"


def approval_outcome(request: ApprovalRequest) -> str:
    """``allow_once`` | ``allow_session`` | ``deny`` (by a person) | ``timeout`` | ``withdrawn`` (the turn ended)."""
    if request.decision is None:
        return "pending"
    if request.decision is Decision.DENY and request.decided_by is None:
        return "timeout" if request.reason == "timed out" else "withdrawn"
    return request.decision.value


class TurnObserver:
    """Sees the turns of one agent: their metrics, their log line, their cost on the user's budget."""

    def __init__(
        self,
        bot: str,
        metrics: BotMetrics,
        budgets: Budgets | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bot = bot
        self.metrics = metrics
        self.budgets = budgets
        self.clock = clock
        self.active = 0  # turns between their start and their end (running or queued)

    def watch(self, key: ConversationKey, user: UserRef) -> TurnWatch:
        return TurnWatch(self, key, user)


class TurnWatch:
    """One turn, as it goes by."""

    def __init__(self, observer: TurnObserver, key: ConversationKey, user: UserRef) -> None:
        self.observer = observer
        self.key = key
        self.user = user
        self.started = observer.clock()
        self.first_update: float | None = None
        self.terminal: TurnResult | TurnError | None = None
        observer.active += 1

    def see(self, event: AgentEvent) -> None:
        o = self.observer
        if isinstance(event, (TextDelta, ToolUse)):
            if self.first_update is None and (not isinstance(event, TextDelta) or event.text):
                self.first_update = o.clock() - self.started
                o.metrics.first_update(self.first_update)
        elif isinstance(event, ApprovalResolved):
            o.metrics.approval(approval_outcome(event.request))
        elif isinstance(event, AgentRetrying):
            o.metrics.model_retry(event.status)
        elif isinstance(event, (TurnResult, TurnError)):
            self.terminal = event

    def raised(self, exc: Exception) -> None:
        """The turn failed with an exception instead of a terminal event."""
        if self.terminal is None:
            self.terminal = TurnError(f"internal error: {exc!r}", kind="internal")

    async def end(self) -> None:
        o = self.observer
        o.active -= 1
        duration = o.clock() - self.started
        terminal = self.terminal
        outcome = outcome_of(terminal)
        cost = terminal.cost_usd if isinstance(terminal, TurnResult) else None
        o.metrics.turn_ended(outcome, duration, cost)
        self._log(outcome, duration, cost)
        if o.budgets is not None and cost:
            # shielded: a consumer cancelled right after the result must not lose what the turn cost
            await asyncio.shield(o.budgets.record(self.key.platform, self.user.id, cost))

    def _log(self, outcome: str, duration: float, cost: float | None) -> None:
        terminal = self.terminal
        error: str | None = None
        if isinstance(terminal, TurnError):
            error = terminal.message
        elif isinstance(terminal, TurnResult) and terminal.is_error:
            error = terminal.error or "the agent reported an error"
        user = f"{self.key.platform}:{self.user.id}"
        fields: dict[str, Any] = {
            "event": "turn",
            "bot": self.observer.bot,
            "conversation": str(self.key),
            "user": user,
            "user_name": self.user.name,
            "outcome": outcome,
            "duration_s": round(duration, 3),
            "first_update_s": None if self.first_update is None else round(self.first_update, 3),
            "cost_usd": cost,
            "session_id": terminal.session_id if isinstance(terminal, TurnResult) else None,
            "error": error,
        }
        failed = outcome in FAILED
        log.log(
            logging.WARNING if failed else logging.INFO,
            "turn ended: bot=%s conversation=%s user=%s outcome=%s duration=%.2fs cost=%s%s",
            self.observer.bot,
            self.key,
            user,
            outcome,
            duration,
            "-" if cost is None else f"${cost:.4f}",
            f" reason={error!r}" if failed and error else "",
            extra=fields,
        )


def observed(turn: TurnMethod) -> TurnMethod:
    """Wrap ``Conversations.turn`` so that its ``observer`` (when set) sees every event and the end."""

    @functools.wraps(turn)
    async def watched(
        self: Any, key: ConversationKey, text: str, user: UserRef, *args: Any, **kwargs: Any
    ) -> AsyncIterator[AgentEvent]:
        observer: TurnObserver | None = getattr(self, "observer", None)
        watch = observer.watch(key, user) if observer is not None else None
        try:
            async with aclosing(turn(self, key, text, user, *args, **kwargs)) as events:
                async for event in events:
                    if watch is not None:
                        watch.see(event)
                    yield event
        except Exception as exc:
            if watch is not None:
                watch.raised(exc)
            raise
        finally:
            if watch is not None:
                await watch.end()

    return cast(TurnMethod, watched)
