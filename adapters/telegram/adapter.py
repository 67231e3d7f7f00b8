"""The Telegram adapter: python-telegram-bot updates in, core dispatcher calls out.

Receives by long polling (default) or by webhook with a secret token
(:mod:`.webhook` answers 403 to requests without the right
``X-Telegram-Bot-Api-Secret-Token``). Each update is handled once (by
``update_id``, remembered in the store); updates other than messages and button
presses are skipped, and so are updates PTB cannot parse (:mod:`.client`; in
webhook mode they are acknowledged with 200 so Telegram moves on).

PTB handles updates one after another, so handlers only translate: each message
goes to the dispatcher (which decides, downloads the files it admits, and keeps
each conversation's messages in order) at once. Album items are collected first
(:mod:`.albums`); an album keeps the place of its first item in its chat's line.

Who is answered and which conversation a message belongs to is the bot's
policy, passed in as ``route``: ``MessageView -> ConversationKey | None``
(None: not for the bot, nothing is forwarded).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, ClassVar

from telegram import BotCommand, CallbackQuery, Message, Update, User
from telegram.error import BadRequest, Forbidden, InvalidToken, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.request import HTTPXRequest

from core import (
    ApprovalForbidden,
    ApprovalNotFound,
    ChatAdapter,
    ConfigError,
    Dispatcher,
    IncomingMessage,
    PlatformUnavailable,
    UserRef,
)
from core.adapter import Router as CoreRouter
from core.adapter import drain_tasks
from core.commands import COMMANDS
from core.sink import target_from

from . import approvals
from .albums import Album, AlbumCollector
from .client import ScreeningBot
from .config import TelegramConfig
from .files import files_in
from .sink import ChatPacer, ChatTarget, DraftSupport, TelegramSink, telegram_limits
from .updates import MessageView, display_name, inspect_message
from .webhook import WebhookServer

log = logging.getLogger(__name__)

PLATFORM = "telegram"
Router = CoreRouter[MessageView]
ALLOWED_UPDATES = ["message", "callback_query"]


class TelegramUnavailable(PlatformUnavailable):
    """The Bot API could not be reached at start-up."""


class _HandledRateLimits(logging.Filter):
    """Drops AIORateLimiter's error log for a 429 it passes on: the reply streamer waits it out."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Rate limit hit after maximum")


def _quiet_rate_limiter_log() -> None:
    logger = logging.getLogger("telegram.ext.AIORateLimiter")
    if not any(isinstance(f, _HandledRateLimits) for f in logger.filters):
        logger.addFilter(_HandledRateLimits())


class NameBook(OrderedDict[str, str]):
    """Display names of recently seen users (for "Allowed by Ada"), bounded."""

    def __init__(self, size: int = 5000) -> None:
        super().__init__()
        self.size = size

    def remember(self, user: User) -> None:
        key = str(user.id)
        self[key] = display_name(user)
        self.move_to_end(key)
        if len(self) > self.size:
            self.popitem(last=False)


