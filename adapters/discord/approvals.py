"""Approval prompts as buttons that survive a restart of the bot process.

Each button's ``custom_id`` is ``ccb:ap:<request id>:<o|s|d>`` (allow once / for
this session / deny). :class:`ApprovalButton` is registered with the client as a
:class:`discord.ui.DynamicItem` template, so discord.py routes a press to it by
matching that id, whichever process sent the prompt: a press after a restart
reaches the callback too, and is answered (the request is gone: "already
answered or expired"), never silently ignored.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import discord

from core import ApprovalRequest, Decision
from core.approval_text import decision_line

log = logging.getLogger(__name__)

PREFIX = "ccb:ap:"
CODES = {Decision.ALLOW_ONCE: "o", Decision.ALLOW_SESSION: "s", Decision.DENY: "d"}
DECISIONS = {code: decision for decision, code in CODES.items()}
TEMPLATE = re.compile(r"ccb:ap:(?P<id>[A-Za-z0-9_-]{1,80}):(?P<decision>[osd])")
BUTTONS: dict[Decision, tuple[str, discord.ButtonStyle, str]] = {
    Decision.ALLOW_ONCE: ("Allow once", discord.ButtonStyle.success, "✅"),
    Decision.ALLOW_SESSION: ("Allow for this session", discord.ButtonStyle.primary, "♾️"),
    Decision.DENY: ("Deny", discord.ButtonStyle.danger, "⛔"),
}
# A press of a button the message no longer shows (a client that had not refreshed) is not routed to
# the DynamicItem by discord.py; the client's ``on_interaction`` answers it (see adapter.BridgeClient).
SUMMARY_LIMIT = 1500  # the prompt stays well under Discord's 2,000 characters


def custom_id(request_id: str, decision: Decision) -> str:
    return f"{PREFIX}{request_id}:{CODES[decision]}"


class ApprovalButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    """One approval button; a press calls ``client.on_approval_press(interaction, request_id, decision)``."""

    def __init__(self, request_id: str, decision: Decision) -> None:
        label, style, emoji = BUTTONS[decision]
        super().__init__(
            discord.ui.Button(label=label, style=style, emoji=emoji, custom_id=custom_id(request_id, decision))
        )
        self.request_id = request_id
        self.decision = decision

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ApprovalButton:
        return cls(match["id"], DECISIONS[match["decision"]])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        handler = getattr(interaction.client, "on_approval_press", None)
        if handler is None:
            log.warning("approval button pressed on a client without an approval handler")
            return
        await handler(interaction, self.request_id, self.decision)


def view(request: ApprovalRequest) -> discord.ui.View:
    """The three buttons of a pending request (no timeout: they stay pressable until answered)."""
    buttons = discord.ui.View(timeout=None)
    for decision in CODES:
        buttons.add_item(ApprovalButton(request.id, decision))
    return buttons


def _custom_ids(message: discord.Message | None) -> list[str]:
    if message is None:
        return []
    out: list[str] = []
    for row in message.components:
        for child in getattr(row, "children", [row]):
            custom = getattr(child, "custom_id", None)
            if custom:
                out.append(str(custom))
    return out


def is_prompt(message: discord.Message | None) -> bool:
    """Whether ``message`` still carries approval buttons."""
    return any(c.startswith(PREFIX) for c in _custom_ids(message))


def shows(message: discord.Message | None, custom: str) -> bool:
    """Whether ``message`` (as the press reports it) still has the button ``custom``."""
    return custom in _custom_ids(message)


def parse(custom: str) -> tuple[str, Decision] | None:
    """The request id and decision of one of our buttons' custom ids, else None."""
    m = TEMPLATE.fullmatch(custom)
    return (m["id"], DECISIONS[m["decision"]]) if m else None


def _who(user_id: str | None) -> str:
    if not user_id:
        return "someone"
    return f"<@{user_id}>" if user_id.isdigit() else user_id


def _request_lines(request: ApprovalRequest) -> str:
    line = f"`{_inline(request.tool_name, 100)}`"
    if request.summary:
        summary = request.summary.replace("```", "'''")
        if len(summary) > SUMMARY_LIMIT:
            summary = summary[: SUMMARY_LIMIT - 1] + "…"
        line += f"\n```\n{summary}\n```"
    return line


def prompt_text(request: ApprovalRequest) -> str:
    return (
        f"🔐 **Approval needed** — {_who(request.requested_by)}, Claude wants to use {_request_lines(request)}\n"
        "Only the person who asked, or an admin, can answer."
    )


def outcome_line(request: ApprovalRequest) -> str:
    """The decision line, e.g. '⛔ Denied by <@123> (timed out)'."""
    return decision_line(request, mention=_who, escape=_reason)


def _reason(text: str) -> str:
    return discord.utils.escape_markdown(_inline(text, 200))


def decided_text(request: ApprovalRequest) -> str:
    return f"🔐 {_request_lines(request)}\n{outcome_line(request)}"


def expired_text(content: str) -> str:
    """A prompt nobody waits for any more (the bot restarted): its text, marked as expired."""
    note = "⌛ No longer waiting — the request was already answered or has expired."
    body = content.replace("Only the person who asked, or an admin, can answer.", "").rstrip()
    return f"{body}\n{note}" if body else note


def requester_mentions(request: ApprovalRequest) -> discord.AllowedMentions:
    """The prompt pings the person who asked (and nobody else)."""
    if request.requested_by and request.requested_by.isdigit():
        return discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(int(request.requested_by))])
    return discord.AllowedMentions.none()


def _inline(text: str, limit: int) -> str:
    one = " ".join(text.split()).replace("`", "'")
    return one if len(one) <= limit else one[: limit - 1] + "…"
