"""The routes of claude-code-server clients: ``/chat``, ``/chat/stream``, ``/chat/async``,
``/task/{id}``, ``/session/{id}/history`` and ``DELETE /session/{id}`` (``/health`` is in
:mod:`.probes`).

Same bodies as those clients send and expect (``message``/``user_id``/``session_id``/
``response_mode`` in, ``content``/``session_id``/``claude_session_id``/``success`` out).
``POST /chat`` honours ``response_mode`` (``stream``: the ``/chat/stream`` events; ``async``:
the ``/chat/async`` answer); the other two routes are their own mode. Session ids:

* omitted or ``user_<user_id>``: the user's default session (shared with ``/api/v1``);
* a session id of ``/api/v1/sessions``: that session;
* any other name: a named session of that user, created on first use.

``/session/{id}/...`` takes any id (URL-encoded; it may contain ``/``) and finds a
name across users; when several users have a session of that name the answer is
409 unless ``?user_id=`` says whose.

Errors answer ``{"detail": message, "code": ...}`` (those clients read ``detail``).
``user_id`` is any non-blank text up to 128 characters without control characters.
Tools needing approval are refused (these clients cannot answer approvals). Streams are
framed as that server's (sse-starlette's defaults: ``\r\n`` line ends, ``: ping`` comments,
no ``id:`` lines).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from core import ConversationKey, TextDelta
from core.store import Conversation

from .auth import require_api_key
from .chat import finish, raise_for_outcome
from .common import Ctx, OwnerQuery, compat_errors
from .context import ApiContext
from .errors import ApiError, CompatErrorsRoute
from .models import MessageText, UserId, files_out, tool_calls_out, utc
from .sse import SEED_COMPAT, Payload, sse_stream, stream_response
from .tasks import Task
from .turns import TurnAnswer, TurnRunner

router = APIRouter(
    tags=["compat (claude-code-server)"],
    deprecated=True,
    dependencies=[Depends(require_api_key)],
    route_class=CompatErrorsRoute,
)
DEFAULT_PREFIX = "user_"
# Users sharing one session name (each has their own session under it); enough to find the allowed ones.
NAMED_LIMIT = 1000


class CompatChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # old clients send debounce options etc.

    message: MessageText
    user_id: UserId
    session_id: str | None = Field(None, min_length=1, max_length=128)
    response_mode: Literal["sync", "stream", "async"] | None = Field(
        None,
        description="On POST /chat: sync (default), stream (SSE) or async (a task id). The other routes "
        "are their own mode.",
    )
    timeout: float | None = Field(None, gt=0, le=86400)


class CompatChatResponse(BaseModel):
    content: str
    session_id: str
    claude_session_id: str | None = None
    success: bool = True
    error: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class CompatAsyncResponse(BaseModel):
    task_id: str
    status: str = "processing"
    message: str = "Task submitted successfully"


class CompatTaskStatus(BaseModel):
    task_id: str
    status: Literal["pending", "processing", "completed", "failed"]
    result: CompatChatResponse | None = None
    error: str | None = None
    created_at: datetime
    completed_at: datetime | None = None


class CompatMessage(BaseModel):
    role: Literal["user", "assistant"]
    content: str
    timestamp: datetime
    cost_usd: float | None = Field(
        None,
        description="On the last message of each turn (its reply, or the user's message when the turn "
        "answered nothing, e.g. it failed): what that turn cost in USD.",
    )


class CompatHistory(BaseModel):
    session_id: str
    user_id: str
    messages: list[CompatMessage]
    total_messages: int


class CompatCleared(BaseModel):
    message: str


# -- session ids ---------------------------------------------------------------
async def chat_target(ctx: ApiContext, user_id: str, session_id: str | None) -> tuple[ConversationKey, str | None]:
    """The conversation and (when addressed by id) the session id a compat chat goes to."""
    ctx.check_user(user_id)
    if not session_id or session_id == DEFAULT_PREFIX + user_id:
        return ctx.key(user_id), None
    conv = await ctx.agent.conversations.find_session(session_id)
    if conv is not None and ctx.owns(conv.key):  # another bot's session id is just a name here
        if conv.key.owner != user_id:
            raise ApiError(403, "forbidden", f"session {session_id} belongs to another user")
        return conv.key, session_id
    return ctx.key(user_id, session_id), None


async def find_compat_session(ctx: ApiContext, session_id: str, user_id: str | None = None) -> Conversation:
    """The session a ``/session/{session_id}`` route addresses (see the module docstring).

    404 when unknown, 403 when it is another user's than ``user_id`` or its user is not
    allowed, 409 when the name is used by several users and ``user_id`` is not given.
    """
    if user_id is not None:
        ctx.check_user(user_id)
    conv = await ctx.agent.conversations.find_session(session_id)
    if conv is not None and ctx.owns(conv.key):
        if user_id is not None and conv.key.owner != user_id:
            raise ApiError(403, "forbidden", f"session {session_id} belongs to another user")
        ctx.check_user(conv.key.owner)
        return conv
    if user_id is not None:
        key = ctx.key(user_id) if session_id == DEFAULT_PREFIX + user_id else ctx.key(user_id, session_id)
        conv = await ctx.agent.conversations.get(key)
        if conv is None:
            raise ApiError(404, "session_not_found", f"no session {session_id} for user {user_id!r}")
        return conv
    found = await sessions_named(ctx, session_id)
    allowed = [c for c in found if ctx.users.allows(c.key.owner)]
    if len(allowed) > 1:
        owners = len({c.key.owner for c in allowed})
        raise ApiError(
            409,
            "ambiguous_session",
            f"{owners} users have a session named {session_id!r}; add ?user_id=<user> to say whose",
        )
    if allowed:
        return allowed[0]
    if found:
        ctx.check_user(found[0].key.owner)  # raises: its user is not allowed
    raise ApiError(404, "session_not_found", f"no session {session_id}")


async def sessions_named(ctx: ApiContext, name: str) -> list[Conversation]:
    """Every API conversation a compat session name can mean: ``user_<id>`` (a default
    session) and the named sessions (threads) called ``name`` of any user."""
    found: list[Conversation] = []
    owner = name.removeprefix(DEFAULT_PREFIX)
    if name.startswith(DEFAULT_PREFIX) and owner:
        default = await ctx.agent.conversations.get(ctx.key(owner))
        if default is not None:
            found.append(default)
    found.extend(await ctx.list_conversations(thread=name, limit=NAMED_LIMIT))
    return found


def label(body: CompatChatRequest) -> str:
    return body.session_id or DEFAULT_PREFIX + body.user_id


def compat_response(outcome: TurnAnswer, session_label: str) -> CompatChatResponse:
    return CompatChatResponse(
        content=outcome.text,
        session_id=session_label,
        claude_session_id=outcome.session_id or None,
        success=outcome.ok,
        error=outcome.error,
        metadata={
            "cost_usd": outcome.cost_usd,
            "session_cost_usd": outcome.session_cost_usd,
            "duration_ms": outcome.duration_ms,
            "num_turns": outcome.num_turns,
            "usage": outcome.usage,
            "interrupted": outcome.interrupted,
            "tool_calls": [t.model_dump(mode="json") for t in tool_calls_out(outcome.tool_calls)],
            "files": [f.model_dump(mode="json") for f in files_out(outcome.session_id, outcome.files)],
            "timestamp": utc(outcome.timestamp).isoformat(),
            **({} if outcome.saved else {"saved": False, "warning": outcome.warning}),
        },
    )


async def start(ctx: ApiContext, body: CompatChatRequest) -> TurnRunner:
    key, session_id = await chat_target(ctx, body.user_id, body.session_id)
    return start_turn(ctx, body, key, session_id)


def start_turn(ctx: ApiContext, body: CompatChatRequest, key: ConversationKey, session_id: str | None) -> TurnRunner:
    return ctx.start_turn(key, body.message, session_id=session_id, approval_mode="deny", timeout=body.timeout)


# -- routes ----------------------------------------------------------------------
COMPAT_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "With response_mode 'stream': the events of /chat/stream; with 'async': the answer of "
        "/chat/async (a task id).",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events: message (a piece of the reply, as text), then done "
        '({"session_id", "claude_session_id", "cost_usd"}) or error ({"error", "cost_usd"}).',
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
# Failures that are no answer at all (agent failures answer 200 with success: false, as that server did).
RAISED = ("timeout", "not_found", "internal", "store", "unavailable")


@router.post(
    "/chat", response_model=CompatChatResponse, responses={**compat_errors(403, 429, 503, 504), **COMPAT_SSE_DOC}
)
async def compat_chat(body: CompatChatRequest, ctx: Ctx, request: Request) -> Any:
    """Chat in the ``response_mode`` asked for: sync (default; agent failures answer 200 with
    ``success: false``, a timeout is a 504), ``stream`` or ``async``. Disconnecting stops the turn."""
    if body.response_mode == "stream":
        return await compat_chat_stream(body, ctx)
    if body.response_mode == "async":
        accepted = await compat_chat_async(body, ctx)
        return JSONResponse(accepted.model_dump(mode="json"))
    outcome = await finish(await start(ctx, body), request)
    if outcome.error_kind in RAISED:
        raise_for_outcome(outcome)
    return compat_response(outcome, label(body))


@router.post("/chat/stream", response_class=EventSourceResponse, responses={**compat_errors(403, 429), **STREAM_DOC})
async def compat_chat_stream(body: CompatChatRequest, ctx: Ctx) -> EventSourceResponse:
    """Events: ``message`` (a piece of text), then ``done`` or ``error``."""
    session_label = label(body)

    def render(runner: TurnRunner, event: object) -> Payload | None:
        if isinstance(event, TextDelta):
            return "message", event.text
        if isinstance(event, TurnAnswer):
            if event.ok:
                done = {"session_id": session_label, "claude_session_id": event.session_id}
                return "done", {**done, "cost_usd": event.cost_usd}
            return "error", {"error": event.error or "the turn failed", "cost_usd": event.cost_usd}
        return None

    return stream_response(sse_stream(await start(ctx, body), render, SEED_COMPAT), SEED_COMPAT)


@router.post("/chat/async", responses=compat_errors(403, 429))
async def compat_chat_async(body: CompatChatRequest, ctx: Ctx) -> CompatAsyncResponse:
    key, session_id = await chat_target(ctx, body.user_id, body.session_id)
    task = ctx.tasks.submit(
        lambda: start_turn(ctx, body, key, session_id), body.user_id, labels={"session_id": label(body)}
    )
    return CompatAsyncResponse(task_id=task.id)


def compat_task(task: Task) -> CompatTaskStatus:
    outcome = task.outcome
    status = {"running": "processing", "completed": "completed", "failed": "failed"}[task.status]
    return CompatTaskStatus(
        task_id=task.id,
        status=status,  # type: ignore[arg-type]
        result=compat_response(outcome, task.labels.get("session_id", DEFAULT_PREFIX + task.user_id))
        if outcome is not None and outcome.ok
        else None,
        error=outcome.error if outcome is not None and not outcome.ok else None,
        created_at=utc(task.created_at),
        completed_at=utc(task.completed_at) if task.completed_at else None,
    )


@router.get("/task/{task_id}", responses=compat_errors(404))
async def compat_get_task(task_id: str, ctx: Ctx) -> CompatTaskStatus:
    task = ctx.tasks.get(task_id)
    if task is not None:
        return compat_task(task)
    shared = await ctx.tasks.shared(task_id)  # accepted by another instance
    if shared is None:
        raise ApiError(404, "task_not_found", f"no task {task_id} (unknown or expired)")
    return CompatTaskStatus.model_validate(shared.views["compat"])


@router.get("/session/{session_id:path}/history", responses=compat_errors(403, 404, 409))
async def compat_history(
    session_id: str, ctx: Ctx, user_id: OwnerQuery = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> CompatHistory:
    conv = await find_compat_session(ctx, session_id, user_id)
    messages: list[CompatMessage] = []
    for turn in await ctx.agent.conversations.history(conv.key, limit):
        asked = CompatMessage(role="user", content=turn.user_text, timestamp=utc(turn.started_at))
        messages.append(asked)
        if turn.reply_text:
            when = utc(turn.finished_at or turn.started_at)
            messages.append(CompatMessage(role="assistant", content=turn.reply_text, timestamp=when))
        messages[-1].cost_usd = turn.cost_usd  # the turn's last message: its reply, else the question
    return CompatHistory(session_id=session_id, user_id=conv.key.owner, messages=messages, total_messages=len(messages))


@router.delete("/session/{session_id:path}", responses=compat_errors(403, 404, 409))
async def compat_clear(session_id: str, ctx: Ctx, user_id: OwnerQuery = None) -> CompatCleared:
    conv = await find_compat_session(ctx, session_id, user_id)
    await ctx.agent.conversations.delete(conv.key)
    return CompatCleared(message="Session cleared successfully")
