"""Webhook mode: a small aiohttp server Telegram POSTs updates to, feeding PTB's update queue.

Requests without the right ``X-Telegram-Bot-Api-Secret-Token`` get 403 and are
ignored. Everything else is acknowledged with 200 — also a body that is not
JSON, or an update PTB cannot parse: those are skipped with a log line,
because Telegram redelivers an update until it gets a 2xx, holding back every
later one behind it.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from aiohttp import web
from telegram import Update
from telegram.ext import Application

from .client import screen_update
from .config import WebhookConfig

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_MAX_BODY = 4 * 1024 * 1024


class WebhookServer:
    def __init__(self, application: Application[Any, Any, Any, Any, Any, Any], config: WebhookConfig) -> None:
        self.application = application
        self.config = config
        self._secret = config.secret_token.get_secret_value().encode()
        self._runner: web.AppRunner | None = None

    @property
    def path(self) -> str:
        return "/" + self.config.path.strip("/")

    async def start(self) -> None:
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_post(self.path, self._receive)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.config.listen, self.config.port).start()
        except BaseException:
            await self.stop()
            raise
        log.info("telegram: webhook server on http://%s:%s%s", self.config.listen, self.config.port, self.path)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            log.info("telegram: refused a webhook request without the right secret token")
            return web.Response(status=403)
        try:
            raw = json.loads(await request.read())
        except ValueError:
            log.warning("telegram: skipping a webhook request whose body is not JSON")
            return web.Response(status=200)
        screened = screen_update(raw, self.application.bot)
        if screened is None:
            return web.Response(status=200)
        update = Update.de_json(screened, self.application.bot)
        await self.application.update_queue.put(update)
        return web.Response(status=200)
