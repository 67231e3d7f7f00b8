"""Shared route pieces: dependencies, query parameters, documented error responses."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query
from pydantic import AfterValidator

from .context import ApiContext, get_context
from .models import USER_ID_MAX, DetailError, ErrorEnvelope, check_user_id

Ctx = Annotated[ApiContext, Depends(get_context)]
UserQuery = Annotated[
    str, Query(min_length=1, max_length=USER_ID_MAX, description="The user's id."), AfterValidator(check_user_id)
]
OwnerQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=USER_ID_MAX, description="When given, the resource must belong to this user."),
    AfterValidator(lambda v: None if v is None else check_user_id(v)),
]
UserFilterQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=USER_ID_MAX, description="Only this user's."),
    AfterValidator(lambda v: None if v is None else check_user_id(v)),
]

_DESCRIPTIONS = {
    400: "Bad request (e.g. a path with '..')",
    401: "Missing or invalid API key",
    403: "The user is not allowed, or the resource is another user's",
    404: "Not found",
    409: "Conflict",
    413: "Request body too large",
    415: "The body is not JSON",
    422: "Invalid request (the fields are listed)",
    429: "Too many turns at once (see Retry-After)",
    502: "The agent failed the turn",
    503: "The agent or the store is unavailable",
    504: "The turn timed out",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses (401, 413 and 422 are always possible)."""
    return {s: {"model": ErrorEnvelope, "description": _DESCRIPTIONS[s]} for s in sorted({401, 413, 422, *statuses})}


def compat_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The same, for the compat routes' ``{"detail": ...}`` errors."""
    return {s: {"model": DetailError, "description": _DESCRIPTIONS[s]} for s in sorted({401, 413, 422, *statuses})}
