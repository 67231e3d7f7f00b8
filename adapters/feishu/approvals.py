"""Approval prompts as interactive cards, and the button presses that answer them.

A prompt is a card of its own (JSON 2.0), never the streaming reply card: a card in
streaming mode cannot be updated from its callback. Each button's callback ``value``
carries the request id, the decision and the conversation the request belongs to, so
a press answers that request and never reads as a new message (no new session). The
tool input is the agent's, not ours: it is shown as plain text (no Markdown, no
``<at>`` mentions). Once decided, the card is patched to show the decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core import ApprovalRequest, Decision
from core.approval_text import decision_line

ACTION = "ccbridge_approval"
SUMMARY_LIMIT = 1500
_ESCAPES = {"<": "&#60;", ">": "&#62;", **{ch: "\\" + ch for ch in "\\*_~`[]()#|"}}
_BUTTONS = (
    (Decision.ALLOW_ONCE, "Allow once", "primary_filled"),
    (Decision.ALLOW_SESSION, "Allow for this session", "default"),
    (Decision.DENY, "Deny", "danger"),
)


@dataclass(frozen=True)
class Press:
    """A decoded approval button press."""

    request_id: str
    decision: Decision
    conversation: str | None


def button_value(request: ApprovalRequest, decision: Decision) -> dict[str, str]:
    return {"ccbridge": ACTION, "request_id": request.id, "decision": decision.value, "conversation": str(request.key)}


def parse_press(value: Any) -> Press | None:
    """The press a callback's ``action.value`` encodes, or None when it is not one of ours."""
    if not isinstance(value, dict) or value.get("ccbridge") != ACTION:
        return None
    request_id, decision = value.get("request_id"), value.get("decision")
    if not isinstance(request_id, str) or not request_id:
        return None
    try:
        chosen = Decision(str(decision))
    except ValueError:
        return None
    conversation = value.get("conversation")
    return Press(request_id, chosen, conversation if isinstance(conversation, str) else None)


def _clip(text: str) -> str:
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


def _header(title: str, template: str) -> dict[str, Any]:
    return {"title": {"tag": "plain_text", "content": title}, "template": template}


def _request_elements(request: ApprovalRequest, intro: str) -> list[dict[str, Any]]:
    elements: list[dict[str, Any]] = [
        {"tag": "markdown", "element_id": "ccb_request", "content": f"{intro}**{_escape(request.tool_name)}**"}
    ]
    if request.summary:
        elements.append({"tag": "div", "text": {"tag": "plain_text", "content": _clip(request.summary)}})
    return elements


def _escape(text: str) -> str:
    """Plain words inside card Markdown (no mentions, links or emphasis from the agent's text)."""
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def prompt_card(request: ApprovalRequest) -> dict[str, Any]:
    who = f"<at id={request.requested_by}></at>, " if request.requested_by.startswith("ou_") else ""
    elements = _request_elements(request, f"{who}Claude wants to use ")
    for decision, label, style in _BUTTONS:
        elements.append(
            {
                "tag": "button",
                "element_id": f"ccb_{decision.value}"[:20],
                "text": {"tag": "plain_text", "content": label},
                "type": style,
                "behaviors": [{"type": "callback", "value": button_value(request, decision)}],
            }
        )
    return {
        "schema": "2.0",
        "config": {"update_multi": True, "summary": {"content": f"Approval needed: {request.tool_name}"}},
        "header": _header("🔐 Approval needed", "orange"),
        "body": {"elements": elements},
    }


def outcome(request: ApprovalRequest) -> str:
    """The decision line, e.g. '⛔ Denied by <at id=ou_…></at> (timed out)'."""
    return decision_line(request, mention=_mention, escape=_escape)


def _mention(user_id: str) -> str:
    """An ``<at>`` mention of a user's open_id; anything else (an admin's name) as plain words."""
    return f"<at id={user_id}></at>" if user_id.startswith("ou_") else _escape(user_id)


def decided_card(request: ApprovalRequest) -> dict[str, Any]:
    allowed = request.decision is not None and request.decision.allowed
    elements = _request_elements(request, "Claude asked to use ")
    elements.append({"tag": "markdown", "element_id": "ccb_outcome", "content": outcome(request)})
    return {
        "schema": "2.0",
        "config": {"update_multi": True, "summary": {"content": f"{request.tool_name}: {request.outcome()}"}},
        "header": _header(f"🔐 {request.tool_name}", "green" if allowed else "red"),
        "body": {"elements": elements},
    }


def toast(kind: str, text: str) -> dict[str, Any]:
    """A card callback's answer: a toast only the presser sees (``success`` / ``info`` / ``warning`` / ``error``)."""
    return {"toast": {"type": kind, "content": text}}
