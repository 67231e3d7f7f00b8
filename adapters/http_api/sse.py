"""Core events as server-sent events of ``POST /api/v1/chat/stream``.

Event names: ``text_delta``, ``tool_use``, ``tool_result``, ``approval_request``,
``approval_resolved``, ``file``, then exactly one of ``done`` or ``error``.
Every ``data`` is a JSON object.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from core import ApprovalRequested, ApprovalResolved, FileOffered, TextDelta, ToolResult, ToolUse

from .models import approval_out, chat_out, tool_calls_out
from .turns import TurnOutcome, TurnRunner, error_status


def _sse(event: str, data: dict[str, Any] | str, seq: int) -> dict[str, Any]:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)
    return {"event": event, "data": text, "id": str(seq)}


def outcome_event(outcome: TurnOutcome) -> tuple[str, dict[str, Any]]:
    """``done`` for a finished turn, ``error`` for a failed one."""
    if outcome.ok:
        return "done", chat_out(outcome).model_dump(mode="json")
    _, code = error_status(outcome)
    return "error", {
        "code": code,
        "message": outcome.error or "the turn failed",
        "session_id": outcome.session_id or None,
        "text": outcome.text,
        "tool_calls": [t.model_dump(mode="json") for t in tool_calls_out(outcome.tool_calls)],
    }


def event_payload(runner: TurnRunner, event: object) -> tuple[str, dict[str, Any]] | None:
    if isinstance(event, TextDelta):
        return "text_delta", {"text": event.text, "new_block": event.new_block}
    if isinstance(event, ToolUse):
        return "tool_use", {"id": event.id, "name": event.name, "summary": event.summary, "input": event.input}
    if isinstance(event, ToolResult):
        return "tool_result", {
            "tool_use_id": event.tool_use_id,
            "name": event.name,
            "is_error": event.is_error,
            "summary": event.summary,
        }
    if isinstance(event, ApprovalRequested):
        return "approval_request", approval_out(event.request).model_dump(mode="json")
    if isinstance(event, ApprovalResolved):
        req = event.request
        return "approval_resolved", {
            "id": req.id,
            "tool": req.tool_name,
            "decision": req.decision.value if req.decision else None,
            "decided_by": req.decided_by,
            "outcome": req.outcome(),
        }
    if isinstance(event, FileOffered):
        ref = runner.file_ref(event)
        return "file", {"name": ref.name, "path": ref.path, "caption": ref.caption}
    if isinstance(event, TurnOutcome):
        return outcome_event(event)
    return None


Render = Callable[[TurnRunner, object], "tuple[str, dict[str, Any] | str] | None"]


async def sse_stream(runner: TurnRunner, render: Render) -> AsyncIterator[dict[str, Any]]:
    """The SSE stream of one turn, rendered by ``render``; leaving it early stops the turn.

    sse-starlette cancels this generator when the client disconnects; closing the
    runner is shielded so the turn is interrupted and recorded even then.
    """
    seq = 0
    try:
        async for event in runner.events():
            payload = render(runner, event)
            if payload is not None:
                seq += 1
                yield _sse(*payload, seq)
    finally:
        with anyio.CancelScope(shield=True):
            await runner.close()


def v1_stream(runner: TurnRunner) -> AsyncIterator[dict[str, Any]]:
    return sse_stream(runner, event_payload)
