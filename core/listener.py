"""A small aiohttp server for an adapter that receives over HTTP (a Request URL, a webhook).

It serves the adapter's ``POST`` routes and ``GET /healthz`` (``{"ok": true}``) on
``host:port``, logs no requests and leaves signal handling to the bot. A body over
``max_body`` bytes is answered 413 (with the adapter's ``too_large`` JSON) before it
is read whole — unread when its ``Content-Length`` says so, cut off at the limit
otherwise; a route's handler gets the request and its whole body. What a request
must carry (signatures, tokens) is the adapter's to check.

aiohttp is imported only when the server starts (a bot that does not listen runs
without it): :meth:`Listener.start` raises :class:`ModuleNotFoundError` then.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

#: A route: the request and its body (at most ``max_body`` bytes, read whole).
BodyHandler = Callable[["web.Request", bytes], Awaitable["web.StreamResponse"]]

HEALTH_PATH = "/healthz"


class Listener:
    """POST routes plus ``GET /healthz`` on ``host:port`` (0: any free port), started and stopped as one."""

    def __init__(self, name: str, host: str, port: int, *, max_body: int, too_large: Mapping[str, Any]) -> None:
        self.name = name  # for the log line, e.g. "Slack events"
        self.host = host
        self.requested_port = port
        self.max_body = max_body
        self.too_large = dict(too_large)  # the JSON body of a 413
        self.port: int | None = None  # the bound port, once started (the free one picked for port 0)
        self._runner: web.AppRunner | None = None

    @property
    def addresses(self) -> list[Any]:
        """The socket addresses listened on (none before start and after stop)."""
        return list(self._runner.addresses) if self._runner is not None else []

    async def start(self, routes: Mapping[str, BodyHandler]) -> int:
        """Listen, serving ``POST`` on each path of ``routes``; returns the bound port.

        Raises :class:`ModuleNotFoundError` without aiohttp and :class:`OSError` when the address
        cannot be bound; nothing is left open then.
        """
        from aiohttp import web

        app = web.Application(client_max_size=self.max_body)
        for path, handler in routes.items():
            app.router.add_post(path, self._reading(handler))
        app.router.add_get(HEALTH_PATH, _healthz)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.requested_port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = bound_port(runner) or self.requested_port
        log.info("%s: listening on http://%s:%s%s", self.name, self.host, self.port, ", ".join(routes))
        return self.port

    async def stop(self) -> None:
        """Stop listening (nothing to do before start, or a second time)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def _reading(self, handler: BodyHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """``handler`` behind the size limit: it runs with the whole body, or the request gets 413."""

        async def route(request: web.Request) -> web.StreamResponse:
            raw = await self.read(request)
            if raw is None:
                from aiohttp import web

                return web.json_response(self.too_large, status=413)
            return await handler(request, raw)

        return route

    async def read(self, request: web.Request) -> bytes | None:
        """The request's body, or None when it is over ``max_body`` (it is not read whole then)."""
        from aiohttp import web

        if (request.content_length or 0) > self.max_body:
            return None
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return None


async def _healthz(request: web.Request) -> web.Response:
    from aiohttp import web

    return web.json_response({"ok": True})


def bound_port(runner: web.AppRunner) -> int | None:
    """The port a started aiohttp runner listens on (the one the OS picked for port 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None
