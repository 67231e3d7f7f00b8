"""Tool permissions of a running turn: the policy's verdict, and approvals when a person must decide.

Claude Code asks twice, and both are answered here: the ``PreToolUse`` hook
(every tool call, whatever Claude Code's own rules say) and ``can_use_tool``
(when the hook said "ask"). A verdict of "ask" opens an
:class:`~core.events.ApprovalRequest` through the broker and puts an
:class:`~core.events.ApprovalRequested` event into the turn's stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from claude_agent_sdk import PermissionResultAllow, PermissionResultDeny

from ..approvals import ApprovalBroker
from ..events import ApprovalRequested, ApprovalResolved, Decision
from ..tool_policy import ALLOW, ToolContext, ToolPolicy, Verdict
from ..translate import summarize_tool_input
from .pool import WarmClient

SEND_FILE_TOOL = "mcp__ccbridge__send_file"  # checks its own path; always allowed


class Permissions:
    def __init__(self, policy: ToolPolicy, approvals: ApprovalBroker, approval_timeout: float) -> None:
        self.policy = policy
        self.approvals = approvals
        self.approval_timeout = approval_timeout
        self._session_allowed: dict[str, set[str]] = {}  # session id -> tools allowed "for this session"

    def forget_session(self, session_id: str) -> None:
        self._session_allowed.pop(session_id, None)

    async def verdict(self, warm: WarmClient, name: str, tool_input: dict[str, Any]) -> Verdict:
        state = warm.turn
        if state is None:
            return Verdict("deny", "no turn is running")
        if name == SEND_FILE_TOOL:
            return ALLOW
        req = state.request
        allowed = self._session_allowed.get(req.session_id, set())  # (kept only once something is granted)
        ctx = ToolContext(root=Path(req.root), cwd=Path(req.cwd), is_admin=req.is_admin, session_allowed=allowed)
        return await self.policy.evaluate(name, tool_input, ctx)

    async def pre_tool_use(self, warm: WarmClient, hook_input: Any) -> dict[str, Any]:
        name = str(hook_input.get("tool_name", ""))
        tool_input = hook_input.get("tool_input") or {}
        verdict = await self.verdict(warm, name, tool_input if isinstance(tool_input, dict) else {})
        output: dict[str, Any] = {"hookEventName": "PreToolUse", "permissionDecision": verdict.action}
        if verdict.reason:
            output["permissionDecisionReason"] = verdict.reason
        return {"hookSpecificOutput": output}

    async def can_use_tool(self, warm: WarmClient, name: str, tool_input: dict[str, Any]) -> Any:
        verdict = await self.verdict(warm, name, tool_input)
        if verdict.action == "allow":
            return PermissionResultAllow()
        if verdict.action == "deny":
            return PermissionResultDeny(message=verdict.reason)
        state = warm.turn
        assert state is not None  # a verdict other than deny implies a running turn
        req = state.request
        approval = await self.approvals.open(
            req.key,
            req.user_id,
            name,
            summarize_tool_input(name, tool_input),
            tool_input,
            self.approval_timeout,
        )
        state.emit(ApprovalRequested(approval))
        approval = await self.approvals.wait(approval)
        state.emit(ApprovalResolved(approval))
        if approval.decision is Decision.ALLOW_SESSION:
            self._session_allowed.setdefault(req.session_id, set()).add(name)
        if approval.decision is not None and approval.decision.allowed:
            return PermissionResultAllow()
        return PermissionResultDeny(message=f"The user did not allow {name} ({approval.outcome()}).")
