"""``/api/v1/chat`` in three modes: sync, SSE stream, async task (+ signed callback).

A message addresses a session by ``session_id``, or just by ``user_id`` (that
user's default session). Approval requests are refused in sync and async mode
unless ``approval_mode`` is ``"ask"``; then they wait for ``POST
/api/v1/approvals/{id}`` (listed by ``GET /api/v1/approvals`` and in the task).
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Depends
from sse_starlette import EventSourceResponse

from .auth import require_api_key
from .common import Ctx, OwnerQuery, errors
from .errors import ApiError
from .models import AsyncChatRequest, ChatRequest, ChatResponse, TaskAccepted, TaskStatus, chat_out
from .sse import v1_stream
from .tasks import task_out
from .turns import TurnOutcome, TurnRunner, error_status

router = APIRouter(prefix="/api/v1", tags=["chat"], dependencies=[Depends(require_api_key)])

TURN_ERRORS = errors(403, 404, 429, 502, 503, 504)
SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events: text_delta, tool_use, tool_result, approval_request, "
        "approval_resolved, file, then done or error (each data is a JSON object).",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


def raise_for_outcome(outcome: TurnOutcome) -> None:
    if outcome.ok:
        return
    status, code = error_status(outcome)
    raise ApiError(
        status, code, outcome.error or "the turn failed", session_id=outcome.session_id or None, text=outcome.text
    )


async def finish(runner: TurnRunner) -> TurnOutcome:
    """Wait for the turn; if the request is abandoned, stop the turn."""
    try:
        return await runner.result()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.close()


@router.post("/chat", responses=TURN_ERRORS)
async def chat(body: ChatRequest, ctx: Ctx) -> ChatResponse:
    """Run one turn and answer with its result."""
    key = await ctx.chat_key(body.user_id, body.session_id)
    runner = ctx.start_turn(
        key, body.text, session_id=body.session_id, approval_mode=body.approval_mode or "deny", timeout=body.timeout
    )
    outcome = await finish(runner)
    raise_for_outcome(outcome)
    return chat_out(outcome)


@router.post("/chat/stream", response_class=EventSourceResponse, responses={**TURN_ERRORS, **SSE_DOC})
async def chat_stream(body: ChatRequest, ctx: Ctx) -> EventSourceResponse:
    """Run one turn and stream its events; disconnecting stops the turn."""
    key = await ctx.chat_key(body.user_id, body.session_id)
    runner = ctx.start_turn(
        key, body.text, session_id=body.session_id, approval_mode=body.approval_mode or "ask", timeout=body.timeout
    )
    return EventSourceResponse(v1_stream(runner), ping=15)


@router.post("/chat/async", status_code=202, responses={**TURN_ERRORS, **errors(400)})
async def chat_async(body: AsyncChatRequest, ctx: Ctx) -> TaskAccepted:
    """Start a turn in the background; poll the task, or receive it at ``callback_url``."""
    key = await ctx.chat_key(body.user_id, body.session_id)
    task = ctx.tasks.submit(
        lambda: ctx.start_turn(
            key, body.text, session_id=body.session_id, approval_mode=body.approval_mode or "deny", timeout=body.timeout
        ),
        key.owner,
        str(body.callback_url) if body.callback_url else None,
    )
    return TaskAccepted(task_id=task.id, status=task.status, status_url=f"/api/v1/tasks/{task.id}")


@router.get("/tasks/{task_id}", tags=["tasks"], responses=errors(403, 404))
async def get_task(task_id: str, ctx: Ctx, user_id: OwnerQuery = None) -> TaskStatus:
    """An async task: running, completed (with ``result``) or failed (with ``error``)."""
    if user_id is not None:
        ctx.check_user(user_id)
    task = ctx.tasks.get(task_id)
    if task is None:
        raise ApiError(404, "task_not_found", f"no task {task_id} (unknown or expired)")
    if user_id is not None and task.user_id != user_id:
        raise ApiError(403, "forbidden", f"task {task_id} belongs to another user")
    return task_out(task)
