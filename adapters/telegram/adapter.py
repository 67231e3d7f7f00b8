"""The Telegram adapter: python-telegram-bot updates in, core dispatcher calls out.

Receives by long polling (default) or by webhook with a secret token (PTB's
webhook server answers 403 to requests without the right
``X-Telegram-Bot-Api-Secret-Token``). Each update is handled once (by
``update_id``); updates other than messages and button presses are skipped.

Who is answered and which conversation a message belongs to is the bot's
policy, passed in as ``route``: ``MessageView -> ConversationKey | None``
(None: not for the bot, nothing is forwarded).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from telegram import BotCommand, CallbackQuery, Message, Update, User
from telegram.error import InvalidToken, TelegramError
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

from core import (
    ApprovalForbidden,
    ApprovalNotFound,
    CCBridgeError,
    ConfigError,
    ConversationKey,
    Dispatcher,
    IncomingMessage,
    send_notice,
)
from core.commands import COMMANDS
from core.dedupe import RecentKeys

from . import approvals
from .config import TelegramConfig
from .files import UploadRejected, files_in, save_files
from .sink import ChatPacer, ChatTarget, DraftSupport, TelegramSink, telegram_limits
from .updates import MessageView, display_name, inspect_message

log = logging.getLogger(__name__)

Router = Callable[[MessageView], ConversationKey | None]
ALLOWED_UPDATES = ["message", "callback_query"]


class TelegramUnavailable(CCBridgeError):
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


class TelegramAdapter:
    def __init__(self, config: TelegramConfig, dispatcher: Dispatcher, route: Router, *, where: str = "") -> None:
        self.config = config
        self.where = where  # the config prefix for error messages, e.g. "bots.team"
        self.dispatcher = dispatcher
        self.route = route
        self.seen = RecentKeys()
        self.names = NameBook()
        self.pacer = ChatPacer(config.edit_interval)
        self.drafts = DraftSupport(config.drafts)
        self.limits = telegram_limits(
            max_len=config.max_message_len, edit_interval=config.edit_interval, typing_interval=config.typing_interval
        )
        self.application = self._build()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- setup -------------------------------------------------------------------
    def _build(self) -> Application[Any, Any, Any, Any, Any, Any]:
        c = self.config
        builder = (
            ApplicationBuilder()
            .token(c.token.get_secret_value())
            .base_url(c.base_url)
            .base_file_url(c.base_file_url)
            .local_mode(c.local_mode)
            .get_updates_read_timeout(c.poll_timeout + 10)
        )
        if c.throttle:
            # max_retries=0: a 429 reaches the sink as RetryAfter and the core's streamer waits it out
            builder = builder.rate_limiter(AIORateLimiter(max_retries=0))
            _quiet_rate_limiter_log()
        app = builder.build()
        app.add_handler(TypeHandler(Update, self._gate), group=-1)
        app.add_handler(MessageHandler(filters.UpdateType.MESSAGE, self._on_message))
        app.add_handler(CallbackQueryHandler(self._on_callback))
        app.add_error_handler(self._on_error)
        return app

    @property
    def me(self) -> User:
        return self.application.bot.bot

    async def start(self) -> None:
        app = self.application
        try:
            await app.initialize()  # getMe: checks the token and the server
        except InvalidToken:
            await app.bot.shutdown()
            key = f"{self.where}.token" if self.where else "token"
            raise ConfigError("Telegram rejected the bot token", key=key) from None
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

    async def _start_receiving(self) -> None:
        c = self.config
        updater = self.application.updater
        assert updater is not None
        if c.mode == "webhook":
            assert c.webhook is not None
            w = c.webhook
            await updater.start_webhook(
                listen=w.listen,
                port=w.port,
                url_path=w.path,
                webhook_url=w.url,
                secret_token=w.secret_token.get_secret_value(),
                allowed_updates=ALLOWED_UPDATES,
                drop_pending_updates=c.drop_pending_updates,
                max_connections=w.max_connections,
            )
        else:
            await updater.start_polling(
                timeout=int(c.poll_timeout),
                allowed_updates=ALLOWED_UPDATES,
                drop_pending_updates=c.drop_pending_updates,
            )

    async def stop(self, drain_timeout: float = 10.0) -> None:
        app = self.application
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=drain_timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await app.shutdown()

    async def __aenter__(self) -> TelegramAdapter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Serve until cancelled."""
        async with self:
            await asyncio.Event().wait()

    async def _register_commands(self) -> None:
        commands = [BotCommand(spec.name, spec.help[:256]) for spec in COMMANDS.values()]
        try:
            await self.application.bot.set_my_commands(commands)
        except TelegramError as exc:
            log.warning("could not register the command list with setMyCommands: %s", exc)

    # -- updates -------------------------------------------------------------------
    async def _gate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Runs first for every update: drops duplicates and update types the bot doesn't handle."""
        if not self.seen.first_time(update.update_id):
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
        return TelegramSink(
            self.application.bot, target, limits=self.limits, pacer=self.pacer, drafts=self.drafts, names=self.names
        )

    async def _on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message: Message = update.message  # type: ignore[assignment]
        view = inspect_message(message, self.me)
        if view is None:
            return
        key = self.route(view)
        if key is None:
            log.debug("message %s in %s is not for the bot", view.message_id, view.chat_id)
            return
        sink = self.sink_for(view)
        text = "/help" if view.command == "/start" else view.text
        attachments = []
        files = files_in(message)
        # Files of users who may not use the bot are not downloaded; the dispatcher refuses them.
        if files and self.dispatcher.access.allows(key.platform, view.user.id):
            try:
                attachments = await save_files(
                    self.application.bot, self.dispatcher.agent.workspaces, key, files, self.config.max_upload_bytes
                )
            except UploadRejected as exc:
                await send_notice(sink, str(exc))
                return
            except (CCBridgeError, OSError) as exc:
                log.warning("could not save a file from %s: %s", view.user.id, exc)
                await send_notice(sink, f"⚠️ I couldn't save your file ({exc}). Nothing was sent to Claude.")
                return
        incoming = IncomingMessage(
            key=key,
            user=view.user,
            text=text,
            reply=sink,
            attachments=attachments,
            mentioned=True,
            message_id=str(view.message_id),
        )
        task = self.dispatcher.submit(incoming)
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
            request = self.dispatcher.resolve_approval(press.request_id, press.decision, str(query.from_user.id))
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
