"""``/api/v1/sessions``: a user's Claude Code sessions (core conversations on platform "api"),
in claude-agent-http's shapes.

A user's default session is ``ConversationKey("api", user_id)`` (what chat uses
with only a ``user_id``, and what the library's ``Agent.chat(user_id=...)``
uses); ``POST /api/v1/sessions`` adds more, each a conversation with its own
thread. An HTTP API bot not named ``api`` scopes its keys by its name
(``ConversationKey("api", user_id, bot=name)``): its sessions and workspaces are
its own, and its session ids are unknown to the other bots. A session's id is its Claude Code session id. ``/api/v2/sessions``
(:mod:`.v2`) serves the same sessions as ccbridge's session objects.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from core import WorkspaceError
from core.store import Conversation
from core.workspace import check_subdir

from .auth import require_api_key
from .common import Ctx, OwnerQuery, UserFilterQuery, errors
from .context import NOT_FOUND, NOT_FOUND_OR_EXPIRED, ApiContext
from .errors import ApiError
from .models import History, turn_out
from .session_models import SeedSession, SeedSessionCreate, SessionCreate, seed_session_out

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"], dependencies=[Depends(require_api_key)])


# -- operations shared with /api/v2 ------------------------------------------------
async def create(ctx: ApiContext, body: SessionCreate) -> Conversation:
    ctx.check_user(body.user_id)
    key = ctx.key(body.user_id, uuid.uuid4().hex)
    try:
        if body.subdir:
            check_subdir(body.subdir)  # too long, too deep, '..', absolute: refused before anything is created
        return await ctx.agent.conversations.create(key, subdir=body.subdir, metadata=body.metadata or {})
    except WorkspaceError as exc:
        raise ApiError(400, "invalid_subdir", f"subdir: {exc}") from None
    except OSError as exc:
        raise ApiError(400, "invalid_subdir", f"subdir: cannot create {body.subdir!r}: {exc.strerror or exc}") from None


async def resume(ctx: ApiContext, session_id: str, user_id: str | None) -> Conversation:
    """Re-open a session: check it, restore its working directory, clear an 'interrupted' mark.

    A turn cut off by a restart leaves the session ``interrupted``; resuming marks it
    ``idle`` (the turn is not replayed). A session with a running turn is returned unchanged.
    """
    conv = await ctx.session(session_id, user_id, detail=NOT_FOUND_OR_EXPIRED)
    conversations = ctx.agent.conversations
    if conversations.busy(conv.key):
        return conv
    async with conversations.locks.hold(conv.key):
        current = await conversations.get(conv.key)
        if current is None or current.session_id != session_id:
            raise ApiError(404, "session_not_found", f"no session {session_id}", detail=NOT_FOUND_OR_EXPIRED)
        relative = ctx.agent.workspaces.relative(current.key, Path(current.cwd))
        try:
            await ctx.agent.workspaces.ensure(current.key, relative)
        except (WorkspaceError, OSError) as exc:
            message = f"the session's working directory is unusable: {exc}"
            raise ApiError(409, "workspace_unavailable", message) from None
        current.status = "idle"
        current.last_active_at = time.time()
        await ctx.agent.store.put(current)
    return current


async def history(ctx: ApiContext, session_id: str, user_id: str | None, limit: int) -> History:
    conv = await ctx.session(session_id, user_id)
    turns = await ctx.agent.conversations.history(conv.key, limit)
    return History(
        session_id=conv.session_id,
        user_id=conv.key.owner,
        turns=[turn_out(t) for t in turns],
        total_cost_usd=conv.total_cost_usd,
    )


# -- routes ------------------------------------------------------------------------
@router.post("", status_code=201, responses=errors(400, 403))
async def create_session(body: SeedSessionCreate, ctx: Ctx) -> SeedSession:
    """Create a new session for a user, optionally in a subdirectory of the user's workspace (a user_id
    and subdir as claude-agent-http took them: 422 otherwise)."""
    return seed_session_out(await create(ctx, body), ctx.agent.workspaces)


@router.get("", responses=errors(403))
async def list_sessions(
    ctx: Ctx, user_id: UserFilterQuery = None, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000
) -> list[str]:
    """Session ids, most recently active first: every user's (that this API may act for), or one user's."""
    if user_id is not None:
        ctx.check_user(user_id)
        convs = await ctx.list_conversations(owner=user_id, limit=limit)
    else:
        convs = [c for c in await ctx.list_conversations(limit=limit) if ctx.users.allows(c.key.owner)]
    return [c.session_id for c in convs]


@router.get("/{session_id}", responses=errors(403, 404))
async def get_session(session_id: str, ctx: Ctx, user_id: OwnerQuery = None) -> SeedSession:
    return seed_session_out(await ctx.session(session_id, user_id), ctx.agent.workspaces)


@router.post("/{session_id}/resume", responses=errors(403, 404, 409))
async def resume_session(session_id: str, ctx: Ctx, user_id: OwnerQuery = None) -> SeedSession:
    """Re-open a session (restores its working directory, clears an 'interrupted' state); the next chat
    with this ``session_id`` continues the same Claude Code transcript."""
    return seed_session_out(await resume(ctx, session_id, user_id), ctx.agent.workspaces)


@router.delete("/{session_id}", status_code=204, response_class=Response, responses=errors(403, 404))
async def delete_session(session_id: str, ctx: Ctx, user_id: OwnerQuery = None) -> Response:
    """Delete a session and its history (a running turn is stopped first). Workspace files are kept."""
    conv = await ctx.session(session_id, user_id, detail=NOT_FOUND)
    await ctx.agent.conversations.delete(conv.key)
    return Response(status_code=204)


@router.get("/{session_id}/history", responses=errors(403, 404))
async def session_history(
    session_id: str, ctx: Ctx, user_id: OwnerQuery = None, limit: Annotated[int, Query(ge=1, le=1000)] = 20
) -> History:
    """The last ``limit`` turns of the session, oldest first, each with its own cost."""
    return await history(ctx, session_id, user_id, limit)
