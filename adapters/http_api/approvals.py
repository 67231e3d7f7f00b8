"""``/api/v1/approvals``: answer the tool approvals a turn asks for."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from .auth import require_api_key
from .common import Ctx, UserQuery, errors
from .errors import ApiError
from .models import ApprovalAnswer, ApprovalList, ApprovalResult, approval_out

router = APIRouter(prefix="/api/v1/approvals", tags=["approvals"], dependencies=[Depends(require_api_key)])


@router.get("", responses=errors(403))
async def list_approvals(ctx: Ctx, user_id: UserQuery) -> ApprovalList:
    """Approval requests of this user's API turns that wait for an answer, on whichever instance their turn
    runs (other platforms' and other HTTP API bots' are not listed)."""
    ctx.check_user(user_id)
    pending = await ctx.agent.approvals.pending_anywhere(requested_by=user_id)
    return ApprovalList(approvals=[approval_out(r) for r in pending if ctx.owns(r.key)])


@router.post("/{approval_id}", responses=errors(403, 404))
async def answer_approval(approval_id: str, body: ApprovalAnswer, ctx: Ctx) -> ApprovalResult:
    """Answer as ``user_id`` (default: the user who asked); only they or an admin may."""
    request = await ctx.agent.approvals.find(approval_id)
    if request is None or not ctx.owns(request.key):
        raise ApiError(404, "approval_not_found", "this approval request was already answered or has expired")
    answerer = body.user_id or request.requested_by
    ctx.check_user(answerer)
    resolved = await ctx.agent.resolve_approval(approval_id, body.decision, answerer)
    return ApprovalResult(
        id=resolved.id,
        tool=resolved.tool_name,
        decision=resolved.decision or body.decision,
        decided_by=resolved.decided_by,
        outcome=resolved.outcome(),
    )
