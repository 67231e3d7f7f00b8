"""Request and response bodies of the ``/api/v1`` routes, and their conversions from core objects."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, HttpUrl

from core import ApprovalRequest, Decision, ToolCallRecord
from core.store import Conversation, TurnRecord
from core.workspace import Workspaces

from .turns import TurnOutcome

USER_ID_MAX = 128
USER_ID_DESCRIPTION = (
    "Your application's id for the end user: any text up to 128 characters without control characters "
    "(each id gets its own workspace)."
)


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


# -- sessions ----------------------------------------------------------------
class SessionCreate(BaseModel):
    user_id: UserId
    subdir: str | None = Field(
        None,
        max_length=1024,
        description="Working directory relative to the user's workspace ('..' and absolute paths are refused).",
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form data kept with the session.")


class Session(BaseModel):
    id: str = Field(description="The session id (Claude Code's session id).")
    user_id: str
    default: bool = Field(description="True for the user's default session (the one chat uses without a session_id).")
    cwd: str = Field(description="Working directory, relative to the user's workspace.")
    created_at: datetime
    last_active_at: datetime
    message_count: int
    status: Literal["idle", "running", "interrupted"]
    metadata: dict[str, Any]


class SessionList(BaseModel):
    sessions: list[Session]


class ToolCall(BaseModel):
    name: str
    summary: str
    is_error: bool | None = None


class TurnEntry(BaseModel):
    session_id: str
    user_id: str
    user_text: str
    reply_text: str
    tool_calls: list[ToolCall]
    cost_usd: float | None
    duration_ms: int | None
    status: Literal["ok", "error", "interrupted"]
    error: str | None
    started_at: datetime
    finished_at: datetime | None


class History(BaseModel):
    session_id: str
    user_id: str
    turns: list[TurnEntry] = Field(description="Oldest first.")


def session_out(conv: Conversation, workspaces: Workspaces) -> Session:
    return Session(
        id=conv.session_id,
        user_id=conv.key.owner,
        default=conv.key.thread is None,
        cwd=workspaces.relative(conv.key, Path(conv.cwd)),
        created_at=utc(conv.created_at),
        last_active_at=utc(conv.last_active_at),
        message_count=conv.message_count,
        status=conv.status,
        metadata=conv.metadata,
    )


def tool_calls_out(calls: list[ToolCallRecord]) -> list[ToolCall]:
    return [ToolCall(name=c.name, summary=c.summary, is_error=c.is_error) for c in calls]


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
    text: MessageText
    user_id: UserId
    session_id: SessionId | None = Field(
        None, description="Continue this session; without it, the user's default session."
    )
    approval_mode: ApprovalMode | None = Field(
        None,
        description="'deny': tools needing approval are refused; 'ask': they wait for POST /api/v1/approvals/{id}. "
        "Default: 'ask' when streaming, 'deny' otherwise.",
    )
    timeout: float | None = Field(None, gt=0, le=86400, description="Seconds, capped by the server's turn_timeout.")


class AsyncChatRequest(ChatRequest):
    callback_url: HttpUrl | None = Field(None, description="Receives the finished task as a signed POST.")


class FileOut(BaseModel):
    name: str
    path: str = Field(description="Path relative to the user's workspace.")
    caption: str = ""


class ChatResponse(BaseModel):
    session_id: str
    user_id: str
    text: str
    tool_calls: list[ToolCall]
    files: list[FileOut] = Field(default_factory=list)
    cost_usd: float | None
    usage: dict[str, Any] | None
    duration_ms: int | None
    num_turns: int | None
    interrupted: bool
    timestamp: datetime


def chat_out(outcome: TurnOutcome) -> ChatResponse:
    return ChatResponse(
        session_id=outcome.session_id,
        user_id=outcome.key.owner,
        text=outcome.text,
        tool_calls=tool_calls_out(outcome.tool_calls),
        files=[FileOut(name=f.name, path=f.path, caption=f.caption) for f in outcome.files],
        cost_usd=outcome.cost_usd,
        usage=outcome.usage,
        duration_ms=outcome.duration_ms,
        num_turns=outcome.num_turns,
        interrupted=outcome.interrupted,
        timestamp=utc(outcome.timestamp),
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


# -- errors and probes -------------------------------------------------------
class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the field, e.g. 'text' or 'user_id'.")
    message: str
    type: str


class ErrorBody(BaseModel):
    code: str
    message: str
    fields: list[FieldError] | None = Field(None, description="With code 'invalid_request': what is wrong.")


class ErrorEnvelope(BaseModel):
    error: ErrorBody


class DetailError(BaseModel):
    """Errors of the claude-code-server routes (their clients read ``detail``)."""

    detail: str
    code: str
    fields: list[FieldError] | None = None


class Health(BaseModel):
    status: Literal["ok", "ready"]
