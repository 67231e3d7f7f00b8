"""Slack Web API failures -> the core's sink errors.

* HTTP 429 / ``ratelimited`` -> :class:`~core.RateLimited` with the ``Retry-After`` seconds.
* The message can't be edited any more -> :class:`~core.MessageGone`.
* Anything else -> :class:`~core.SinkError` carrying Slack's error code.

Some codes steer the sink rather than fail it: :data:`STREAM_UNAVAILABLE`
(this conversation can't use ``chat.*Stream``: switch to ``chat.update`` edits;
for :data:`STREAM_UNSUPPORTED` codes the whole bot switches) and
:data:`STREAM_ENDED` (one stream expired: finish that message with ``chat.update``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError

from core import MessageGone, RateLimited, SinkError

# The workspace / app can't stream at all: every later reply uses edits.
STREAM_UNSUPPORTED = frozenset(
    {
        "unknown_method",
        "method_deprecated",
        "not_allowed_token_type",
        "feature_not_enabled",
        "missing_scope",
        "not_supported",
        "streaming_not_supported",
    }
)
# This conversation can't be streamed into (recipient or thread rejected): this reply uses edits.
STREAM_UNAVAILABLE = STREAM_UNSUPPORTED | {"not_allowed", "invalid_arguments", "invalid_recipient"}
STREAM_ENDED = frozenset({"message_not_in_streaming_state", "streaming_state_conflict"})
GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed", "thread_not_found"})
DEFAULT_RETRY_AFTER = 1.0

NETWORK_ERRORS = (SlackClientError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


def error_code(exc: BaseException) -> str:
    """Slack's ``error`` code of a failed call ("" when it is not an API error)."""
    if isinstance(exc, SlackApiError):
        response: Any = exc.response
        try:
            return str(response.get("error") or "")
        except AttributeError:
            return ""
    return ""


def retry_after(exc: SlackApiError) -> float:
    headers: Mapping[str, Any] = getattr(exc.response, "headers", None) or {}
    for name, value in headers.items():
        if str(name).lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                break
    return DEFAULT_RETRY_AFTER


def is_rate_limited(exc: BaseException) -> bool:
    return isinstance(exc, SlackApiError) and (
        getattr(exc.response, "status_code", None) == 429 or error_code(exc) == "ratelimited"
    )


def to_sink_error(exc: BaseException, what: str) -> SinkError:
    """The core error for a failed Slack call (``what`` names the method)."""
    if is_rate_limited(exc):
        assert isinstance(exc, SlackApiError)
        return RateLimited(retry_after(exc), f"Slack rate-limited {what}", code="ratelimited")
    code = error_code(exc)
    if code in GONE:
        return MessageGone(f"{what}: {code}", code=code)
    if code:
        return SinkError(f"Slack refused {what}: {code}", code=code)
    return SinkError(f"{what} failed: {exc!r}")
