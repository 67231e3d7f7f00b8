"""The HTTP API bot: ccbridge's sessions over HTTP (FastAPI served by uvicorn).

Users are whoever the calling application says (``user_id`` in each request);
the caller authenticates with an API key. Sessions live on platform ``"api"``:
the bot named ``api`` shares them with the library API (``Agent.chat(user_id=...)``);
another ``http_api`` bot scopes its keys by its name (``bot_scope``), so two of them on
one store never share a session, a workspace or a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import uvicorn

from adapters.http_api import ApiSettings, create_app
from adapters.http_api.context import ApiContext
from core import Agent, ConfigError

from .base import Bot, BotSettings, bot_scope

log = logging.getLogger(__name__)

SHORT_KEY = 16


class HttpApiSettings(BotSettings, ApiSettings):
    """``bots.<name>:`` keys of an ``http_api`` bot (see ApiSettings for each key)."""


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its own SIGINT/SIGTERM handlers.

    ``Server.serve()`` normally swaps in handlers of its own while it runs; here the
    process (``run_bot.py``) owns the signals and stops the bot by cancelling
    ``run()``, so it can stop running turns first and close the agents last.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpApiBot(Bot):
    kind = "http_api"
    platform = "api"
    Settings = HttpApiSettings
    chat_platform = False
    settings: HttpApiSettings
    _ctx: ApiContext | None = None  # the running app's, once served

    def __init__(self, name: str, agent: Agent, settings: BotSettings) -> None:
        super().__init__(name, agent, settings)
        self.scope = bot_scope(name, self.platform)
        self._scope_prewarm(self.scope)

    def describe(self) -> str:
        s = self.settings
        auth = "anonymous" if s.anonymous else f"{len(s.api_keys)} API key(s)"
        admin = f", {len(s.admin_keys)} admin key(s)" if s.admin_keys else ""
        return f"{self.name} (http_api on http://{s.host}:{s.port}, {auth}{admin})"

    def reload(self, settings: BotSettings) -> list[str]:
        """Keys, users, admin keys and the turn timeout change at once; the rest needs a restart."""
        assert isinstance(settings, HttpApiSettings)
        if self._ctx is None:  # not serving yet: the server starts with these
            self.settings = settings
            return []
        before = set(self.warnings())
        pending = self._ctx.reconfigure(settings)
        running = self._ctx.settings
        assert isinstance(running, HttpApiSettings)
        self.settings = running
        for warning in self.warnings():
            if warning not in before:
                log.warning("%s: %s", self.name, warning)
        return [f"bots.{self.name}.{name}" for name in pending]

    def warnings(self) -> list[str]:
        s = self.settings
        out = super().warnings()
        if s.anonymous:
            out.append(
                "allow_anonymous is set and there are no api_keys: anyone who can reach "
                f"{s.host}:{s.port} can run Claude Code (put an authenticating proxy in front)."
            )
        if any(len(k.get_secret_value()) < SHORT_KEY for k in s.api_keys):
            out.append(f"some api_keys are shorter than {SHORT_KEY} characters; use long random keys.")
        if any(len(k.key.get_secret_value()) < SHORT_KEY for k in s.admin_keys):
            out.append(f"some admin_keys are shorter than {SHORT_KEY} characters; use long random keys.")
        if s.admin_bots and self.agent.sections.store.backend == "memory":
            out.append(
                "admin_bots is set but the store is in memory: grants made through /admin/users "
                "never reach those bots (use a store they share)."
            )
        if not s.allowed_users:
            out.append("allowed_users is empty: API callers may act as any user_id.")
        if s.callback_allow_private and s.callback_secret is not None:
            out.append("callback_allow_private is on: callers can make this server POST to private networks.")
        return out

    def server(self) -> uvicorn.Server:
        s = self.settings
        app = create_app(
            self.agent, s, reload=self.reloader, bot_access=lambda name: self.bots_access.get(name), scope=self.scope
        )
        self._ctx = app.state.ctx
        config = uvicorn.Config(
            app,
            host=s.host,
            port=s.port,
            log_config=None,  # keep run_bot's logging
            access_log=s.access_log,
            timeout_graceful_shutdown=max(5, int(self.drain_timeout)),  # responses still streaming finish
            lifespan="on",
        )
        return EmbeddedServer(config)

    async def run(self) -> None:
        server = self.server()
        serving = asyncio.create_task(self._serve(server), name=f"uvicorn-{self.name}")
        try:
            await asyncio.shield(serving)
        except asyncio.CancelledError:
            server.should_exit = True  # graceful: finish responses, run the app's shutdown
            await asyncio.wait({serving})
            raise

    async def _serve(self, server: uvicorn.Server) -> None:
        try:
            await server.serve()
        except SystemExit:  # uvicorn exits when it cannot bind or start the app
            raise ConfigError(
                f"the HTTP API could not start on {self.settings.host}:{self.settings.port} (see the log above)",
                key=f"bots.{self.name}.port",
            ) from None


BOT = HttpApiBot
