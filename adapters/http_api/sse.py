"""Core events as server-sent events. Every ``data`` is a JSON object with a ``type``.

``/api/v1/chat/stream`` (claude-agent-http's stream): its four types arrive as plain,
unnamed SSE events (an SSE client sees them as ``message`` events), as that API sent them::

    data: {"type": "text_delta", "text": "Here"}
    data: {"type": "tool_use", "tool_name": "Write", "tool_input": {...}}
    data: {"type": "done"}                    (or {"type": "error", "error": "..."})

each with ccbridge's extra fields (``done`` carries the whole chat response: text, cost,
files...). ccbridge's other events are named SSE events, so a client of that API's
``message`` events never sees them: ``tool_result``, ``approval_request``,
``approval_resolved``, ``file``, ``retry`` (the model API is overloaded or rate limited
and Claude Code retries) and ``waiting`` (the turn waits for a free process or for the
conversation's previous turn).

``/api/v2/chat/stream`` names every event by its type (``event: text_delta`` ...).

Every stream opens with an SSE comment, ``: accepted``, sent as soon as the turn is taken on
(before Claude Code has started): a sign of life that SSE clients skip, as they skip the
``: ping`` comments that keep an idle stream open.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from core import (
    AgentRetrying,
    ApprovalRequested,
    ApprovalResolved,
    FileOffered,
    TextDelta,
    ToolResult,
    ToolUse,
    TurnWaiting,
)

from .models import approval_out, chat_out, file_url, tool_calls_out
from .turns import TurnOutcome, TurnRunner, error_status

ACCEPTED = {"comment": "accepted"}  # the stream's first line, ": accepted" (SSE clients skip comments)
SEED_TYPES = frozenset({"text_delta", "tool_use", "done", "error"})  # claude-agent-http's StreamChunk types


def _sse(event: str | None, data: dict[str, Any] | str, seq: int) -> dict[str, Any]:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)
    return {"event": event, "data": text, "id": str(seq)}


def outcome_data(outcome: TurnOutcome) -> dict[str, Any]:
    """``done`` for a finished turn, ``error`` for a failed one."""
    if outcome.ok:
        return {"type": "done", **chat_out(outcome).model_dump(mode="json")}
    _, code = error_status(outcome)
    message = outcome.error or "the turn failed"
    return {
        "type": "error",
        "error": message,
        "code": code,
        "message": message,
        "session_id": outcome.session_id or None,
        "text": outcome.text,
        "tool_calls": [t.model_dump(mode="json") for t in tool_calls_out(outcome.tool_calls)],
    }


def event_data(runner: TurnRunner, event: object) -> dict[str, Any] | None:
    """One event as its JSON data (with ``type``), or None for events the API does not show."""
    if isinstance(event, TextDelta):
        return {"type": "text_delta", "text": event.text, "new_block": event.new_block}
    if isinstance(event, ToolUse):
        return {
            "type": "tool_use",
            "tool_name": event.name,
            "tool_input": event.input,
            "id": event.id,
            "name": event.name,
            "summary": event.summary,
            "input": event.input,
        }
    if isinstance(event, ToolResult):
        return {
            "type": "tool_result",
            "tool_use_id": event.tool_use_id,
            "name": event.name,
            "is_error": event.is_error,
            "summary": event.summary,
        }
    if isinstance(event, ApprovalRequested):
        return {"type": "approval_request", **approval_out(event.request).model_dump(mode="json")}
    if isinstance(event, ApprovalResolved):
        req = event.request
        return {
            "type": "approval_resolved",
            "id": req.id,
            "tool": req.tool_name,
            "decision": req.decision.value if req.decision else None,
            "decided_by": req.decided_by,
            "outcome": req.outcome(),
        }
    if isinstance(event, FileOffered):
        ref = runner.file_ref(event)
        session_id = runner.session_id
        url = file_url(session_id, ref.path) if ref.inside and session_id else None
        return {"type": "file", "name": ref.name, "path": ref.path, "caption": ref.caption, "url": url}
    if isinstance(event, AgentRetrying):
        return {
            "type": "retry",
            "attempt": event.attempt,
            "max_retries": event.max_retries,
            "delay": event.delay,
            "status": event.status,
            "reason": event.reason,
            "message": event.describe(),
        }
    if isinstance(event, TurnWaiting):
        return {"type": "waiting", "reason": event.reason, "kind": event.kind}
    if isinstance(event, TurnOutcome):
        return outcome_data(event)
    return None


def v1_render(runner: TurnRunner, event: object) -> tuple[str | None, dict[str, Any]] | None:
    data = event_data(runner, event)
    if data is None:
        return None
    return (None if data["type"] in SEED_TYPES else data["type"]), data


def v2_render(runner: TurnRunner, event: object) -> tuple[str | None, dict[str, Any]] | None:
    data = event_data(runner, event)
    return None if data is None else (data["type"], data)


Render = Callable[[TurnRunner, object], "tuple[str | None, dict[str, Any] | str] | None"]


async def sse_stream(runner: TurnRunner, render: Render) -> AsyncIterator[dict[str, Any]]:
    """The SSE stream of one turn, rendered by ``render``; leaving it early stops the turn.

    sse-starlette cancels this generator when the client disconnects; closing the
    runner is shielded so the turn is interrupted and recorded (and its concurrency
    slot freed) even then.
    """
    seq = 0
    try:
        yield ACCEPTED
        async for event in runner.events():
            payload = render(runner, event)
            if payload is not None:
                seq += 1
                yield _sse(*payload, seq)
    finally:
        with anyio.CancelScope(shield=True):
            await runner.close()
