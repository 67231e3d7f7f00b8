"""Shared route pieces: dependencies, query parameters, documented error responses."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query

from .context import ApiContext, get_context
from .models import USER_ID_PATTERN, ErrorEnvelope

Ctx = Annotated[ApiContext, Depends(get_context)]
UserQuery = Annotated[str, Query(pattern=USER_ID_PATTERN, max_length=128, description="The user's id.")]
OwnerQuery = Annotated[
    str | None,
    Query(pattern=USER_ID_PATTERN, max_length=128, description="When given, the resource must belong to this user."),
]

_DESCRIPTIONS = {
    400: "Bad request (e.g. a subdir with '..')",
    401: "Missing or invalid API key",
    403: "The user is not allowed, or the resource is another user's",
    404: "Not found",
    409: "Conflict",
    413: "Request body too large",
    429: "Too many turns at once (see Retry-After)",
    502: "The agent failed the turn",
    503: "The agent or the store is unavailable",
    504: "The turn timed out",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses (401 and 413 are always possible)."""
    return {s: {"model": ErrorEnvelope, "description": _DESCRIPTIONS[s]} for s in sorted({401, 413, *statuses})}
