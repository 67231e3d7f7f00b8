"""REST plumbing shared by the fake's routes: parsed requests, the call log entry, Feishu's answer shapes.

Success is ``{"code": 0, "msg": "success", "data": {...}}`` (the token and bot-info
routes answer without ``data``, as Feishu does); errors are ``{"code", "msg", "error":
{"log_id"}}``. Every answer carries ``X-Tt-Logid`` (what ``resp.get_log_id()`` reads).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.platform_server import Call

from .errors import FeishuError

KB = 1024
TEXT_LIMIT = 150 * KB
CARD_LIMIT = 30 * KB  # cards and posts


@dataclass
class FeishuCall(Call):
    """A logged request: route name, parameters (path + query + body), and how it was answered."""

    status: int = 0
    code: int | None = None


@dataclass
class ApiRequest:
    """A parsed REST request as a route handler sees it."""

    name: str
    path: dict[str, str]
    query: dict[str, str]
    body: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.body)
        out.update(self.query)
        out.update(self.path)
        if self.files:
            out["files"] = {name: len(data) for name, data in self.files.items()}
        return out


def data_response(payload: Any) -> web.Response:
    return json_response({"code": 0, "msg": "success", "data": payload})


def json_response(body: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    all_headers = {"X-Tt-Logid": log_id(), **(headers or {})}
    return web.json_response(body, status=status, headers=all_headers)


def log_id() -> str:
    return time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(9).upper()


def error_response(exc: FeishuError) -> web.Response:
    body = {"code": exc.code, "msg": exc.msg, "error": {"log_id": log_id()}}
    return json_response(body, status=exc.status, headers=exc.headers or None)


def loads_object(text: Any, code: int, what: str) -> dict[str, Any]:
    if not isinstance(text, str):
        raise FeishuError(code, f"{what} must be a JSON string")
    try:
        value = json.loads(text)
    except ValueError:
        raise FeishuError(code, f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise FeishuError(code, f"{what} must be a JSON object")
    return value
