"""``/api/v2``: ccbridge's own shapes, where ``/api/v1`` answers claude-agent-http's instead.

* sessions as ccbridge's session objects (``id``, ``cwd`` relative to the workspace,
  ``status`` idle/running/interrupted), listed as ``{"sessions": [...]}`` per user;
* a stream where every event is named by its type (``event: text_delta`` ...), with ccbridge's
  events (tool_result, approval_request, file, retry, waiting...), ``done``/``error`` with the
  whole reply ``text``, and ``approval_mode`` ``"ask"`` by default.

Everything else (chat, async tasks, approvals, history, files, delete) is the same on
``/api/v1``; the sessions are the same sessions.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sse_starlette import EventSourceResponse

from .auth import require_api_key
from .chat import TURN_ERRORS, start_chat
from .common import Ctx, OwnerQuery, UserQuery, errors
from .models import ChatRequest
from .session_models import Session, SessionCreate, SessionList, session_out
from .sessions import create, resume
from .sse import V2, sse_stream, stream_response, v2_render

router = APIRouter(prefix="/api/v2", tags=["v2 (ccbridge shapes)"], dependencies=[Depends(require_api_key)])

V2_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-sent events named text_delta, tool_use, tool_result, approval_request, "
        "approval_resolved, file, retry, waiting, then done or error; each data is a JSON object with that type.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@router.post("/sessions", status_code=201, responses=errors(400, 403))
async def create_session(body: SessionCreate, ctx: Ctx) -> Session:
    """Create a new session for a user, optionally in a subdirectory of the user's workspace."""
    return session_out(await create(ctx, body), ctx.agent.workspaces)


@router.get("/sessions", responses=errors(403))
async def list_sessions(ctx: Ctx, user_id: UserQuery, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> SessionList:
    """A user's sessions, most recently active first."""
    ctx.check_user(user_id)
    convs = await ctx.list_conversations(owner=user_id, limit=limit)
    return SessionList(sessions=[session_out(c, ctx.agent.workspaces) for c in convs])


@router.get("/sessions/{session_id}", responses=errors(403, 404))
async def get_session(session_id: str, ctx: Ctx, user_id: OwnerQuery = None) -> Session:
    return session_out(await ctx.session(session_id, user_id), ctx.agent.workspaces)


@router.post("/sessions/{session_id}/resume", responses=errors(403, 404, 409))
async def resume_session(session_id: str, ctx: Ctx, user_id: OwnerQuery = None) -> Session:
    """Re-open a session: restores its working directory, clears an 'interrupted' status."""
    return session_out(await resume(ctx, session_id, user_id), ctx.agent.workspaces)


@router.post("/chat/stream", response_class=EventSourceResponse, responses={**TURN_ERRORS, **V2_SSE_DOC})
async def chat_stream(body: ChatRequest, ctx: Ctx) -> EventSourceResponse:
    """Run one turn and stream its events, each named by its type; disconnecting stops the turn."""
    return stream_response(sse_stream(await start_chat(ctx, body, "ask"), v2_render, V2), V2)
