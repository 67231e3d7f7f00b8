"""discord.py failures -> the core's errors.

* A 429 on a reply operation (:class:`.ratelimits.RateLimitSurfaced`), a
  :class:`discord.RateLimited` (discord.py would have waited longer than its
  ``max_ratelimit_timeout``) or any other 429 -> :class:`~core.RateLimited`.
* The message can't be edited any more: deleted (10008), too old to edit
  (30046), not ours (50005), in an archived thread (50083), an expired
  interaction webhook (10015, 50027) -> :class:`~core.MessageGone`.
* Any other HTTP error -> :class:`~core.SinkError` with Discord's error code.

:func:`gateway_error` says what a gateway that would not come up means (a
``ConfigError`` naming the key to fix, or ``PlatformUnavailable``).
"""

from __future__ import annotations

import asyncio

import aiohttp
import discord

from core import ConfigError, MessageGone, PlatformUnavailable, RateLimited, SinkError

from .ratelimits import DEFAULT_RETRY_AFTER, RateLimitSurfaced, retry_after_of

UNKNOWN_CHANNEL = 10003
UNKNOWN_MESSAGE = 10008
UNKNOWN_WEBHOOK = 10015
UNKNOWN_INTERACTION = 10062
TOO_OLD_TO_EDIT = 30046
NOT_AUTHOR = 50005
MISSING_PERMISSIONS = 50013
WRONG_CHANNEL_TYPE = 50024
INVALID_WEBHOOK_TOKEN = 50027
ARCHIVED_THREAD = 50083
THREAD_EXISTS = 160004

GONE = frozenset(
    {
        UNKNOWN_CHANNEL,
        UNKNOWN_MESSAGE,
        UNKNOWN_WEBHOOK,
        TOO_OLD_TO_EDIT,
        NOT_AUTHOR,
        INVALID_WEBHOOK_TOKEN,
        ARCHIVED_THREAD,
    }
)
NETWORK_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
CLOUDFLARE_WAIT = 10.0  # a 429 without Discord's body (a Cloudflare block): back off for a while


def to_sink_error(exc: BaseException, what: str) -> SinkError:
    """The core error for a failed reply operation (``what`` names it: "edit", "send the approval prompt")."""
    if isinstance(exc, RateLimitSurfaced):
        return RateLimited(exc.retry_after, f"Discord rate-limited {what}", code=429)
    if isinstance(exc, discord.RateLimited):
        return RateLimited(exc.retry_after, f"Discord rate-limited {what}", code=429)
    if isinstance(exc, discord.HTTPException):
        if exc.status == 429:
            headers = getattr(exc.response, "headers", None)
            wait = retry_after_of(headers) if headers is not None else None
            return RateLimited(max(wait or 0.0, CLOUDFLARE_WAIT), f"Discord refused {what} (429)", code=429)
        if exc.code in GONE or isinstance(exc, discord.NotFound):
            return MessageGone(f"{what}: {exc.text or exc.status} ({exc.code})", code=exc.code)
        return SinkError(f"Discord refused {what}: {exc.status} {exc.text or ''} ({exc.code})".strip(), code=exc.code)
    if isinstance(exc, NETWORK_ERRORS):
        return SinkError(f"{what} failed: {exc!r}")
    return SinkError(f"{what} failed: {exc!r}")


def gateway_error(exc: BaseException, *, token_key: str, intent_key: str) -> Exception:
    """What a failed gateway connection means for the person running the bot."""
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return ConfigError(
            "Discord refused the privileged MESSAGE_CONTENT intent: enable 'Message Content Intent' in the "
            "Developer Portal (your application > Bot > Privileged Gateway Intents), or set message_content: false",
            key=intent_key,
        )
    if isinstance(exc, discord.LoginFailure):
        return ConfigError("Discord rejected the bot token", key=token_key)
    if isinstance(exc, discord.ConnectionClosed):
        if exc.code == 4004:
            return ConfigError("Discord rejected the bot token", key=token_key)
        if exc.code in (4013, 4014):
            return ConfigError(f"Discord refused the gateway intents ({exc.code}: {exc.reason})", key=intent_key)
        return PlatformUnavailable(f"the Discord gateway closed the connection ({exc.code}: {exc.reason})")
    if isinstance(exc, discord.GatewayNotFound):
        return PlatformUnavailable("cannot find the Discord gateway")
    if isinstance(exc, (*NETWORK_ERRORS, discord.HTTPException)):
        return PlatformUnavailable(f"cannot reach the Discord gateway: {exc!r}")
    return PlatformUnavailable(f"the Discord gateway failed: {exc!r}")


__all__ = [
    "DEFAULT_RETRY_AFTER",
    "GONE",
    "NETWORK_ERRORS",
    "THREAD_EXISTS",
    "gateway_error",
    "to_sink_error",
]