class TelegramAdapter(ChatAdapter[MessageView]):
    platform: ClassVar[str] = PLATFORM

    def __init__(self, settings: TelegramConfig, dispatcher: Dispatcher, route: Router, *, where: str = "") -> None:
        super().__init__(settings, dispatcher, route, where=where)
        self.config = config = settings
        self.names = NameBook()
        self.pacer = ChatPacer(config.edit_interval)
        self.drafts = DraftSupport(config.drafts)
        self.limits = telegram_limits(
            max_len=config.max_message_len, edit_interval=config.edit_interval, typing_interval=config.typing_interval
        )
        self.application = self._build()
        self._webhook: WebhookServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.albums = AlbumCollector(config.album_window, self._on_album)

    # -- setup -------------------------------------------------------------------
    def _build(self) -> Application[Any, Any, Any, Any, Any, Any]:
        c = self.config
        rate_limiter = None
        if c.throttle:
            # max_retries=0: a 429 reaches the sink as RetryAfter and the core's streamer waits it out
            rate_limiter = AIORateLimiter(max_retries=0)
            _quiet_rate_limiter_log()
        bot = ScreeningBot(
            c.token.get_secret_value(),
            base_url=c.base_url,
            base_file_url=c.base_file_url,
            local_mode=c.local_mode,
            request=HTTPXRequest(connection_pool_size=256),  # ApplicationBuilder's defaults
            get_updates_request=HTTPXRequest(connection_pool_size=1, read_timeout=c.poll_timeout + 10),
            rate_limiter=rate_limiter,
        )
        app = ApplicationBuilder().bot(bot).build()
        app.add_handler(TypeHandler(Update, self._gate), group=-1)
        app.add_handler(MessageHandler(filters.UpdateType.MESSAGE, self._on_message))
        app.add_handler(CallbackQueryHandler(self._on_callback))
        app.add_error_handler(self._on_error)
        return app

    @property
    def single_connection(self) -> bool:
        return self.config.mode == "polling"  # Telegram hands updates to one getUpdates caller at a time

    @property
    def me(self) -> User:
        return self.application.bot.bot

    async def start(self) -> None:
        app = self.application
        try:
            await app.initialize()  # getMe: checks the token and the server
        except InvalidToken:
            await app.bot.shutdown()
            raise ConfigError("Telegram rejected the bot token", key=self.config_key("token")) from None
        except TelegramError as exc:
            await app.bot.shutdown()
            raise TelegramUnavailable(f"cannot reach the Telegram Bot API at {self.config.base_url}: {exc}") from None
        try:
            await self._register_commands()
            await self._start_receiving()
            await app.start()
        except BaseException:
            await self.stop(drain_timeout=0)
            raise
        log.info("telegram bot @%s is up (%s)", self.me.username, self.config.mode)
        self.dispatcher.answer_left_waiting()

    async def _start_receiving(self) -> None:
        c = self.config
        updater = self.application.updater
        assert updater is not None
        if c.mode == "webhook":
            assert c.webhook is not None
            w = c.webhook
            self._webhook = WebhookServer(self.application, w)
            await self._webhook.start()
            try:
                await self.application.bot.set_webhook(
                    url=w.url,
                    secret_token=w.secret_token.get_secret_value(),
                    allowed_updates=ALLOWED_UPDATES,
                    drop_pending_updates=c.drop_pending_updates,
                    max_connections=w.max_connections,
                )
            except (BadRequest, Forbidden) as exc:  # setWebhook refused: the URL (or its certificate) is wrong
                raise ConfigError(
                    f"Telegram refused the webhook URL {w.url}: {exc.message}", key=self.config_key("webhook.url")
                ) from None
            except TelegramError as exc:
                raise TelegramUnavailable(f"could not set the webhook {w.url} with Telegram: {exc.message}") from None
        else:
            await updater.start_polling(
                timeout=int(c.poll_timeout),
                allowed_updates=ALLOWED_UPDATES,
                drop_pending_updates=c.drop_pending_updates,
            )

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop receiving, hand on collected albums, let work in flight finish (up to ``drain_timeout``)."""
        self.dispatcher.end_windows()
        app = self.application
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if self._webhook is not None:
            webhook, self._webhook = self._webhook, None
            await webhook.stop()
        if app.running:
            await app.stop()
        self.albums.flush()
        await drain_tasks(drain_timeout, self._tasks, self.dispatcher.in_flight)
        await app.shutdown()  # a no-op when it never started

    async def _register_commands(self) -> None:
        commands = [BotCommand(spec.name, spec.help[:256]) for spec in COMMANDS.values()]
        try:
            await self.application.bot.set_my_commands(commands)
        except TelegramError as exc:
            log.warning("could not register the command list with setMyCommands: %s", exc)

    # -- updates -------------------------------------------------------------------
    async def _gate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Runs first for every update: drops duplicates and update types the bot doesn't handle."""
        if not await self.dispatcher.first_delivery(f"update:{update.update_id}"):
            log.info("update %s was delivered again; it is handled once", update.update_id)
            raise ApplicationHandlerStop
        if update.message is None and update.callback_query is None:
            log.debug("skipping update %s: neither a new message nor a button press", update.update_id)
            raise ApplicationHandlerStop
        if update.effective_user is not None:
            self.names.remember(update.effective_user)

    def sink_for(self, view: MessageView) -> TelegramSink:
        target = ChatTarget(
            chat_id=view.chat_id,
            private=view.private,
            thread_id=view.thread_id,
            reply_to=None if view.private else view.message_id,
        )
        return self._sink(target)

    def sink_at(self, address: Mapping[str, Any]) -> TelegramSink | None:
        """A reply another instance received, posted from here (only while this instance is connected)."""
        target = target_from(ChatTarget, address)
        return self._sink(target) if target is not None and self.application.running else None

    def _sink(self, target: ChatTarget) -> TelegramSink:
        return TelegramSink(
            self.application.bot, target, limits=self.limits, pacer=self.pacer, drafts=self.drafts, names=self.names
        )

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message: Message = update.message  # type: ignore[assignment]
        view = inspect_message(message, self.me)
        if view is None:
            return
        key = self.route(view)
        if message.media_group_id is not None:
            opened = self.albums.add(message, view, key)
            if opened is not None:  # the album keeps its place among the chat's messages
                opened.place = self.dispatcher.reserve(opened.key)
                self._track(asyncio.create_task(self._album_sign_of_life(view), name=f"ccbridge-album-typing-{key}"))
            return
        if key is None:
            log.debug("message %s in %s is not for the bot", view.message_id, view.chat_id)
            return
        text = "/help" if view.command == "/start" else view.text
        self._submit(self._incoming(key, view, text, [message]))

    async def _album_sign_of_life(self, view: MessageView) -> None:
        """The typing indicator as soon as an album addressed to the bot opens (its turn starts only once
        its items stopped coming, ``album_window`` later), for a user the bot answers."""
        try:
            if await self.dispatcher.admits(PLATFORM, view.user):
                await self.sink_for(view).typing()
        except Exception as exc:  # noqa: BLE001 (a sign of life that failed costs the album nothing)
            log.debug("typing indicator for an album failed: %r", exc)

    def _on_album(self, album: Album) -> None:
        self._submit(self._incoming(album.key, album.view, "\n".join(album.texts), album.messages), album.place)

    def _incoming(self, key: Any, view: MessageView, text: str, messages: list[Message]) -> IncomingMessage:
        bot = self.application.bot
        return IncomingMessage(
            key=key,
            user=view.user,
            text=text,
            reply=self.sink_for(view),
            files=[f for m in messages for f in files_in(m, bot, local_mode=self.config.local_mode)],
            mentioned=True,
            message_id=str(view.message_id),
            mentions=list(view.mentions),
        )

    def _submit(self, incoming: IncomingMessage, ticket: Any = None) -> None:
        self._track(self.dispatcher.submit(incoming, ticket))

    def _track(self, task: asyncio.Task[None]) -> None:
        """Keep ``task`` among the work drained at :meth:`stop`."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query: CallbackQuery = update.callback_query  # type: ignore[assignment]
        press = approvals.parse_press(query.data)
        if press is None:
            log.debug("unknown button data %r", query.data)
            await self._answer(query)
            return
        try:
            presser = UserRef(str(query.from_user.id), display_name(query.from_user))
            request = await self.dispatcher.resolve_approval(press.request_id, press.decision, presser)
        except ApprovalForbidden:
            await self._answer(query, approvals.FORBIDDEN_TEXT, alert=True)
            return
        except ApprovalNotFound:
            await self._answer(query, approvals.EXPIRED_TEXT, alert=True)
            try:
                await query.edit_message_reply_markup(None)
            except TelegramError as exc:
                log.debug("could not remove stale approval buttons: %s", exc)
            return
        # The reply streamer shows the decision in the prompt message (sink.show_approval).
        await self._answer(query, request.decision.label if request.decision else "")

    @staticmethod
    async def _answer(query: CallbackQuery, text: str | None = None, *, alert: bool = False) -> None:
        try:
            await query.answer(text or None, show_alert=alert)
        except TelegramError as exc:
            log.info("could not answer a button press: %s", exc)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("error while handling a Telegram update", exc_info=context.error)
