"""``/api/v1/chat`` in three modes: sync, SSE stream, async task (+ signed callback).

A message (``message`` or ``text``) addresses a session by ``session_id`` (claude-agent-http's
way: the session's user speaks), or just by ``user_id`` (that user's default session).
Tools needing approval are refused at once unless the request says ``approval_mode: "ask"``
(claude-agent-http's clients send none, and could answer none); then they wait for
``POST /api/v1/approvals/{id}`` (listed by ``GET /api/v1/approvals``, in the task, and on the
stream as ``approval_request`` events). A client that disconnects stops its turn (sync and
stream alike).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from sse_starlette import EventSourceResponse

from core import ConversationKey

from .auth import require_api_key
from .common import Ctx, OwnerQuery, errors
from .context import NOT_FOUND_OR_EXPIRED, ApiContext
from .errors import ApiError
from .files import attachments_for
from .models import AsyncChatRequest, ChatRequest, ChatResponse, TaskAccepted, TaskStatus, approval_out, chat_out
from .sse import SEED_V1, refused_stream, sse_stream, stream_response, v1_render
from .tasks import task_out
from .turns import ApprovalModeName, TurnAnswer, TurnRunner, error_status

router = APIRouter(prefix="/api/v1", tags=["chat"], dependencies=[Depends(require_api_key)])

TURN_ERRORS = errors(400, 403, 404, 429, 502, 503, 504)
V1_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events, each `data: {json}` with a type: claude-agent-http's text_delta, "
        "tool_use, then done or error (also for an unknown session), as unnamed events. With approval_mode "
        "'ask', ccbridge's others too, as named events: tool_result, approval_request, approval_resolved, "
        "file, retry, waiting. /api/v2/chat/stream sends them all.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
CLIENT_GONE = 499  # nginx's "client closed request": never seen by the client, it left


def raise_for_outcome(outcome: TurnAnswer) -> None:
    if outcome.ok:
        return
    status, code = error_status(outcome)
    raise ApiError(
        status,
        code,
        outcome.error or "the turn failed",
        session_id=outcome.session_id or None,
        text=outcome.text,
        cost_usd=outcome.cost_usd,
    )


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body is already read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def finish(runner: TurnRunner, request: Request | None = None) -> TurnAnswer:
    """Wait for the turn. If the client disconnects (or the request is cancelled), stop the turn:
    it is interrupted and recorded, and its concurrency slot is freed."""
    try:
        if request is None:
            return await runner.result()
        result = asyncio.ensure_future(runner.result())
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (result, gone):
                if not task.done():
                    task.cancel()
            await asyncio.wait({gone})
        if result.done() and not result.cancelled():
            return result.result()
        raise ApiError(CLIENT_GONE, "client_closed_request", "the client closed the connection; the turn was stopped")
    finally:
        with anyio.CancelScope(shield=True):
            await runner.close()


async def turn_starter(
    ctx: ApiContext, body: ChatRequest, approval_mode: ApprovalModeName
) -> tuple[ConversationKey, Callable[[], TurnRunner]]:
    """Check the request, find its conversation and attachments; the function that starts the turn."""
    body.check()
    key = await ctx.chat_key(body.user_id, body.session_id)
    attachments = await attachments_for(ctx, key, body.attachments) if body.attachments else None

    def start() -> TurnRunner:
        return ctx.start_turn(
            key,
            body.prompt,
            session_id=body.session_id,
            approval_mode=body.approval_mode or approval_mode,
            timeout=body.timeout,
            attachments=attachments,
        )

    return key, start


async def start_chat(ctx: ApiContext, body: ChatRequest, approval_mode: ApprovalModeName) -> TurnRunner:
    _, start = await turn_starter(ctx, body, approval_mode)
    return start()


@router.post("/chat", responses=TURN_ERRORS)
async def chat(body: ChatRequest, ctx: Ctx, request: Request) -> ChatResponse:
    """Run one turn and answer with its result (disconnecting stops the turn)."""
    runner = await start_chat(ctx, body, "deny")
    outcome = await finish(runner, request)
    raise_for_outcome(outcome)
    return chat_out(outcome)


@router.post("/chat/stream", response_class=EventSourceResponse, responses={**TURN_ERRORS, **V1_SSE_DOC})
async def chat_stream(body: ChatRequest, ctx: Ctx) -> EventSourceResponse:
    """Run one turn and stream its events as claude-agent-http did (ccbridge's named events too with
    ``approval_mode: "ask"``); disconnecting stops the turn. ``/api/v2/chat/stream`` names every event."""
    try:
        runner = await start_chat(ctx, body, "deny")
    except ApiError as exc:
        if exc.code != "session_not_found":
            raise
        # claude-agent-http answered an unknown session with a 200 stream of one error chunk.
        error = {"type": "error", "error": NOT_FOUND_OR_EXPIRED, "code": exc.code, "message": exc.message}
        return stream_response(refused_stream({**error, "session_id": body.session_id}, SEED_V1), SEED_V1)
    # Asking for approvals is ccbridge's: such a client gets ccbridge's events (approval_request...) too.
    return stream_response(sse_stream(runner, v1_render(extras=body.approval_mode == "ask"), SEED_V1), SEED_V1)


@router.post("/chat/async", status_code=202, responses=TURN_ERRORS)
async def chat_async(body: AsyncChatRequest, ctx: Ctx) -> TaskAccepted:
    """Start a turn in the background; poll the task, or receive it at ``callback_url``."""
    key, start = await turn_starter(ctx, body, "deny")
    task = ctx.tasks.submit(start, key.owner, str(body.callback_url) if body.callback_url else None)
    return TaskAccepted(task_id=task.id, status=task.status, status_url=f"/api/v1/tasks/{task.id}")


@router.get("/tasks/{task_id}", tags=["tasks"], responses=errors(403, 404))
async def get_task(task_id: str, ctx: Ctx, user_id: OwnerQuery = None) -> TaskStatus:
    """An async task: running, completed (with ``result``) or failed (with ``error``)."""
    if user_id is not None:
        ctx.check_user(user_id)
    task = ctx.tasks.get(task_id)
    if task is None:
        return await _task_elsewhere(ctx, task_id, user_id)
    if user_id is not None and task.user_id != user_id:
        raise ApiError(403, "forbidden", f"task {task_id} belongs to another user")
    return task_out(task, await task.runner.pending_approvals() if task.outcome is None else [])


async def _task_elsewhere(ctx: ApiContext, task_id: str, user_id: str | None) -> TaskStatus:
    """A task another instance accepted (several instances behind one load balancer)."""
    shared = await ctx.tasks.shared(task_id)
    if shared is None:
        raise ApiError(404, "task_not_found", f"no task {task_id} (unknown or expired)")
    if user_id is not None and shared.user_id != user_id:
        raise ApiError(403, "forbidden", f"task {task_id} belongs to another user")
    status = TaskStatus.model_validate(shared.views["v1"])
    if shared.running:  # its approvals, wherever its turn runs
        waiting = await ctx.agent.approvals.pending_anywhere(requested_by=shared.user_id, key=shared.key)
        status.pending_approvals = [approval_out(r) for r in waiting]
    return status
