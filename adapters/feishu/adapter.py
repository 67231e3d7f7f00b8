"""The Feishu / Lark adapter: lark-oapi in, the core dispatcher out.

* :mod:`.long_connection` — ``lark.ws.Client`` in a thread and loop of its own (the default:
  no public URL needed); :mod:`.callback` — the HTTP Request URL, every request verified.
* :mod:`.events` — message events read into :class:`FeishuPlace` (the bot's ``route`` picks
  the conversation); :mod:`.sink` — CardKit streaming replies; :mod:`.approvals` — cards
  with buttons; :mod:`.files` — message resources; :mod:`.api` — REST calls off the loop.

Both ways of receiving end in :meth:`FeishuAdapter.on_body` (an event's decrypted body,
on the bot's loop). Events are acknowledged at once — Feishu pushes an event again when
it is not acked within 3 s — and handled in the background, each delivery once
(``event:<header.event_id>``, then ``message:<message_id>``; remembered in the store,
so also across restarts and reconnects). A message keeps its place in its
conversation's line from the moment it arrives. Card action callbacks (approval
buttons) are answered within 3 s with a toast for the presser.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from lark_oapi.ws.exception import ClientException, ServerException

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
from core.adapter import Router, drain_tasks
from core.sink import target_from

from . import approvals
from .api import FeishuApi
from .callback import CallbackServer
from .config import FeishuConfig
from .errors import APP_CREDENTIALS, FeishuApiError, FeishuNetworkError
from .events import PLATFORM, FeishuInbound, FeishuPlace, FeishuTarget, read_message
from .files import incoming
from .long_connection import LongConnection
from .sink import Capabilities, ChatPacer, FeishuSink, SinkOptions

log = logging.getLogger(__name__)

MESSAGE_EVENT = "im.message.receive_v1"
CARD_ACTION = "card.action.trigger"
CARD_ANSWER_BUDGET = 2.0  # seconds a card action waits for its answer (Feishu gives up after 3)


class ShuttingDown(Exception):
    """An event arrived while the adapter stops: not acked, so Feishu pushes it again elsewhere / later."""


class FeishuAdapter(ChatAdapter[FeishuPlace]):
    platform: ClassVar[str] = PLATFORM

    def __init__(
        self, settings: FeishuConfig, dispatcher: Dispatcher, route: Router[FeishuPlace], *, where: str = ""
    ) -> None:
        super().__init__(settings, dispatcher, route, where=where)
        self.config = config = settings
        self.api = FeishuApi(
            config.app_id,
            config.app_secret.get_secret_value(),
            config.domain,
            timeout=config.api_timeout,
            workers=config.api_workers,
        )
        self.caps = Capabilities(cardkit=config.streaming)
        self.pacer = ChatPacer()
        self.sink_options = SinkOptions(
            streaming=config.streaming,
            edit_interval=config.card_update_interval,
            max_len=config.max_card_chars,
            working_reaction=config.working_reaction,
        )
        self.bot_open_id: str | None = None
        self.bot_name: str | None = None
        self.ws: LongConnection | None = None
        self.http: CallbackServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = False
        self._ready = asyncio.Event()  # set when start() returns: nothing is handled before
        self._ws_ended = asyncio.Event()  # the long connection's thread ended
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int | None:
        """callback mode: the port the Request URL is served on."""
        return self.http.listener.port if self.http else None

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._identify()
        self._accepting = True
        try:
            if self.config.mode == "callback":
                self.http = CallbackServer(self.config, self.on_body, where=self.where)
                await self.http.start()
            else:
                await self._connect()
        except BaseException:
            await self.stop(drain_timeout=0)
            raise
        self._ready.set()
        self.dispatcher.answer_left_waiting()

    async def _identify(self) -> None:
        """Check the app credentials (a fresh tenant token) and learn the bot's own open_id."""
        name = self.config.platform_name
        try:
            await self.api.tenant_token(fresh=True)
            bot = await self.api.bot_info()
        except FeishuApiError as exc:
            if exc.code in APP_CREDENTIALS:
                key = "app_id" if "app id" in exc.msg.lower() else "app_secret"
                raise ConfigError(
                    f"{name} rejected the app credentials ({exc.code}: {exc.msg})", key=self.config_key(key)
                ) from None
            if exc.what == "bot.v3.info":
                raise ConfigError(
                    f"{name} did not name the app's bot ({exc}); enable the Bot feature of the app",
                    key=self.config_key("app_id"),
                ) from None
            raise PlatformUnavailable(f"the {name} Open Platform at {self.config.domain} refused: {exc}") from None
        except FeishuNetworkError as exc:
            raise PlatformUnavailable(f"cannot reach the {name} Open Platform at {self.config.domain}: {exc}") from None
        except ValueError as exc:  # lark-oapi could not parse the answer: not the Open Platform
            raise PlatformUnavailable(
                f"{self.config.domain} does not answer like the {name} Open Platform ({exc})"
            ) from None
        self.bot_open_id = str(bot["open_id"])
        self.bot_name = str(bot.get("app_name") or "") or None
        log.info("%s: connected as %s (%s)", name, self.bot_name or "the bot", self.bot_open_id)

    async def _connect(self) -> None:
        name = self.config.platform_name
        self.ws = LongConnection(
            self.config.app_id,
            self.config.app_secret.get_secret_value(),
            self.config.domain,
            self._on_ws_payload,
            waits=lambda body: _event_type(body) == CARD_ACTION,
        )
        loop, ended = asyncio.get_running_loop(), self._ws_ended
        self.ws.on_end = lambda: loop.call_soon_threadsafe(ended.set) if not loop.is_closed() else None
        self.ws.start()
        try:
            up = await self.ws.wait_connected(self.config.connect_timeout)
        except BaseException as exc:
            raise self._connection_error(exc) from None
        if up:
            log.info("%s: receiving over the long connection", name)
        else:
            log.warning("%s: the long connection is not up yet; lark-oapi keeps trying", name)

    def _connection_error(self, exc: BaseException) -> BaseException:
        """What the long connection's failure means for the operator (the SDK's errors are not ours)."""
        name = self.config.platform_name
        if isinstance(exc, ClientException):
            if exc.code in APP_CREDENTIALS:
                return ConfigError(f"{name} refused the long connection ({exc})", key=self.config_key("app_secret"))
            return PlatformUnavailable(
                f"{name} refused the long connection ({exc}); is 'receive events through a long connection' "
                "chosen in the app's Events & Callbacks settings?"
            )
        if isinstance(exc, (ServerException, OSError)):
            return PlatformUnavailable(f"{name}: the long connection failed ({exc})")
        return exc

    async def serve(self) -> None:
        """Block while receiving; raise when the long connection is lost for good (a rotated app secret:
        :class:`ConfigError` naming it), so the bot does not go on deaf."""
        if self.ws is None:
            await super().serve()  # callback mode: the HTTP server runs until stopped
            return
        await self._ws_ended.wait()
        ws = self.ws
        if ws is None or not self._accepting:
            return  # stopped
        name = self.config.platform_name
        error = ws.error
        if error is None:
            raise PlatformUnavailable(f"{name}: the long connection ended")
        raise self._connection_error(error) from error

    async def stop(self, drain_timeout: float = 10.0) -> None:
        self._accepting = False
        self.dispatcher.end_windows()
        self._ready.set()  # let anything still waiting for start() through to the drain
        if self.ws is not None:
            ws, self.ws = self.ws, None
            await asyncio.to_thread(ws.stop)
        if self.http is not None:
            http, self.http = self.http, None
            await http.stop()
        await self._drain(drain_timeout)  # the events being admitted and the turns they started
        self.api.close()

    async def _drain(self, timeout: float) -> None:
        """Let the messages in flight finish (``timeout`` seconds), then cancel what is left."""
        for _ in range(3):  # bodies the long connection handed over just before it stopped: let them start
            await asyncio.sleep(0)
        await drain_tasks(timeout, self._tasks, self.dispatcher.in_flight)

    def _track(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- receiving -------------------------------------------------------------------------
    def _on_ws_payload(self, body: dict[str, Any]) -> Any:
        """The long connection's handler (the SDK's thread): hand the body to the bot's loop, return at once."""
        loop = self._loop
        if loop is None or loop.is_closed() or not self._accepting:
            raise ShuttingDown("the bot is stopping")  # a 500 ack: Feishu pushes the event again
        future = asyncio.run_coroutine_threadsafe(self.on_body(body), loop)
        if _event_type(body) != CARD_ACTION:
            return None
        try:
            return future.result(timeout=CARD_ANSWER_BUDGET + 0.5)
        except concurrent.futures.TimeoutError:
            return None

    async def on_body(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """One event body (decrypted, verified). Returns a card action's answer; events run in the background."""
        await self._ready.wait()  # events that come in while start() finishes wait for it (in order)
        kind = _event_type(body)
        if kind == CARD_ACTION:
            task = self._track(asyncio.create_task(self._on_card_action(body)))
            try:
                return await asyncio.wait_for(asyncio.shield(task), CARD_ANSWER_BUDGET)
            except TimeoutError:
                log.info("Feishu: a button press is still being answered after %gs", CARD_ANSWER_BUDGET)
                return approvals.toast("info", "Working on it…")
        if kind == MESSAGE_EVENT:
            self._on_message(body)
        else:
            log.debug("Feishu: skipping a %s event", kind)
        return None

    def _on_message(self, body: dict[str, Any]) -> None:
        event = body.get("event")
        if self.bot_open_id is None or not isinstance(event, dict):
            return
        inbound = read_message(event, self.bot_open_id, self.route)
        if inbound is None:
            log.debug("Feishu: a message that is not for the bot")
            return
        ticket = self.dispatcher.reserve(inbound.key)  # its place in the conversation's line, before any await
        header = body.get("header") or {}
        self._track(asyncio.create_task(self._admit(inbound, str(header.get("event_id") or ""), ticket)))

    async def _admit(self, inbound: FeishuInbound, event_id: str, ticket: Any) -> None:
        try:
            if event_id and not await self.dispatcher.first_delivery(f"event:{event_id}"):
                log.info("Feishu: event %s was delivered again; it is handled once", event_id)
                ticket.release()
                return
            if not await self.dispatcher.first_delivery(f"message:{inbound.place.message_id}"):
                log.info("Feishu: message %s was delivered again; it is handled once", inbound.place.message_id)
                ticket.release()
                return
        except BaseException:
            ticket.release()
            raise
        self._track(self.dispatcher.submit(self._incoming(inbound), ticket))

    def _incoming(self, inbound: FeishuInbound) -> IncomingMessage:
        return IncomingMessage(
            key=inbound.key,
            user=UserRef(inbound.place.sender),
            text=inbound.text,
            reply=self.sink_for(inbound.target),
            files=[incoming(self.api, resource) for resource in inbound.files],
            mentioned=inbound.place.mentioned,
            message_id=inbound.place.message_id,
            mentions=inbound.mentions,
        )

    def sink_for(self, target: FeishuTarget) -> FeishuSink:
        return FeishuSink(self.api, target, self.sink_options, self.caps, self.pacer)

    def sink_at(self, address: Mapping[str, Any]) -> FeishuSink | None:
        """A reply another instance received, posted from here (while this instance is running)."""
        target = target_from(FeishuTarget, address)
        return self.sink_for(target) if target is not None and self._accepting and self._ready.is_set() else None

    # -- buttons -----------------------------------------------------------------------------
    async def _on_card_action(self, body: dict[str, Any]) -> dict[str, Any]:
        event = body.get("event") if isinstance(body.get("event"), dict) else {}
        assert isinstance(event, dict)
        action = event.get("action") if isinstance(event.get("action"), dict) else {}
        press = approvals.parse_press((action or {}).get("value"))
        operator = event.get("operator") if isinstance(event.get("operator"), dict) else {}
        presser = (operator or {}).get("open_id")
        if press is None or not isinstance(presser, str) or not presser:
            log.debug("Feishu: a card action that is not an approval button")
            return {}
        event_id = str((body.get("header") or {}).get("event_id") or "")
        if event_id and not await self.dispatcher.first_delivery(f"event:{event_id}"):
            log.info("Feishu: button press %s was delivered again; it is answered once", event_id)
            return {}
        try:
            request = await self.dispatcher.resolve_approval(
                press.request_id, press.decision, UserRef(presser), conversation=press.conversation or None
            )
        except ApprovalForbidden as exc:
            return approvals.toast("error", _sentence(str(exc)))
        except ApprovalNotFound as exc:
            return approvals.toast("warning", _sentence(str(exc)))
        # The reply streamer shows the decision on the prompt card (sink.show_approval patches it).
        return approvals.toast("success", request.decision.label if request.decision else "Answered")


def _event_type(body: dict[str, Any]) -> str | None:
    header = body.get("header")
    if isinstance(header, dict) and header.get("event_type"):
        return str(header["event_type"])
    event = body.get("event")
    if isinstance(event, dict) and event.get("type"):  # the old (v1) schema
        return str(event["type"])
    return str(body["type"]) if body.get("type") else None


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text
