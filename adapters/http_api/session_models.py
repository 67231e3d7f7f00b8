"""Session bodies: claude-agent-http's shape (``/api/v1``) and ccbridge's (``/api/v2``).

``/api/v1`` answers claude-agent-http's ``SessionResponse`` (``session_id``, an absolute
``cwd``, ``status: "active"``) with ccbridge's fields as extras (``id``, ``default``,
``subdir``, ``state``, ``total_cost_usd``). ``/api/v2`` answers ccbridge's own session
object (``id``, ``cwd`` relative to the workspace, ``status`` idle/running/interrupted).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from core.store import Conversation
from core.workspace import MAX_SUBDIR_CHARS, MAX_SUBDIR_DEPTH, Workspaces

from .models import UserId, utc

SessionState = Literal["idle", "running", "interrupted"]


class SessionCreate(BaseModel):
    """claude-agent-http's fields. Its older per-session agent options (system_prompt, mcp_servers, model,
    permission_mode, allowed_tools, ...) are accepted and ignored: they are the server's configuration."""

    user_id: UserId
    # No max_length: a subdir too long or too deep is the route's 400 invalid_subdir (check_subdir), not a
    # 422; the request body limit (max_body_bytes) bounds what arrives.
    subdir: str | None = Field(
        None,
        description="Working directory relative to the user's workspace: at most "
        f"{MAX_SUBDIR_CHARS} characters and {MAX_SUBDIR_DEPTH} directories deep; '..' and absolute paths "
        "are refused (400 invalid_subdir).",
    )
    metadata: dict[str, Any] | None = Field(None, description="Free-form data kept with the session.")


SEED_USER_ID = re.compile(r"[A-Za-z0-9_-]+")
SEED_USER_ID_MAX = 64
SEED_SUBDIR_MAX = 200


def check_seed_user_id(value: str) -> str:
    if not SEED_USER_ID.fullmatch(value):
        raise ValueError("User ID can only contain alphanumeric characters, underscore, and hyphen")
    return value


def check_seed_subdir(value: str | None) -> str | None:
    if value:
        if ".." in value:
            raise ValueError("'..' is not allowed in subdir")
        if value.startswith("/"):
            raise ValueError("subdir must be relative: an absolute path is not allowed")
    return value


class SeedSessionCreate(SessionCreate):
    """``POST /api/v1/sessions``: refuses what claude-agent-http refused, with its 422 (``value_error`` at
    ``body.user_id`` / ``body.subdir``): a user_id of anything but 1-64 letters, digits, ``_`` and ``-``; a
    subdir longer than 200 characters, containing ``..`` or starting with ``/``. (``/api/v2`` and chat take
    any user_id without control characters.)"""

    user_id: Annotated[  # type: ignore[assignment]
        str,
        Field(
            min_length=1,
            max_length=SEED_USER_ID_MAX,
            description="1-64 letters, digits, '_' or '-' (claude-agent-http's rule).",
            examples=["alice"],
            json_schema_extra={"pattern": "^[A-Za-z0-9_-]+$"},
        ),
        AfterValidator(check_seed_user_id),
    ]
    subdir: Annotated[  # type: ignore[assignment]
        str | None,
        Field(
            max_length=SEED_SUBDIR_MAX,
            description="Working directory relative to the user's workspace (no '..', not absolute).",
        ),
        AfterValidator(check_seed_subdir),
    ] = None


class SeedSession(BaseModel):
    """``/api/v1``: claude-agent-http's session (first fields), then ccbridge's extras."""

    session_id: str = Field(description="The session id (Claude Code's session id).")
    user_id: str
    cwd: str = Field(description="The session's working directory (absolute, on the server).")
    created_at: datetime
    last_active_at: datetime
    message_count: int
    status: Literal["active"] = Field("active", description="Always 'active' (see state).")
    metadata: dict[str, Any]
    id: str = Field(description="Same as session_id (ccbridge's earlier name).")
    default: bool = Field(description="True for the user's default session (chat with only a user_id).")
    subdir: str = Field(description="The working directory relative to the user's workspace ('.' is its root).")
    state: SessionState = Field(description="idle, running (a turn runs), or interrupted (cut off by a restart).")
    total_cost_usd: float = Field(description="The session's total cost: the sum of its turns' costs.")


class Session(BaseModel):
    """``/api/v2``: ccbridge's session object."""

    id: str = Field(description="The session id (Claude Code's session id).")
    session_id: str = Field(description="Same as id.")
    user_id: str
    default: bool = Field(description="True for the user's default session (the one chat uses without a session_id).")
    cwd: str = Field(description="Working directory, relative to the user's workspace.")
    created_at: datetime
    last_active_at: datetime
    message_count: int
    status: SessionState
    metadata: dict[str, Any]
    total_cost_usd: float = Field(description="The session's total cost: the sum of its turns' costs.")


class SessionList(BaseModel):
    sessions: list[Session]


def seed_session_out(conv: Conversation, workspaces: Workspaces) -> SeedSession:
    return SeedSession(
        session_id=conv.session_id,
        user_id=conv.key.owner,
        cwd=conv.cwd,
        created_at=utc(conv.created_at),
        last_active_at=utc(conv.last_active_at),
        message_count=conv.message_count,
        metadata=conv.metadata,
        id=conv.session_id,
        default=conv.key.thread is None,
        subdir=workspaces.relative(conv.key, Path(conv.cwd)),
        state=conv.status,
        total_cost_usd=conv.total_cost_usd,
    )


def session_out(conv: Conversation, workspaces: Workspaces) -> Session:
    return Session(
        id=conv.session_id,
        session_id=conv.session_id,
        user_id=conv.key.owner,
        default=conv.key.thread is None,
        cwd=workspaces.relative(conv.key, Path(conv.cwd)),
        created_at=utc(conv.created_at),
        last_active_at=utc(conv.last_active_at),
        message_count=conv.message_count,
        status=conv.status,
        metadata=conv.metadata,
        total_cost_usd=conv.total_cost_usd,
    )
