"""How Slack's events reach bolt: Socket Mode, or the HTTP Events API behind a signature check.

Over HTTP a body over 4 MB gets 413 unread; every other request's signature and
timestamp are checked before its body is parsed (forged or stale: 401), Slack's
unsigned ``ssl_check`` probe gets 200, and a signed body that is not what Slack
sends gets 400 (:mod:`.payloads`); nothing runs for any of them. The accepted
request is handed to bolt unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from core import ConfigError
from core.listener import Listener

from .config import SlackConfig
from .errors import error_code
from .payloads import is_ssl_check, read_body, shape_problem

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 4 * 1024 * 1024  # Slack's payloads are small; refuse anything huge


class HttpTransport:
    """The Events API / interactivity / slash command endpoint at ``host:port`` + ``path``."""

    def __init__(self, app: AsyncApp, config: SlackConfig) -> None:
        self.app = app
        self.config = config
        secret = config.signing_secret.get_secret_value() if config.signing_secret else None
        self._verifier = SignatureVerifier(secret) if secret else None
        self.listener = Listener(
            "Slack events",
            config.host,
            config.port,
            max_body=MAX_REQUEST_BYTES,
            too_large={"error": f"request body too large (the limit is {MAX_REQUEST_BYTES // (1024 * 1024)} MB)"},
        )

    async def start(self) -> int:
        return await self.listener.start({self.config.path: self.handle})

    async def stop(self) -> None:
        await self.listener.stop()

    async def handle(self, request: web.Request, raw: bytes) -> web.Response:
        """One request (its whole body, within the size limit): signature, shape — then bolt."""
        if is_ssl_check(raw):
            return web.Response(status=200)
        if not self._signed(raw, request.headers):
            log.info("Slack: refused a request with a missing or invalid signature")
            return web.json_response({"error": "invalid request"}, status=401)
        try:
            text = raw.decode("utf-8")
            parsed = read_body(text, request.content_type)
        except ValueError:  # not UTF-8, or not the JSON / form data it claims to be
            parsed = None
        problem = shape_problem(parsed)
        if problem:
            log.info("Slack: refused a signed request with a malformed body (%s)", problem)
            return web.json_response({"error": f"malformed request body ({problem})"}, status=400)
        bolt_request = AsyncBoltRequest(body=text, query=request.query_string, headers=dict(request.headers))
        bolt_request.body = parsed  # our reading (see read_body), and the context built from it
        bolt_request.context = build_async_context(AsyncBoltContext({}), parsed)
        return await to_aiohttp_response(await self.app.async_dispatch(bolt_request))

    def _signed(self, raw: bytes, headers: Any) -> bool:
        """Slack's ``v0`` HMAC of the raw body, within the 5-minute window."""
        if self._verifier is None:  # SlackConfig requires a signing secret in http mode
            return False
        try:
            return self._verifier.is_valid(
                raw, headers.get("X-Slack-Request-Timestamp"), headers.get("X-Slack-Signature")
            )
        except ValueError:  # a timestamp that is not a number, a body that is not UTF-8
            return False


class SocketTransport:
    """Socket Mode: ``apps.connections.open`` + a WebSocket; no public URL needed."""

    def __init__(self, app: AsyncApp, config: SlackConfig, client: AsyncWebClient, *, app_token_key: str) -> None:
        self.app = app
        self.config = config
        self.client = client
        self.app_token_key = app_token_key
        self._handler: AsyncSocketModeHandler | None = None

    async def start(self) -> None:
        assert self.config.app_token is not None  # SlackConfig guarantees it in socket mode
        app_token = self.config.app_token.get_secret_value()
        # slack_sdk's Socket Mode client retries a refused token forever (it never raises): ask once
        # ourselves, so a wrong app token is a clear error at start instead of a silent retry loop.
        try:
            await self.client.apps_connections_open(app_token=app_token)
        except SlackApiError as exc:
            raise ConfigError(
                f"Socket Mode connection refused ({error_code(exc) or exc})", key=self.app_token_key
            ) from None
        self._handler = AsyncSocketModeHandler(self.app, app_token, web_client=self.client)
        await self._handler.connect_async()
        log.info("Slack: connected over Socket Mode")

    async def stop(self) -> None:
        if self._handler is not None:
            handler, self._handler = self._handler, None
            try:
                await handler.close_async()
            except Exception as exc:  # closing is best effort
                log.debug("closing Socket Mode failed: %r", exc)
