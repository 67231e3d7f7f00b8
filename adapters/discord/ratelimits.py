"""Rate limits: discord.py paces by Discord's headers; a 429 on a reply is handed to the core's streamer.

discord.py reads ``X-RateLimit-*`` on every answer and waits before sending into
an exhausted bucket, so a well-paced bot rarely sees a 429. When one comes
anyway, discord.py would sleep ``retry_after`` and retry inside the call. For
reply operations (:mod:`.sink`) that is the wrong place to wait: the core's
:class:`~core.reply.ReplyStreamer` waits it out itself, coalescing the updates
meanwhile and never dropping the final text. So, inside :func:`surfacing`, a
429 answer (a real rate limit: Discord's JSON body and a ``Via`` header) is
raised at once as :class:`RateLimitSurfaced` from an aiohttp trace hook
(``Client(http_trace=...)``), and :mod:`.errors` turns it into
:class:`core.RateLimited`. Everything else discord.py sends (thread creation,
interaction callbacks, command sync) keeps discord.py's own waiting.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER = 1.0
_SURFACE: contextvars.ContextVar[bool] = contextvars.ContextVar("ccbridge_discord_surface_429", default=False)


class RateLimitSurfaced(Exception):
    """Discord answered 429 to a reply operation; the caller waits ``retry_after`` seconds."""

    def __init__(self, retry_after: float, *, is_global: bool = False, scope: str | None = None) -> None:
        self.retry_after = max(0.0, retry_after)
        self.is_global = is_global
        self.scope = scope
        super().__init__(f"rate limited for {self.retry_after:g}s" + (" (global)" if is_global else ""))


@contextlib.contextmanager
def surfacing() -> Iterator[None]:
    """Within this block (this task), a 429 raises :class:`RateLimitSurfaced` instead of being slept on."""
    token = _SURFACE.set(True)
    try:
        yield
    finally:
        _SURFACE.reset(token)


def trace_config() -> aiohttp.TraceConfig:
    """The trace hook to pass as ``discord.Client(http_trace=...)``."""
    config = aiohttp.TraceConfig()
    config.on_request_end.append(_on_request_end)
    return config


def retry_after_of(headers: Any, body: Any = None) -> float | None:
    """The wait a 429 asks for: the body's ``retry_after``, else the headers'; None when neither says."""
    if isinstance(body, dict):
        try:
            return max(0.0, float(body["retry_after"]))
        except (KeyError, TypeError, ValueError):
            pass
    for name in ("X-RateLimit-Reset-After", "Retry-After"):
        value = headers.get(name) if headers is not None else None
        if value is not None:
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                continue
    return None


async def _on_request_end(session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestEndParams) -> None:
    response = params.response
    if response.status != 429 or not _SURFACE.get():
        return
    if not response.headers.get("Via"):
        return  # not Discord's own 429 (a Cloudflare ban page): discord.py raises HTTPException itself
    try:
        body = await response.json(content_type=None)
    except (aiohttp.ClientError, ValueError):
        body = None
    retry_after = retry_after_of(response.headers, body)
    is_global = bool(body.get("global")) if isinstance(body, dict) else False
    scope = response.headers.get("X-RateLimit-Scope")
    log.info(
        "Discord rate-limited %s %s for %.2fs (%s); the reply waits it out",
        params.method,
        params.url.path,
        retry_after if retry_after is not None else DEFAULT_RETRY_AFTER,
        "global" if is_global else scope or "route",
    )
    # aiohttp closes the response when a trace hook raises; discord.py never sees it (no internal retry).
    raise RateLimitSurfaced(
        DEFAULT_RETRY_AFTER if retry_after is None else retry_after, is_global=is_global, scope=scope
    )
