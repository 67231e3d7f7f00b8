"""Open Platform answers -> the core's sink errors, and the codes that steer the sink.

lark-oapi never raises for an API error: it parses ``{"code", "msg"}`` whatever the
HTTP status. :class:`FeishuApiError` carries a refused call's code, message, status and
headers; :func:`to_sink_error` maps it:

* ``99991400`` (HTTP 429, or 400 on older APIs), HTTP 429, ``230020`` (a chat's send
  limit) -> :class:`~core.RateLimited` with the ``x-ogw-ratelimit-reset`` seconds;
* the message was recalled / deleted -> :class:`~core.MessageGone`;
* anything else -> :class:`~core.SinkError` carrying the code.

Some codes steer the sink instead of failing it: :func:`cannot_hold` (230099 /
ErrCode 11310 "card table number over limit", 230025 content too long: the text goes
out another way), :data:`STREAM_CLOSED` (the card left streaming mode: turn it on
again), :data:`SEQUENCE_CONFLICT` (our sequence fell behind), :data:`TOKEN_INVALID`
(lark-oapi never refreshes a revoked tenant token: forget it and retry once).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core import MessageGone, RateLimited, SinkError

RATE_LIMITED = 99991400
CHAT_SEND_LIMIT = 230020  # (?) "trigger the frequency limit of this chat"
TOKEN_INVALID = frozenset({99991661, 99991663, 99991668})  # missing / invalid / expired tenant token
APP_CREDENTIALS = frozenset({10003, 10014})  # the token endpoint: invalid param / app secret invalid
INVALID_REQUEST = 230001
MESSAGE_RECALLED = 230011
MESSAGE_DELETED = 230110  # (?) "the message has been deleted"
GONE = frozenset({MESSAGE_RECALLED, MESSAGE_DELETED})
CONTENT_TOO_LONG = 230025
CARD_CONTENT_FAILED = 230099  # "Failed to create card content, ext=ErrCode: 11310; ..."
CARD_TABLE_LIMIT = 11310
CARD_LIMITS = frozenset({CONTENT_TOO_LONG, CARD_CONTENT_FAILED, CARD_TABLE_LIMIT})
STREAM_CLOSED = frozenset({300309, 200850})  # streaming mode off / the 10-minute streaming lifetime ran out
SEQUENCE_CONFLICT = 300317
# The app may not use CardKit at all (scope missing): every later reply updates its card by patch.
NO_PERMISSION = frozenset({99991672, 99991679, 99991673})
DEFAULT_RETRY_AFTER = 1.0


class FeishuApiError(Exception):
    """The Open Platform refused a call (``code`` 0 is never raised)."""

    def __init__(
        self,
        what: str,
        code: int | None,
        msg: str | None,
        *,
        status: int | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        self.what = what
        self.code = code
        self.msg = msg or ""
        self.status = status
        self.headers = dict(headers or {})
        detail = f"{code}: {self.msg}" if code is not None else (self.msg or f"HTTP {status}")
        super().__init__(f"{what} refused ({detail})")

    @classmethod
    def from_response(cls, what: str, resp: Any) -> FeishuApiError:
        raw = getattr(resp, "raw", None)
        return cls(
            what,
            getattr(resp, "code", None),
            getattr(resp, "msg", None),
            status=getattr(raw, "status_code", None),
            headers=getattr(raw, "headers", None) or {},
        )

    def header(self, name: str) -> str | None:
        """A response header, whatever its case (requests keeps the server's, httpx lower-cases)."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if str(key).lower() == wanted:
                return str(value)
        return None


class FeishuNetworkError(Exception):
    """The Open Platform could not be reached (connection refused, DNS, timeout)."""

    def __init__(self, what: str, cause: BaseException) -> None:
        self.what = what
        super().__init__(f"{what} failed: {cause!r}")


def is_rate_limited(exc: BaseException) -> bool:
    return isinstance(exc, FeishuApiError) and (
        exc.code in (RATE_LIMITED, CHAT_SEND_LIMIT) or (exc.status == 429 and exc.code not in GONE)
    )


def retry_after(exc: FeishuApiError) -> float:
    """Seconds until the limit resets (``x-ogw-ratelimit-reset``), at least a short pause."""
    for name in ("x-ogw-ratelimit-reset", "retry-after"):
        value = exc.header(name)
        if value is None:
            continue
        try:
            return max(0.5, float(value))
        except ValueError:
            continue
    return DEFAULT_RETRY_AFTER


def cannot_hold(exc: BaseException) -> bool:
    """The content does not fit a card (too many tables, too long): send it another way."""
    if not isinstance(exc, FeishuApiError):
        return False
    return exc.code in CARD_LIMITS or "11310" in exc.msg or "table number over limit" in exc.msg.lower()


def is_gone(exc: BaseException) -> bool:
    return isinstance(exc, FeishuApiError) and exc.code in GONE


def code_of(exc: BaseException) -> int | None:
    return exc.code if isinstance(exc, FeishuApiError) else None


def to_sink_error(exc: BaseException, what: str | None = None) -> SinkError:
    """The core error for a failed call."""
    name = what or getattr(exc, "what", "the call")
    if is_rate_limited(exc):
        assert isinstance(exc, FeishuApiError)
        return RateLimited(retry_after(exc), f"Feishu rate-limited {name}", code=exc.code)
    if is_gone(exc):
        assert isinstance(exc, FeishuApiError)
        return MessageGone(f"{name}: {exc.code} {exc.msg}", code=exc.code)
    if isinstance(exc, FeishuApiError):
        return SinkError(str(exc), code=exc.code)
    return SinkError(f"{name} failed: {exc}")
