"""The Slack adapter: a bolt ``AsyncApp`` whose listeners feed the core dispatcher.

* :mod:`.transport` — Socket Mode, or the HTTP Events API behind a signature check
* :mod:`.listeners` — messages, approval buttons and the slash command -> the dispatcher
* :mod:`.sink` — replies (native streaming in threads, edits elsewhere)
* :mod:`.events` — who is talking, where, whether the bot is addressed (the bot's ``route`` picks the conversation)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from core import ChatAdapter, ConfigError, Dispatcher, PlatformUnavailable
from core.adapter import Router, drain_tasks
from core.sink import target_from

from .config import SlackConfig
from .errors import NETWORK_ERRORS, error_code
from .events import PLATFORM, BotIdentity, SlackPlace
from .files import FileFetcher
from .listeners import SlackListeners
from .sink import SinkOptions, SlackSink, SlackTarget
from .status import Capabilities
from .transport import HttpTransport, SocketTransport

log = logging.getLogger(__name__)


class SlackAdapter(ChatAdapter[SlackPlace]):
    platform: ClassVar[str] = PLATFORM

    def __init__(
        self, settings: SlackConfig, dispatcher: Dispatcher, route: Router[SlackPlace], *, where: str = ""
    ) -> None:
        super().__init__(settings, dispatcher, route, where=where)
        self.config = config = settings
        token = config.bot_token.get_secret_value()
        self.client = AsyncWebClient(token=token, base_url=config.base_url)
        self.caps = Capabilities(streaming=config.streaming)
        self.sink_options = SinkOptions(
            streaming=config.streaming,
            text_format=config.text_format,
            edit_interval=config.edit_interval,
            max_len=config.max_message_chars,
            working_reaction=config.working_reaction,
            working_status=config.working_status,
        )
        api_host = urlsplit(config.base_url).hostname or ""
        self.files = FileFetcher(token, extra_hosts={api_host} if api_host else set())
        self.bot: BotIdentity | None = None
        self._running = False  # started and not stopping: replies other instances received may be posted here
        secret = config.signing_secret.get_secret_value() if config.signing_secret else None
        self.app = AsyncApp(
            client=self.client,
            signing_secret=secret,
            request_verification_enabled=config.mode == "http",
            logger=logging.getLogger("ccbridge.slack.bolt"),
        )
        self.listeners = SlackListeners(self)
        self.listeners.register(self.app)
        self.http: HttpTransport | None = HttpTransport(self.app, config) if config.mode == "http" else None
        self.socket: SocketTransport | None = (
            SocketTransport(self.app, config, self.client, app_token_key=self.config_key("app_token"))
            if config.mode == "socket"
            else None
        )

    @property
    def port(self) -> int | None:
        return self.http.listener.port if self.http else None

    async def identity(self) -> BotIdentity:
        """Check the bot token (``auth.test``) and learn the bot's own ids (once)."""
        if self.bot is not None:
            return self.bot
        try:
            auth = await self.client.auth_test()
        except SlackApiError as exc:
            raise ConfigError(
                f"Slack rejected the bot token ({error_code(exc) or exc})", key=self.config_key("bot_token")
            ) from None
        except NETWORK_ERRORS as exc:
            raise PlatformUnavailable(f"cannot reach the Slack Web API at {self.config.base_url}: {exc!r}") from None
        self.bot = BotIdentity(user_id=str(auth["user_id"]), bot_id=auth.get("bot_id"), team_id=auth.get("team_id"))
        log.info("Slack: connected as <@%s> in team %s", self.bot.user_id, self.bot.team_id)
        return self.bot

    def sink_for(self, target: SlackTarget) -> SlackSink:
        return SlackSink(self.client, target, self.sink_options, self.caps)

    def sink_at(self, address: Mapping[str, Any]) -> SlackSink | None:
        """A reply another instance received, posted from here (while this instance is running)."""
        target = target_from(SlackTarget, address)
        return self.sink_for(target) if target is not None and self._running else None

    async def start(self) -> None:
        await self.identity()
        try:
            if self.http is not None:
                await self.http.start()
            if self.socket is not None:
                await self.socket.start()
        except BaseException:
            await self.stop(drain_timeout=0)
            raise
        self._running = True
        self.dispatcher.answer_left_waiting()

    async def stop(self, drain_timeout: float = 10.0) -> None:
        self._running = False
        self.dispatcher.end_windows()
        if self.socket is not None:
            await self.socket.stop()
        if self.http is not None:
            await self.http.stop()
        await drain_tasks(drain_timeout, self.dispatcher.in_flight)  # what outlasts it is cancelled
        await self.files.close()
