"""python-telegram-bot errors -> the core's sink errors.

* ``RetryAfter`` (429)                         -> :class:`core.RateLimited` (the streamer waits it out)
* "message is not modified"                    -> nothing (an identical edit is a no-op)
* "message to edit not found" / "can't be edited" -> :class:`core.MessageGone`
* any other ``TelegramError``                  -> :class:`core.SinkError` (with the HTTP-ish code)
"""

from __future__ import annotations

import datetime as dtm
import warnings
from collections.abc import Awaitable
from typing import TypeVar

from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut

from core import MessageGone, RateLimited, SinkError

T = TypeVar("T")

_GONE = (
    "message to edit not found",
    "message can't be edited",
    "message_id_invalid",
    "message not found",
    "message to delete not found",
)


def retry_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns about its int -> timedelta migration on access
        warnings.simplefilter("ignore", DeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


def is_not_modified(exc: TelegramError) -> bool:
    return isinstance(exc, BadRequest) and "not modified" in exc.message.lower()


def translate(exc: TelegramError) -> SinkError:
    """The core error for a Telegram error (callers check :func:`is_not_modified` first)."""
    if isinstance(exc, RetryAfter):
        return RateLimited(retry_seconds(exc), "Telegram flood control", code=429)
    text = exc.message
    if isinstance(exc, BadRequest):
        if any(phrase in text.lower() for phrase in _GONE):
            return MessageGone(text, code=400)
        return SinkError(text, code=400)
    if isinstance(exc, Forbidden):  # blocked by the user, kicked from the group
        return SinkError(text, code=403)
    if isinstance(exc, (TimedOut, NetworkError)):
        return SinkError(f"network: {text}", code="network")
    return SinkError(text)


async def call(operation: Awaitable[T]) -> T | None:
    """Await a Bot API call; Telegram errors become core errors, "not modified" becomes None."""
    try:
        return await operation
    except TelegramError as exc:
        if is_not_modified(exc):
            return None
        raise translate(exc) from exc
