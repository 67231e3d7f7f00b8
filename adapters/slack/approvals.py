"""Approval prompts as Block Kit: three buttons while pending, the decision once made.

Each button's ``action_id`` names the decision and its ``value`` carries the
request id; :func:`decision_for` maps a pressed button back.
"""

from __future__ import annotations

import re
from typing import Any

from core import ApprovalRequest, Decision
from core.approval_text import Marks, decision_line

from .formatting import SECTION_LIMIT, clip_escaped, escape

BLOCK_PREFIX = "ccbridge_approval"
ACTIONS: dict[str, Decision] = {
    "ccbridge_approve_once": Decision.ALLOW_ONCE,
    "ccbridge_approve_session": Decision.ALLOW_SESSION,
    "ccbridge_deny": Decision.DENY,
}
ACTION_PATTERN = re.compile("^(" + "|".join(ACTIONS) + ")$")
_BUTTONS = (
    ("ccbridge_approve_once", "Allow once", "primary"),
    ("ccbridge_approve_session", "Allow for this session", None),
    ("ccbridge_deny", "Deny", "danger"),
)
_FALLBACK_LIMIT = 300  # the notification text: a preview, the blocks show the rest
_MARKS = Marks(waiting=":hourglass_flowing_sand:", allowed=":white_check_mark:", denied=":no_entry:")


def decision_for(action_id: str) -> Decision | None:
    return ACTIONS.get(action_id)


def _request_lines(request: ApprovalRequest) -> str:
    line = f"*{escape(request.tool_name)}*"
    if request.summary:
        # The tool input is the agent's, not ours: escaped so it can't ping (<!channel>) or pose as a link.
        summary = clip_escaped(request.summary.replace("```", "'''"), SECTION_LIMIT - 200)
        line += "\n```" + summary + "```"
    return line


def outcome(request: ApprovalRequest) -> str:
    """mrkdwn decision line, e.g. ':no_entry: Denied by <@U1> (timed out)'."""
    return decision_line(request, mention=_mention, escape=escape, marks=_MARKS)


def _mention(user_id: str) -> str:
    return f"<@{user_id}>"


def prompt_blocks(request: ApprovalRequest) -> list[dict[str, Any]]:
    header = f":lock: *Approval needed* — <@{request.requested_by}>, Claude wants to use {_request_lines(request)}"
    buttons: list[dict[str, Any]] = []
    for action_id, label, style in _BUTTONS:
        button: dict[str, Any] = {
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": label},
            "value": request.id,
        }
        if style:
            button["style"] = style
        buttons.append(button)
    return [
        {"type": "section", "block_id": f"{BLOCK_PREFIX}_request", "text": {"type": "mrkdwn", "text": header}},
        {"type": "actions", "block_id": f"{BLOCK_PREFIX}_buttons", "elements": buttons},
    ]


def decided_blocks(request: ApprovalRequest) -> list[dict[str, Any]]:
    return [
        {
            "type": "section",
            "block_id": f"{BLOCK_PREFIX}_request",
            "text": {"type": "mrkdwn", "text": f":lock: {_request_lines(request)}"},
        },
        {
            "type": "context",
            "block_id": f"{BLOCK_PREFIX}_outcome",
            "elements": [{"type": "mrkdwn", "text": outcome(request)}],
        },
    ]


def fallback_text(request: ApprovalRequest) -> str:
    """The notification text (shown where blocks can't be)."""
    if request.pending:
        return f"Approval needed: {clip_escaped(request.describe(), _FALLBACK_LIMIT)}"
    return f"{clip_escaped(request.describe(), _FALLBACK_LIMIT)} — {escape(request.outcome())}"
