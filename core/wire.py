"""Turn events and messages as JSON, for what travels between instances of one bot.

When another instance owns a conversation, the message is handed to it and the
turn's events come back the same way (:mod:`core.routing`). Everything here is
plain data: the events of :mod:`core.events`, the people (:class:`UserRef`), the
files already saved on shared storage (:class:`Attachment`), and the events that
only exist on the way back — :class:`Notice` (a notice the owner sent),
:class:`Typing` (a sign of life while the owner waits), :class:`Posting` (the owner
replies on the platform itself) and :class:`Done`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .attachments import Attachment
from .events import (
    AgentRetrying,
    ApprovalRequest,
    ApprovalRequested,
    ApprovalResolved,
    Decision,
    FileOffered,
    MessagesMerged,
    TextDelta,
    ToolCallRecord,
    ToolResult,
    ToolUse,
    TurnError,
    TurnResult,
    TurnWaiting,
)
from .keys import ConversationKey, UserRef


@dataclass
class Notice:
    """A notice the owning instance sent about a forwarded message (queued, refused file, a command's answer)."""

    text: str
    file: str | None = None  # a file to send with it (on shared storage)


@dataclass
class Typing:
    """The owner works on it (e.g. waits out a debounce window)."""


@dataclass
class Posting:
    """The owner posts this message's reply on the platform itself (said when it takes the message up, and
    now and then while it works); ``shown``: the reply has begun to show (run elsewhere, it would show twice)."""

    shown: bool = False


@dataclass
class Done:
    """The owner finished with the forwarded message."""


_EVENTS: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        TextDelta,
        ToolUse,
        ToolResult,
        ApprovalRequested,
        ApprovalResolved,
        FileOffered,
        AgentRetrying,
        TurnWaiting,
        MessagesMerged,
        TurnResult,
        TurnError,
        Notice,
        Typing,
        Posting,
        Done,
    )
}


def request_to_wire(request: ApprovalRequest) -> dict[str, Any]:
    data = dataclasses.asdict(request)
    data["key"] = str(request.key)
    data["decision"] = request.decision.value if request.decision else None
    return data


def request_from_wire(data: dict[str, Any]) -> ApprovalRequest:
    fields = dict(data)
    fields["key"] = ConversationKey.parse(fields["key"])
    fields["decision"] = Decision(fields["decision"]) if fields.get("decision") else None
    return ApprovalRequest(**fields)


def event_to_wire(event: Any) -> dict[str, Any]:
    name = type(event).__name__
    if name not in _EVENTS:
        raise TypeError(f"{name} does not travel between instances")
    if isinstance(event, (ApprovalRequested, ApprovalResolved)):
        return {"type": name, "request": request_to_wire(event.request)}
    data = dataclasses.asdict(event)
    if isinstance(event, FileOffered):
        data["path"] = str(event.path)
    return {"type": name, **data}


def event_from_wire(data: dict[str, Any]) -> Any:
    fields = dict(data)
    cls = _EVENTS[fields.pop("type")]
    if cls in (ApprovalRequested, ApprovalResolved):
        return cls(request_from_wire(fields["request"]))
    if cls is FileOffered:
        fields["path"] = Path(fields["path"])
    if cls in (TurnResult, TurnError):
        fields["tool_calls"] = [ToolCallRecord(**t) for t in fields.get("tool_calls") or []]
    return cls(**fields)


def user_to_wire(user: UserRef) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "roles": sorted(user.roles)}


def user_from_wire(data: dict[str, Any]) -> UserRef:
    return UserRef(str(data["id"]), data.get("name"), frozenset(data.get("roles") or ()))


def attachment_to_wire(attachment: Attachment) -> dict[str, Any]:
    return {"path": str(attachment.path), "name": attachment.name, "mime_type": attachment.mime_type}


def attachment_from_wire(data: dict[str, Any]) -> Attachment:
    return Attachment(Path(data["path"]), data["name"], data.get("mime_type"))
