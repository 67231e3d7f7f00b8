"""Request and response bodies shared by the ``/api`` routes, and their conversions from core objects.

Field names follow claude-agent-http where it had them (``session_id``, ``message``,
``text``, ``tool_calls`` entries with ``tool``/``input``, ``timestamp``); ccbridge's own
fields are extra fields next to them.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, Field, HttpUrl

from core import ApprovalRequest, Decision, ToolCallRecord
from core.store import TurnRecord

from .turns import FileRef, ToolCallOut, TurnAnswer

USER_ID_MAX = 128
USER_ID_DESCRIPTION = (
    "Your application's id for the end user: any text up to 128 characters without control characters "
    "(each id gets its own workspace)."
)
V1 = "/api/v1"


def check_user_id(value: str) -> str:
    """A user id is any non-blank text without control characters (the core maps it to a safe directory)."""
    if not value.strip():
        raise ValueError("must not be blank")
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise ValueError(f"must not contain control characters (found {bad!r})")
    return value


def is_user_id(value: object) -> bool:
    if not isinstance(value, str) or not 1 <= len(value) <= USER_ID_MAX:
        return False
    try:
        check_user_id(value)
    except ValueError:
        return False
    return True


def check_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


UserId = Annotated[
    str,
    Field(min_length=1, max_length=USER_ID_MAX, description=USER_ID_DESCRIPTION, examples=["alice"]),
    AfterValidator(check_user_id),
]
SessionId = Annotated[str, Field(min_length=1, max_length=128, description="A session id (see /api/v1/sessions).")]
MessageText = Annotated[
    str,
    Field(min_length=1, max_length=200_000, description="The user's message (not only whitespace)."),
    AfterValidator(check_text),
]
ApprovalMode = Literal["deny", "ask"]


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def file_url(session_id: str, path: str) -> str:
    """Where a workspace file of a session is downloaded."""
    return f"{V1}/sessions/{quote(session_id, safe='')}/files/{quote(path)}"


# -- tool calls --------------------------------------------------------------
class ToolCall(BaseModel):
    tool: str = Field(description="The tool's name (claude-agent-http's field).")
    input: dict[str, Any] | None = Field(None, description="What the model gave the tool (null in the history).")
    name: str = Field(description="The tool's name (ccbridge's field, same as tool).")
    summary: str
    is_error: bool | None = None
    id: str | None = None


def tool_calls_out(calls: list[ToolCallOut] | list[ToolCallRecord]) -> list[ToolCall]:
    out = []
    for c in calls:
        extra = c if isinstance(c, ToolCallOut) else None
        out.append(
            ToolCall(
                tool=c.name,
                input=extra.input if extra else None,
                name=c.name,
                summary=c.summary,
                is_error=c.is_error,
                id=extra.id if extra else None,
            )
        )
    return out


# -- history -----------------------------------------------------------------
class TurnEntry(BaseModel):
    session_id: str
    user_id: str
    user_text: str
    reply_text: str
    tool_calls: list[ToolCall]
    cost_usd: float | None = Field(description="This turn's cost in USD.")
    duration_ms: int | None
    status: Literal["queued", "merged", "running", "ok", "error", "interrupted"]
    error: str | None
    started_at: datetime
    finished_at: datetime | None


class History(BaseModel):
    session_id: str
    user_id: str
    turns: list[TurnEntry] = Field(description="Oldest first.")
    total_cost_usd: float = Field(description="The session's total cost: the sum of all its turns' costs.")


def turn_out(turn: TurnRecord) -> TurnEntry:
    return TurnEntry(
        session_id=turn.session_id,
        user_id=turn.user_id,
        user_text=turn.user_text,
        reply_text=turn.reply_text,
        tool_calls=tool_calls_out(turn.tool_calls),
        cost_usd=turn.cost_usd,
        duration_ms=turn.duration_ms,
        status=turn.status,
        error=turn.error,
        started_at=utc(turn.started_at),
        finished_at=utc(turn.finished_at) if turn.finished_at is not None else None,
    )


# -- chat --------------------------------------------------------------------
class ChatRequest(BaseModel):
    """claude-agent-http's ``{"session_id", "message"}`` or ccbridge's ``{"text", "user_id"}`` (or a mix).

    One of ``message`` / ``text`` is required, and one of ``session_id`` / ``user_id``.
    """

    message: MessageText | None = Field(None, description="The user's message (claude-agent-http's name).")
    text: MessageText | None = Field(None, description="The user's message (ccbridge's name; same as message).")
    session_id: SessionId | None = Field(
        None, description="Continue this session; without it, the user_id's default session."
    )
    user_id: UserId | None = Field(
        None, description="Who speaks. Optional with a session_id (then it must be the session's user)."
    )
    approval_mode: ApprovalMode | None = Field(
        None,
        description="'deny': tools needing approval are refused at once; 'ask': they wait for "
        "POST /api/v1/approvals/{id} (and /api/v1/chat/stream sends ccbridge's events: approval_request...). "
        "Default: 'deny', except on /api/v2/chat/stream ('ask').",
    )
    timeout: float | None = Field(None, gt=0, le=86400, description="Seconds, capped by the server's turn_timeout.")
    attachments: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=list,
        max_length=20,
        description="Workspace paths (e.g. from POST .../files) given to Claude with the message; images as images.",
    )

    @property
    def prompt(self) -> str:
        return self.text if self.text is not None else self.message or ""

    def check(self) -> None:
        """422 naming the fields when neither name of a required value was sent."""
        problems: list[dict[str, Any]] = []
        if self.text is None and self.message is None:
            problems.append(_missing("message", "send 'message' (or 'text')"))
        elif self.text is not None and self.message is not None and self.text != self.message:
            problems.append(
                {"type": "value_error", "loc": ("body", "text"), "msg": "text and message differ: send one of them"}
            )
        if self.session_id is None and self.user_id is None:
            problems.append(_missing("user_id", "send 'session_id' or 'user_id'"))
        if problems:
            raise RequestValidationError(problems)


def _missing(field: str, hint: str) -> dict[str, Any]:
    return {"type": "missing", "loc": ("body", field), "msg": "Field required", "input": None, "ctx": {"hint": hint}}


class AsyncChatRequest(ChatRequest):
    callback_url: HttpUrl | None = Field(None, description="Receives the finished task as a signed POST.")


class FileOut(BaseModel):
    name: str
    path: str = Field(description="Path relative to the user's workspace.")
    caption: str = ""
    url: str | None = Field(None, description="Where to download it (GET, same API key).")


def files_out(session_id: str, files: list[FileRef]) -> list[FileOut]:
    return [
        FileOut(name=f.name, path=f.path, caption=f.caption, url=file_url(session_id, f.path) if f.inside else None)
        for f in files
    ]


class ChatResponse(BaseModel):
    session_id: str
    text: str
    tool_calls: list[ToolCall]
    timestamp: datetime
    user_id: str
    files: list[FileOut] = Field(default_factory=list, description="Files Claude handed back (send_file).")
    cost_usd: float | None = Field(description="This turn's cost in USD.")
    session_cost_usd: float | None = Field(description="The session's total cost so far, this turn included.")
    usage: dict[str, Any] | None
    duration_ms: int | None
    num_turns: int | None
    interrupted: bool
    saved: bool = Field(True, description="False when the store could not record the turn yet (see warning).")
    warning: str | None = Field(None, description="Set when the reply stands but something around it failed.")


def chat_out(outcome: TurnAnswer) -> ChatResponse:
    return ChatResponse(
        session_id=outcome.session_id,
        user_id=outcome.key.owner,
        text=outcome.text,
        tool_calls=tool_calls_out(outcome.tool_calls),
        files=files_out(outcome.session_id, outcome.files),
        cost_usd=outcome.cost_usd,
        session_cost_usd=outcome.session_cost_usd,
        usage=outcome.usage,
        duration_ms=outcome.duration_ms,
        num_turns=outcome.num_turns,
        interrupted=outcome.interrupted,
        timestamp=utc(outcome.timestamp),
        saved=outcome.saved,
        warning=outcome.warning,
    )


# -- approvals ---------------------------------------------------------------
class ApprovalInfo(BaseModel):
    id: str
    tool: str
    summary: str
    input: dict[str, Any]
    requested_by: str
    created_at: datetime
    timeout: float = Field(description="Seconds before an unanswered request is denied.")


class ApprovalList(BaseModel):
    approvals: list[ApprovalInfo]


class ApprovalAnswer(BaseModel):
    decision: Decision
    user_id: UserId | None = Field(None, description="Who answers (default: the user who asked).")


class ApprovalResult(BaseModel):
    id: str
    tool: str
    decision: Decision
    decided_by: str | None
    outcome: str


def approval_out(request: ApprovalRequest) -> ApprovalInfo:
    return ApprovalInfo(
        id=request.id,
        tool=request.tool_name,
        summary=request.summary,
        input=request.input,
        requested_by=request.requested_by,
        created_at=utc(request.created_at),
        timeout=request.timeout,
    )


# -- async tasks -------------------------------------------------------------
TaskState = Literal["running", "completed", "failed"]


class ErrorInfo(BaseModel):
    code: str
    message: str
    session_id: str | None = None
    text: str | None = Field(None, description="Text produced before the failure.")
    cost_usd: float | None = Field(None, description="What the failed turn cost in USD (when it ran).")


class CallbackInfo(BaseModel):
    url: str
    delivered: bool
    attempts: int
    last_status: int | None = None
    last_error: str | None = None


class TaskAccepted(BaseModel):
    task_id: str
    status: TaskState
    status_url: str


class TaskStatus(BaseModel):
    task_id: str
    user_id: str
    status: TaskState
    created_at: datetime
    completed_at: datetime | None
    result: ChatResponse | None = None
    error: ErrorInfo | None = None
    pending_approvals: list[ApprovalInfo] = Field(default_factory=list)
    callback: CallbackInfo | None = None


# -- errors ------------------------------------------------------------------
class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the field, e.g. 'text' or 'user_id'.")
    message: str
    type: str


class ErrorBody(BaseModel):
    code: str
    message: str
    fields: list[FieldError] | None = Field(None, description="With code 'invalid_request': what is wrong.")


class ErrorEnvelope(BaseModel):
    """Errors of the ``/api`` routes and the probes."""

    detail: str | list[dict[str, Any]] = Field(
        description="A message; for a 422, FastAPI's list of {type, loc, msg} (as claude-agent-http answered)."
    )
    error: ErrorBody


class DetailError(BaseModel):
    """Errors of the claude-code-server routes (their clients read ``detail``)."""

    detail: str
    code: str
    fields: list[FieldError] | None = None
