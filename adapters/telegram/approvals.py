"""Approval prompts as inline keyboards, and the button presses that answer them.

A button's ``callback_data`` is ``ap:<request id>:<o|s|d>`` (well under
Telegram's 64 bytes: request ids are 12 characters).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from core import ApprovalRequest, Decision
from core.approval_text import decision_line

PREFIX = "ap"
_CODES = {Decision.ALLOW_ONCE: "o", Decision.ALLOW_SESSION: "s", Decision.DENY: "d"}
_DECISIONS = {code: decision for decision, code in _CODES.items()}
_BUTTONS = (
    (Decision.ALLOW_ONCE, "✅ Allow once"),
    (Decision.ALLOW_SESSION, "♾ Allow for this session"),
    (Decision.DENY, "⛔ Deny"),
)

FORBIDDEN_TEXT = "Only the person who asked, or an admin, can answer this request."
EXPIRED_TEXT = "This request was already answered or has expired."


@dataclass(frozen=True)
class Press:
    """A decoded approval button press."""

    request_id: str
    decision: Decision


def callback_data(request_id: str, decision: Decision) -> str:
    data = f"{PREFIX}:{request_id}:{_CODES[decision]}"
    if len(data.encode()) > 64:
        raise ValueError(f"approval id {request_id!r} is too long for Telegram callback data")
    return data


def parse_press(data: str | None) -> Press | None:
    """The press encoded in ``data``, or None when it is not one of ours (or malformed)."""
    if not data:
        return None
    prefix, _, rest = data.partition(":")
    request_id, _, code = rest.rpartition(":")
    if prefix != PREFIX or not request_id or code not in _DECISIONS:
        return None
    return Press(request_id, _DECISIONS[code])


def keyboard(request: ApprovalRequest) -> InlineKeyboardMarkup:
    once, session, deny = (
        InlineKeyboardButton(label, callback_data=callback_data(request.id, decision)) for decision, label in _BUTTONS
    )
    return InlineKeyboardMarkup([[once, deny], [session]])


def prompt_text(request: ApprovalRequest, names: Mapping[str, str]) -> str:
    who = names.get(request.requested_by, request.requested_by)
    summary = f"\n`{_inline(request.summary)}`" if request.summary else ""
    return f"🔐 **Approval needed** — Claude wants to use **{request.tool_name}**{summary}\nRequested by {who}."


def outcome_text(request: ApprovalRequest, names: Mapping[str, str]) -> str:
    if request.decision is None:
        return prompt_text(request, names)
    line = decision_line(request, mention=lambda user: names.get(user, user))
    summary = f"\n`{_inline(request.summary)}`" if request.summary else ""
    return f"🔐 **{request.tool_name}**{summary}\n{line}"


def _inline(text: str, limit: int = 600) -> str:
    one = text.replace("`", "'")
    return one if len(one) <= limit else one[: limit - 1] + "…"
