"""Errors as JSON: ``{"error": {"code": ..., "message": ...}}`` with the right status.

Core errors map to statuses in one table; request validation keeps FastAPI's 422.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
    """An error answered as JSON; ``extra`` adds fields next to code and message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(status, message, headers)
        self.code = code
        self.message = message
        self.extra = extra


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **{k: v for k, v in extra.items() if v is not None}}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


def from_core(exc: CCBridgeError) -> ApiError:
    for cls, status, code in CORE_ERRORS:
        if isinstance(exc, cls):
            return ApiError(status, code, str(exc))
    return ApiError(500, "internal_error", str(exc))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.message, exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)

    @app.exception_handler(CCBridgeError)
    async def _core_error(request: Request, exc: CCBridgeError) -> JSONResponse:
        err = from_core(exc)
        if err.status_code >= 500:
            log.warning("%s %s failed: %s", request.method, request.url.path, exc)
        return error_response(err.status_code, err.code, err.message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error")
