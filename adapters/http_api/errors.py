"""Errors as JSON, in two shapes, both with ``detail`` (what FastAPI apps answer, and what
the clients of claude-agent-http and claude-code-server read).

* ``/api/v1``, ``/api/v2`` and the probes: ``{"detail": ..., "error": {"code": ...,
  "message": ..., <context>}}``. ``detail`` is a string (claude-agent-http's wording where
  it had one, e.g. ``"Session not found"``), or for a 422 FastAPI's list of
  ``{"type", "loc", "msg"}``; ``error`` is ccbridge's envelope with context fields
  (``session_id``, ``text``, ``fields``...).
* claude-code-server's routes (a :class:`CompatErrorsRoute`): ``{"detail": message,
  "code": ..., <context>}``.

Core errors map to statuses in one table. A request that fails validation is a 422
``invalid_request`` naming the fields; a body that is not JSON is a 415.
"""

from __future__ import annotations

import email.message
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from core import (
    AccessDenied,
    AgentUnavailable,
    ApprovalForbidden,
    ApprovalNotFound,
    CCBridgeError,
    ConversationBusy,
    ConversationNotFound,
    StoreError,
    TurnTimeout,
    WorkspaceError,
)

log = logging.getLogger(__name__)

# Most specific first.
CORE_ERRORS: list[tuple[type[CCBridgeError], int, str]] = [
    (WorkspaceError, 400, "invalid_path"),
    (AccessDenied, 403, "forbidden"),
    (ApprovalForbidden, 403, "forbidden"),
    (ConversationNotFound, 404, "session_not_found"),
    (ApprovalNotFound, 404, "approval_not_found"),
    (ConversationBusy, 409, "session_busy"),
    (AgentUnavailable, 503, "agent_unavailable"),
    (StoreError, 503, "store_unavailable"),
    (TurnTimeout, 504, "turn_timeout"),
]

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


class ApiError(StarletteHTTPException):
    """An error answered as JSON; ``extra`` adds fields next to code and message.

    ``detail`` is the ``detail`` of ``/api`` answers when it should differ from
    ``message`` (claude-agent-http's exact wording, which its clients may compare).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        detail: Any = None,
        **extra: Any,
    ) -> None:
        super().__init__(status, message, headers)
        self.code = code
        self.message = message
        self.public_detail = detail
        self.extra = extra


class CompatErrorsRoute(APIRoute):
    """A route whose errors answer ``{"detail": message, "code": ...}`` (claude-code-server's shape)."""


def error_body(code: str, message: str, *, compat: bool = False, detail: Any = None, **extra: Any) -> dict[str, Any]:
    context = {k: v for k, v in extra.items() if v is not None}
    if compat:
        return {"detail": message, "code": code, **context}
    return {"detail": message if detail is None else detail, "error": {"code": code, "message": message, **context}}


def is_compat(scope: Scope) -> bool:
    return isinstance(scope.get("route"), CompatErrorsRoute)


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    detail: Any = None,
    **extra: Any,
) -> JSONResponse:
    body = error_body(code, message, compat=is_compat(request.scope), detail=detail, **extra)
    return JSONResponse(body, status_code=status, headers=headers)


def matcher(routes: Iterable[BaseRoute]) -> Callable[[Scope], bool]:
    """For middleware that answers before routing: does this request go to one of ``routes``?
    (``routes`` as mounted, i.e. with their full path.)"""
    routes = list(routes)

    def check(scope: Scope) -> bool:
        return any(route.matches(scope)[0] == Match.FULL for route in routes)

    return check


def compat_errors_for(routes: Iterable[BaseRoute]) -> Callable[[Scope], bool]:
    """Does this request go to one of these routes that is a CompatErrorsRoute?"""
    return matcher(r for r in routes if isinstance(r, CompatErrorsRoute))


# -- request validation ------------------------------------------------------
_LOCATIONS = ("body", "query", "path", "header", "cookie")
_MAX_LISTED = 5


def _field(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in _LOCATIONS:
        parts = parts[1:]
    return ".".join(parts) or "body"


def _problem(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    message = str(error.get("msg", "invalid"))
    if kind == "missing":
        hint = (error.get("ctx") or {}).get("hint")
        return f"required ({hint})" if hint else "required"
    if kind in ("value_error", "assertion_error"):
        return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return message[:1].lower() + message[1:]


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    parsed = email.message.Message()
    parsed["content-type"] = content_type
    subtype = parsed.get_content_subtype()
    return parsed.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def fastapi_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's own 422 ``detail``: ``[{"type", "loc", "msg"}]`` (what claude-agent-http answered)."""
    return [
        {
            "type": str(e.get("type", "")),
            "loc": [str(p) if not isinstance(p, int) else p for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
        }
        for e in exc.errors()
    ]


def validation_error(request: Request, exc: RequestValidationError) -> tuple[int, str, str, list[dict[str, str]]]:
    """(status, code, message, fields) for a request FastAPI could not validate."""
    errors = list(exc.errors())
    for error in errors:
        loc = tuple(error.get("loc", ()))
        kind = str(error.get("type", ""))
        if kind == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "JSON decode error")
            where = f" at position {loc[1]}" if len(loc) > 1 else ""
            problem = f"not valid JSON: {reason}{where}"
            return 422, "invalid_request", f"the request body is {problem}", [_entry("body", problem, kind)]
        if loc == ("body",) and kind == "missing":
            return (
                422,
                "invalid_request",
                "the request body is missing: send a JSON object",
                [_entry("body", "required", kind)],
            )
        if loc == ("body",) and isinstance(error.get("input"), bytes | bytearray):
            content_type = request.headers.get("content-type")
            if not _is_json(content_type):
                got = f"got {content_type!r}" if content_type else "no Content-Type was sent"
                message = f"the request body must be JSON sent with 'Content-Type: application/json' ({got})"
                return 415, "unsupported_media_type", message, []
    fields = [_entry(_field(e.get("loc", ())), _problem(e), str(e.get("type", ""))) for e in errors]
    listed = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:_MAX_LISTED])
    more = f" (and {len(fields) - _MAX_LISTED} more)" if len(fields) > _MAX_LISTED else ""
    return 422, "invalid_request", f"invalid request: {listed}{more}", fields


def _entry(field: str, message: str, kind: str) -> dict[str, str]:
    return {"field": field, "message": message, "type": kind}


def from_core(exc: CCBridgeError) -> ApiError:
    for cls, status, code in CORE_ERRORS:
        if isinstance(exc, cls):
            return ApiError(status, code, str(exc))
    return ApiError(500, "internal_error", str(exc))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(
            request, exc.status_code, exc.code, exc.message, exc.headers, detail=exc.public_detail, **exc.extra
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(request, exc.status_code, code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message, fields = validation_error(request, exc)
        detail = fastapi_detail(exc) if status == 422 else None
        return error_response(request, status, code, message, detail=detail, fields=fields or None)

    @app.exception_handler(CCBridgeError)
    async def _core_error(request: Request, exc: CCBridgeError) -> JSONResponse:
        err = from_core(exc)
        if err.status_code >= 500:
            log.warning("%s %s failed: %s", request.method, request.url.path, exc)
        return error_response(request, err.status_code, err.code, err.message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(request, 500, "internal_error", "internal server error")
