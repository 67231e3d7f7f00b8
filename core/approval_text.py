"""The decision line of an approval prompt, in a platform's own markup.

Every chat adapter shows an answered prompt with the same line — its mark, the
decision, who decided and why, e.g. ``⛔ Denied by @alice (timed out)`` — and a
pending one as ``⏳ Waiting for approval``. Only the markup differs, so the
adapter passes it in: how a user is mentioned, how free text is escaped, which
marks stand in front.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .events import ApprovalRequest


@dataclass(frozen=True)
class Marks:
    """The icons in front of the line (``""``: none)."""

    waiting: str = "⏳"
    allowed: str = "✅"
    denied: str = "⛔"


#: Unicode emoji, for platforms that show them as they are.
EMOJI = Marks()
#: No marks: the bare line (``ApprovalRequest.outcome``).
PLAIN = Marks("", "", "")


def _as_is(text: str) -> str:
    return text


def decision_line(
    request: ApprovalRequest,
    *,
    mention: Callable[[str], str] = _as_is,
    escape: Callable[[str], str] = _as_is,
    marks: Marks = EMOJI,
) -> str:
    """``request``'s decision as one line: ``<mark> <decision>[ by <mention>][ (<escaped reason>)]``.

    ``mention`` turns the id of the user who decided into the platform's mention (or a name);
    ``escape`` makes the reason (free text, e.g. "timed out") plain text in the platform's markup.
    """
    if request.decision is None:
        return _marked(marks.waiting, "Waiting for approval")
    line = request.decision.label
    if request.decided_by:
        line += f" by {mention(request.decided_by)}"
    if request.reason:
        line += f" ({escape(request.reason)})"
    return _marked(marks.allowed if request.decision.allowed else marks.denied, line)


def _marked(mark: str, text: str) -> str:
    return f"{mark} {text}" if mark else text
