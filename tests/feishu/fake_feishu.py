"""A fake Feishu/Lark Open Platform on 127.0.0.1 that the real lark-oapi 1.7.5 talks to.

Pointing lark-oapi at it
------------------------
* REST: ``lark.Client.builder().app_id(fake.app_id).app_secret(fake.app_secret)
  .domain(fake.url).timeout(5).build()`` (lark-oapi allows ``http://`` for loopback only).
  :func:`tests.feishu.sdk.lark_client` does exactly that.
* Long connection: ``lark.ws.Client(fake.app_id, fake.app_secret, event_handler=...,
  domain=fake.url)``, run in its own thread and event loop by
  :class:`tests.feishu.sdk.LarkWsThread` (the SDK grabs a module-level loop).
* HTTP callbacks: the bot serves them; :meth:`FakeFeishu.post_callback` sends signed
  (optionally encrypted) requests to it, :mod:`tests.feishu.callbacks` builds them.

Where things live: REST plumbing in :mod:`~tests.feishu.wire`, CardKit routes in
:mod:`~tests.feishu.cardkit`, the long connection in :mod:`~tests.feishu.long_connection`
(frames in :mod:`~tests.feishu.frames`), state in :mod:`~tests.feishu.model`, event bodies
in :mod:`~tests.feishu.events`, error codes in :mod:`~tests.feishu.errors`, SDK helpers in
:mod:`~tests.feishu.sdk`.

Every app id is unique per fake (``cli_…``): lark-oapi caches tenant tokens process-wide
by app id only (``TokenManager.cache``), so a fixed app id would carry a token issued by
an earlier fake into a later test (answered 99991663 there).

REST (``/open-apis/...``)
-------------------------
Answers are ``{"code": 0, "msg": "success", "data": {...}}``; errors
``{"code", "msg", "error": {"log_id"}}`` with HTTP 400 (see :mod:`tests.feishu.errors`).
Every route but the token and ws-endpoint ones demands ``Authorization: Bearer <tenant
token>`` (99991661 missing, 99991663 unknown). Route names (for :meth:`fail`,
:meth:`called`, :meth:`wait_for_call`) follow lark-oapi's call paths:

========================================  ====================================================
``auth.v3.tenant_access_token.internal``  ``POST /open-apis/auth/v3/tenant_access_token/internal``
``bot.v3.info``                           ``GET /open-apis/bot/v3/info`` (``bot`` at the top level)
``im.v1.message.create``                  ``POST /open-apis/im/v1/messages?receive_id_type=``
``im.v1.message.reply``                   ``POST /open-apis/im/v1/messages/{message_id}/reply``
``im.v1.message.patch``                   ``PATCH /open-apis/im/v1/messages/{message_id}`` (cards)
``im.v1.message.update``                  ``PUT /open-apis/im/v1/messages/{message_id}`` (text/post)
``im.v1.message.get`` / ``.delete``       ``GET`` / ``DELETE /open-apis/im/v1/messages/{message_id}``
``im.v1.message_reaction.create/delete``  ``/open-apis/im/v1/messages/{message_id}/reactions[/{id}]``
``im.v1.message_resource.get``            ``GET .../messages/{message_id}/resources/{file_key}?type=``
``im.v1.image.create`` / ``file.create``  ``POST /open-apis/im/v1/images`` / ``files`` (multipart)
``cardkit.v1.card.create``                ``POST /open-apis/cardkit/v1/cards``
``cardkit.v1.card.update``                ``PUT /open-apis/cardkit/v1/cards/{card_id}``
``cardkit.v1.card.settings``              ``PATCH /open-apis/cardkit/v1/cards/{card_id}/settings``
``cardkit.v1.card_element.content``       ``PUT .../cards/{card_id}/elements/{element_id}/content``
``callback.ws.endpoint``                  ``POST /callback/ws/endpoint`` (long-connection URL)
========================================  ====================================================

Validation that matters to a bot: text <= 150 KB, post / card <= 30 KB (230025); card
content must be a card or ``{"type":"card","data":{"card_id"}}`` (a bare ``{"card_id"}``
is 200621, an unknown card id 230099/11310); ``update`` only for the bot's text/post, at
most 20 times (230072); ``patch`` only for its cards; ``reply_in_thread`` opens a thread
(``thread_id`` on the parent and every later message in it). CardKit entities must be
JSON 2.0 with unique ``element_id`` s (300301); each card's ``sequence`` must strictly
increase across content, settings and update calls (300317); content updates need
``streaming_mode`` on (300309) and end with 200850 once :attr:`stream_lifetime` (600 s,
Feishu's) has passed since streaming was turned on; a card takes at most 10 calls per second
(99991400 beyond). Uploads: images <= 10 MB, files <= 30 MB.

Failure injection: ``fake.fail(name, Failure(400, code=230099))`` answers the next call of
``name`` with that code (its Feishu message when ``description`` is left default, e.g.
"card table number over limit" for 230099); ``Failure(429, code=99991400,
retry_after=2)`` (or status 400 for older APIs) adds ``x-ogw-ratelimit-limit`` /
``x-ogw-ratelimit-reset`` (whole seconds) headers, lower-case as Feishu sends them.
``extra`` may hold ``headers`` and ``data``.

Long connection
---------------
``callback.ws.endpoint`` returns a ``ws://`` URL with ``device_id``, ``service_id`` and a
one-time ``ticket`` and the ``ClientConfig`` (:attr:`client_config`: quick reconnects by
default; :data:`FEISHU_CLIENT_CONFIG` has Feishu's values). The WebSocket speaks
``pbbp2.Frame`` (:mod:`tests.feishu.frames`): pings get pongs carrying the config, events
go out as data frames, the SDK's response frames are read as acks. :meth:`push` sends an
event to ONE random open connection (Feishu's cluster mode) and re-pushes it every
:attr:`repush_after` seconds (Feishu: 3) until a code-200 ack, at most
:attr:`max_repushes` times. :meth:`drop_connection` closes (or aborts) a connection.

Scripting and state
-------------------
People and chats: :meth:`add_user`, :meth:`add_chat`, :meth:`p2p_chat`. Inbound traffic:
:meth:`user_message` (stores the message, returns it with its ``im.message.receive_v1``
body), :meth:`say` (the same, pushed), :meth:`card_action` / :meth:`press`,
:meth:`host_resource`. Read :attr:`messages` (chat id -> messages with revision
history), :meth:`message`, :meth:`bot_messages`, :meth:`thread`, :attr:`cards`,
:attr:`uploads`, :attr:`deliveries`, :attr:`acked_event_ids`, :attr:`connections`.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from tests.fakes.platform_server import Failure

from . import callbacks, events
from .cardkit import CardKitRoutes
from .errors import (
    APP_SECRET_INVALID,
    BOT_NOT_IN_CHAT,
    CARD_CONTENT_FAILED,
    CARD_PARSE_ERROR,
    CONTENT_TOO_LONG,
    EDIT_LIMIT,
    FIELD_VALIDATION,
    FILE_EMPTY,
    FILE_INVALID_PARAM,
    FILE_NOT_IN_MESSAGE,
    FILE_TOO_LARGE,
    INVALID_PARAM,
    INVALID_REQUEST,
    INVALID_TOKEN,
    MESSAGE_RECALLED,
    MISSING_TOKEN,
    NO_AVAILABILITY,
    RATE_LIMITED,
    FeishuError,
    message_for,
)
from .long_connection import FEISHU_CLIENT_CONFIG, QUICK_CLIENT_CONFIG, WS_PATH, LongConnection, WsConnection
from .model import (
    Attempt,
    CardEntity,
    Chat,
    Delivery,
    Message,
    Resource,
    Revision,
    Upload,
    User,
    hex_id,
    now_ms,
)
from .wire import (
    CARD_LIMIT,
    KB,
    TEXT_LIMIT,
    ApiRequest,
    FeishuCall,
    data_response,
    error_response,
    json_response,
    loads_object,
    log_id,
)

__all__ = ["FEISHU_CLIENT_CONFIG", "FakeFeishu", "Failure", "FeishuCall", "Inbound", "WsConnection"]

IMAGE_LIMIT = 10 * KB * KB
FILE_LIMIT = 30 * KB * KB
EDIT_CAP = 20
RECEIVE_ID_TYPES = {"open_id", "user_id", "union_id", "email", "chat_id"}
MSG_TYPES = {"text", "post", "image", "file", "audio", "media", "sticker", "interactive", "share_chat", "share_user"}
FILE_TYPES = {"opus", "mp4", "pdf", "doc", "xls", "ppt", "stream"}

# (HTTP method, path, route name, needs a tenant token)
ROUTES: list[tuple[str, str, str, bool]] = [
    ("POST", "/open-apis/auth/v3/tenant_access_token/internal", "auth.v3.tenant_access_token.internal", False),
    ("GET", "/open-apis/bot/v3/info", "bot.v3.info", True),
    ("POST", "/open-apis/im/v1/messages", "im.v1.message.create", True),
    ("GET", "/open-apis/im/v1/messages/{message_id}", "im.v1.message.get", True),
    ("PATCH", "/open-apis/im/v1/messages/{message_id}", "im.v1.message.patch", True),
    ("PUT", "/open-apis/im/v1/messages/{message_id}", "im.v1.message.update", True),
    ("DELETE", "/open-apis/im/v1/messages/{message_id}", "im.v1.message.delete", True),
    ("POST", "/open-apis/im/v1/messages/{message_id}/reply", "im.v1.message.reply", True),
    ("POST", "/open-apis/im/v1/messages/{message_id}/reactions", "im.v1.message_reaction.create", True),
    (
        "DELETE",
        "/open-apis/im/v1/messages/{message_id}/reactions/{reaction_id}",
        "im.v1.message_reaction.delete",
        True,
    ),
    ("GET", "/open-apis/im/v1/messages/{message_id}/resources/{file_key}", "im.v1.message_resource.get", True),
    ("POST", "/open-apis/im/v1/images", "im.v1.image.create", True),
    ("POST", "/open-apis/im/v1/files", "im.v1.file.create", True),
    ("POST", "/open-apis/cardkit/v1/cards", "cardkit.v1.card.create", True),
    ("PUT", "/open-apis/cardkit/v1/cards/{card_id}", "cardkit.v1.card.update", True),
    ("PATCH", "/open-apis/cardkit/v1/cards/{card_id}/settings", "cardkit.v1.card.settings", True),
    (
        "PUT",
        "/open-apis/cardkit/v1/cards/{card_id}/elements/{element_id}/content",
        "cardkit.v1.card_element.content",
        True,
    ),
    ("POST", "/callback/ws/endpoint", "callback.ws.endpoint", False),
]
_UPLOAD_FIELDS = {"image", "file"}


@dataclass
class Inbound:
    """A message a person sent: as stored in the fake, and the event body Feishu pushes for it."""

    message: Message
    event: dict[str, Any]

    @property
    def event_id(self) -> str:
        return str(self.event["header"]["event_id"])


class FakeFeishu(LongConnection, CardKitRoutes):
    """The Open Platform's REST API, long connection and callback sender (see the module docstring)."""

    def __init__(
        self,
        *,
        app_id: str | None = None,
        app_secret: str | None = None,
        app_name: str = "ccbridge",
        verification_token: str | None = None,
        encrypt_key: str | None = None,
        repush_after: float = 3.0,
        max_repushes: int = 3,
        stream_lifetime: float = 600.0,
        strict_chats: bool = True,
        seed: int | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.app_id = app_id or hex_id("cli_", 16)
        self.app_secret = app_secret or secrets.token_urlsafe(24)
        self.app_name = app_name
        self.tenant_key = secrets.token_hex(8)
        self.verification_token = verification_token or secrets.token_urlsafe(24)
        self.encrypt_key = encrypt_key or secrets.token_urlsafe(24)
        self.bot = User(app_name, user_id="")
        # Knobs a test may turn.
        self.repush_after = repush_after  # seconds without a code-200 ack before a re-push
        self.max_repushes = max_repushes
        self.stream_lifetime = stream_lifetime  # seconds a card stays in streaming mode
        self.strict_chats = strict_chats  # sending to an unknown chat is 230002
        self.client_config: dict[str, Any] = dict(QUICK_CLIENT_CONFIG)
        self.token_expire = 7200
        self.bot_info_under_data = False  # answer bot.v3.info with {"data": {"bot": ...}}
        self.connect_timeout = 10.0  # how long a push waits for a long connection
        # State.
        self.users: dict[str, User] = {}  # open_id -> user
        self.chats: dict[str, Chat] = {}
        self.messages: dict[str, list[Message]] = {}  # chat id -> messages, oldest first
        self.cards: dict[str, CardEntity] = {}
        self.uploads: dict[str, Upload] = {}
        self.resources: dict[tuple[str, str], Resource] = {}  # (message_id, key) -> resource
        self.deliveries: list[Delivery] = []
        self.connections: list[WsConnection] = []
        self.tenant_token = "t-" + secrets.token_hex(20)
        self._valid_tokens = {self.tenant_token}
        self._by_id: dict[str, Message] = {}
        self._by_uuid: dict[str, Message] = {}
        self._p2p: dict[str, str] = {}  # open_id -> chat id
        self._tickets: dict[str, tuple[str, int]] = {}
        self._attempts: dict[str, tuple[Delivery, Attempt]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def app(self) -> events.App:
        return events.App(self.app_id, self.tenant_key, self.verification_token)

    async def start(self) -> FakeFeishu:
        self._loop = asyncio.get_running_loop()
        await super().start()
        return self

    async def on_stop(self) -> None:
        await self.close_connections()

    def _poke(self) -> None:
        """Wake waiters; safe from any thread (SDK handlers run in the SDK's own thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(self.changed())
        else:
            loop.call_soon_threadsafe(lambda: loop.create_task(self.changed()))

    def notify(self) -> None:
        """Wake :meth:`wait_until` waiters from any thread (e.g. an SDK event handler)."""
        self._poke()

    def revoke_tokens(self) -> str:
        """Invalidate every tenant token issued so far (as on expiry); returns the next one."""
        self.tenant_token = "t-" + secrets.token_hex(20)
        self._valid_tokens = {self.tenant_token}
        return self.tenant_token

    # -- people and chats --------------------------------------------------------------
    def add_user(self, name: str, *, email: str | None = None) -> User:
        user = User(name, email=email or f"{name.lower().replace(' ', '.')}@example.com")
        self.users[user.open_id] = user
        return user

    def add_chat(self, name: str = "Team", *, chat_id: str | None = None) -> Chat:
        """A group chat the bot is a member of."""
        chat = Chat(chat_id or hex_id("oc_"), "group", name)
        self.chats[chat.chat_id] = chat
        self.messages.setdefault(chat.chat_id, [])
        return chat

    def p2p_chat(self, user: User) -> Chat:
        """The bot's one-to-one chat with ``user`` (made on first use, as Feishu does)."""
        self.users.setdefault(user.open_id, user)
        chat_id = self._p2p.get(user.open_id)
        if chat_id is None:
            chat_id = self._p2p[user.open_id] = hex_id("oc_")
            self.chats[chat_id] = Chat(chat_id, "p2p", user.name, peer=user)
            self.messages.setdefault(chat_id, [])
        return self.chats[chat_id]

    # -- scripting: what people do ----------------------------------------------------
    def user_message(
        self,
        sender: User,
        *,
        chat: Chat | None = None,
        text: str | None = None,
        post: list[list[dict[str, Any]]] | None = None,
        title: str = "",
        image: bytes | None = None,
        file: tuple[str, bytes] | None = None,
        mentions: Sequence[User] = (),
        mention_all: bool = False,
        reply_to: Message | None = None,
        in_thread: bool = False,
        event_id: str | None = None,
    ) -> Inbound:
        """A message ``sender`` posts (exactly one of text / post / image / file).

        ``chat`` defaults to ``reply_to``'s chat, else the sender's p2p chat with the bot.
        ``mentions`` become ``@_user_N`` placeholders (mention :attr:`bot` to address the
        bot in a group); ``reply_to`` + ``in_thread`` reply in (or open) a thread.
        """
        if sum(x is not None for x in (text, post, image, file)) != 1:
            raise ValueError("give exactly one of text, post, image, file")
        self.users.setdefault(sender.open_id, sender)
        if chat is None:
            chat = self.chats[reply_to.chat_id] if reply_to is not None else self.p2p_chat(sender)
        self.chats.setdefault(chat.chat_id, chat)
        tagged = [events.mention(user, i + 1, self.tenant_key) for i, user in enumerate(mentions)]
        key: str | None = None
        if text is not None:
            msg_type, content = "text", events.text_content(text, tagged, mention_all)
        elif post is not None:
            msg_type, content = "post", events.post_content(title, post, tagged)
        elif image is not None:
            key = hex_id("img_v3_", 24)
            msg_type, content = "image", json.dumps({"image_key": key})
        else:
            assert file is not None
            key = hex_id("file_v3_", 24)
            msg_type, content = "file", json.dumps({"file_key": key, "file_name": file[0]}, ensure_ascii=False)
        message = Message(hex_id("om_"), chat.chat_id, msg_type, content, sender=sender, mentions=tagged)
        if reply_to is not None:
            message.root_id, message.parent_id, message.thread_id = self._threading(reply_to, in_thread)
        message.history.append(Revision("create", msg_type, content))
        self._store(message)
        if image is not None and key:
            self.host_resource(message.message_id, key, image, kind="image", content_type=_image_type(image))
        elif file is not None and key:
            self.host_resource(message.message_id, key, file[1], kind="file", file_name=file[0])
        return Inbound(message, events.message_receive(self.app, message, chat, sender, event_id=event_id))

    async def say(self, sender: User, text: str | None = None, **kwargs: Any) -> Delivery:
        """:meth:`user_message` pushed over the long connection; returns the delivery."""
        return await self.push(self.user_message(sender, text=text, **kwargs).event)

    def card_action(self, operator: User, message: Message, value: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """The ``card.action.trigger`` body for ``operator`` pressing a button on ``message``."""
        return events.card_action(self.app, operator, message, value, **kwargs)

    async def press(self, operator: User, message: Message, value: dict[str, Any], **kwargs: Any) -> Delivery:
        """:meth:`card_action` pushed over the long connection (its answer lands in ``response``)."""
        return await self.push(self.card_action(operator, message, value, **kwargs))

    def url_verification(self, challenge: str | None = None) -> dict[str, Any]:
        return events.url_verification(self.app, challenge)

    def host_resource(
        self,
        message_id: str,
        file_key: str,
        data: bytes,
        *,
        kind: str = "file",
        file_name: str | None = None,
        content_type: str | None = None,
    ) -> None:
        """Serve ``data`` at ``GET .../messages/{message_id}/resources/{file_key}?type={kind}``."""
        ctype = content_type or (_image_type(data) if kind == "image" else "application/octet-stream")
        self.resources[(message_id, file_key)] = Resource(data, kind, file_name, ctype)

    # -- views -------------------------------------------------------------------------
    def message(self, message_id: str) -> Message:
        return self._by_id[message_id]

    def bot_messages(self, chat: Chat | str | None = None) -> list[Message]:
        chat_id = chat.chat_id if isinstance(chat, Chat) else chat
        everything = (
            [m for ms in self.messages.values() for m in ms] if chat_id is None else self.messages.get(chat_id, [])
        )
        return [m for m in everything if m.from_bot]

    def thread(self, thread_id: str) -> list[Message]:
        """Every message in a thread (its root first), oldest first."""
        return sorted((m for m in self._by_id.values() if m.thread_id == thread_id), key=lambda m: m.create_time)

    def card(self, card_id: str) -> CardEntity:
        return self.cards[card_id]

    @property
    def images(self) -> list[Upload]:
        return [u for u in self.uploads.values() if u.kind == "image"]

    @property
    def files(self) -> list[Upload]:
        return [u for u in self.uploads.values() if u.kind == "file"]

    # -- HTTP callbacks (the fake sends, the bot serves) ----------------------------------
    async def post_callback(
        self,
        url: str,
        event: dict[str, Any],
        *,
        encrypt_key: str | None = None,
        verification_token: str | None = None,
        forge: bool = False,
        stale: bool = False,
        lowercase_headers: bool = False,
    ) -> callbacks.CallbackResult:
        """POST ``event`` to the bot's callback URL as Feishu does (see :func:`callbacks.build`).

        ``encrypt_key`` (e.g. ``fake.encrypt_key``) encrypts and signs; without it the
        request is plain and only the body's verification token authenticates it.
        """
        request = callbacks.build(
            event,
            encrypt_key=encrypt_key,
            verification_token=verification_token,
            forge=forge,
            stale=stale,
            lowercase_headers=lowercase_headers,
        )
        self.record("callback.post", {"url": url, "encrypted": bool(encrypt_key), "forge": forge, "stale": stale})
        return await callbacks.post(url, request)

    # -- REST plumbing -----------------------------------------------------------------
    def setup_routes(self, app: web.Application) -> None:
        for method, path, name, auth in ROUTES:
            app.router.add_route(method, path, self._endpoint(name, auth))
        app.router.add_get(WS_PATH, self._ws)
        app.router.add_route("*", "/open-apis/{tail:.*}", self._unknown)

    def _endpoint(self, name: str, auth: bool) -> Callable[[web.Request], Any]:
        async def serve(http: web.Request) -> web.StreamResponse:
            try:
                req = await self._parse(name, http)
            except FeishuError as exc:
                return error_response(exc)
            call = FeishuCall(name, req.params())
            self.calls.append(call)
            response, call.code = await self._answer(req, http, auth)
            call.status = response.status
            self._poke()
            return response

        return serve

    async def _unknown(self, http: web.Request) -> web.Response:
        self.record("unknown", {"method": http.method, "path": http.path})
        return web.Response(status=404, text="404 page not found")

    async def _parse(self, name: str, http: web.Request) -> ApiRequest:
        body: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        if http.content_type.startswith("multipart/"):
            reader = await http.multipart()
            async for part in reader:
                if not isinstance(part, aiohttp.BodyPartReader) or not part.name:
                    continue
                if part.filename is not None or part.name in _UPLOAD_FIELDS:
                    files[part.name] = bytes(await part.read())
                else:
                    body[part.name] = await part.text()
        elif http.can_read_body:
            raw = await http.read()
            if raw:
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    raise FeishuError(FIELD_VALIDATION, "request body is not valid JSON") from None
                body = parsed if isinstance(parsed, dict) else {"body": parsed}
        return ApiRequest(name, dict(http.match_info), dict(http.query), body, files)

    async def _answer(self, req: ApiRequest, http: web.Request, auth: bool) -> tuple[web.StreamResponse, int | None]:
        if auth:
            header = http.headers.get("Authorization", "")
            token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
            if not token:
                return error_response(FeishuError(MISSING_TOKEN)), MISSING_TOKEN
            if token not in self._valid_tokens:
                return error_response(FeishuError(INVALID_TOKEN)), INVALID_TOKEN
        failure = self.take_failure(req.name, req.params())
        if failure is not None:
            return self._failure_response(failure)
        try:
            result = await self.dispatch(req.name, req)
        except FeishuError as exc:
            return error_response(exc), exc.code
        if isinstance(result, web.StreamResponse):
            return result, 0
        return data_response(result), 0

    def _failure_response(self, failure: Failure) -> tuple[web.Response, int]:
        code = (
            int(failure.code)
            if failure.code is not None
            else (RATE_LIMITED if failure.status == 429 else INVALID_REQUEST)
        )
        msg = message_for(code) if failure.description == "injected failure" else failure.description
        headers = {str(k): str(v) for k, v in failure.extra.get("headers", {}).items()}
        if code == RATE_LIMITED or failure.status == 429:
            reset = 1.0 if failure.retry_after is None else failure.retry_after
            headers.setdefault("x-ogw-ratelimit-limit", str(failure.extra.get("limit", 50)))
            headers.setdefault("x-ogw-ratelimit-reset", str(max(0, math.ceil(reset))))
        body: dict[str, Any] = {"code": code, "msg": msg, "error": {"log_id": log_id()}}
        if "data" in failure.extra:
            body["data"] = failure.extra["data"]
        return json_response(body, status=failure.status, headers=headers), code

    # -- auth and bot ------------------------------------------------------------------
    def m_auth_v3_tenant_access_token_internal(self, req: ApiRequest) -> web.Response:
        app_id, secret = req.body.get("app_id"), req.body.get("app_secret")
        if not isinstance(app_id, str) or not app_id or not isinstance(secret, str) or not secret:
            raise FeishuError(INVALID_PARAM, status=200)
        if app_id != self.app_id:
            raise FeishuError(APP_SECRET_INVALID, "app id not exists", status=200)
        if secret != self.app_secret:
            raise FeishuError(APP_SECRET_INVALID, status=200)
        return json_response(
            {"code": 0, "msg": "ok", "tenant_access_token": self.tenant_token, "expire": self.token_expire}
        )

    def m_bot_v3_info(self, req: ApiRequest) -> web.Response:
        bot = {
            "activate_status": 2,
            "app_name": self.app_name,
            "avatar_url": "https://s1-imfile.feishucdn.com/static-resource/v1/fake-avatar",
            "ip_white_list": [],
            "open_id": self.bot.open_id,
        }
        if self.bot_info_under_data:  # how some gateways answer it
            return json_response({"code": 0, "msg": "ok", "data": {"bot": bot}})
        return json_response({"code": 0, "msg": "ok", "bot": bot})

    # -- messages ----------------------------------------------------------------------
    def m_im_v1_message_create(self, req: ApiRequest) -> dict[str, Any]:
        id_type = req.query.get("receive_id_type")
        receive_id = req.body.get("receive_id")
        if id_type not in RECEIVE_ID_TYPES or not isinstance(receive_id, str) or not receive_id:
            raise FeishuError(FIELD_VALIDATION, "field validation failed: receive_id_type / receive_id")
        chat = self._resolve_chat(id_type, receive_id)
        repeat = self._repeat(req.body.get("uuid"))
        if repeat is not None:
            return repeat
        message = self._bot_message(chat.chat_id, req.body)
        return message.payload(self.app_id, self.tenant_key)

    def m_im_v1_message_reply(self, req: ApiRequest) -> dict[str, Any]:
        parent = self._live_message(req.path["message_id"])
        repeat = self._repeat(req.body.get("uuid"))
        if repeat is not None:
            return repeat
        threading = self._threading(parent, bool(req.body.get("reply_in_thread")))
        message = self._bot_message(parent.chat_id, req.body, threading)
        return message.payload(self.app_id, self.tenant_key)

    def m_im_v1_message_get(self, req: ApiRequest) -> dict[str, Any]:
        message = self._live_message(req.path["message_id"])
        return {"items": [message.payload(self.app_id, self.tenant_key)]}

    def m_im_v1_message_patch(self, req: ApiRequest) -> dict[str, Any]:
        message = self._live_message(req.path["message_id"])
        if not message.from_bot or message.msg_type != "interactive":
            raise FeishuError(INVALID_REQUEST, "only the bot's own card (interactive) messages can be patched")
        content = req.body.get("content")
        entity = self._check_content("interactive", content)
        self._revise(message, "patch", "interactive", str(content), entity)
        return {}

    def m_im_v1_message_update(self, req: ApiRequest) -> dict[str, Any]:
        message = self._live_message(req.path["message_id"])
        msg_type, content = req.body.get("msg_type"), req.body.get("content")
        if not message.from_bot or message.msg_type not in ("text", "post") or msg_type not in ("text", "post"):
            raise FeishuError(INVALID_REQUEST, "only the bot's own text and post messages can be updated")
        if message.edits >= EDIT_CAP:
            raise FeishuError(EDIT_LIMIT)
        self._check_content(str(msg_type), content)
        self._revise(message, "update", str(msg_type), str(content), None)
        message.updated = True
        return message.payload(self.app_id, self.tenant_key)

    def m_im_v1_message_delete(self, req: ApiRequest) -> dict[str, Any]:
        message = self._live_message(req.path["message_id"])
        message.deleted = True
        return {}

    def m_im_v1_message_reaction_create(self, req: ApiRequest) -> dict[str, Any]:
        message = self._live_message(req.path["message_id"])
        emoji = (req.body.get("reaction_type") or {}).get("emoji_type")
        if not isinstance(emoji, str) or not emoji:
            raise FeishuError(FIELD_VALIDATION, "field validation failed: reaction_type.emoji_type")
        reaction_id = secrets.token_urlsafe(24)
        message.reactions[reaction_id] = emoji
        return self._reaction(reaction_id, emoji)

    def m_im_v1_message_reaction_delete(self, req: ApiRequest) -> dict[str, Any]:
        message = self._live_message(req.path["message_id"])
        emoji = message.reactions.pop(req.path["reaction_id"], None)
        if emoji is None:
            raise FeishuError(INVALID_REQUEST, "reaction not found")
        return self._reaction(req.path["reaction_id"], emoji)

    def _reaction(self, reaction_id: str, emoji: str) -> dict[str, Any]:
        return {
            "reaction_id": reaction_id,
            "operator": {"operator_id": self.app_id, "operator_type": "app"},
            "action_time": str(now_ms()),
            "reaction_type": {"emoji_type": emoji},
        }

    def _resolve_chat(self, id_type: str, receive_id: str) -> Chat:
        if id_type == "chat_id":
            chat = self.chats.get(receive_id)
            if chat is None:
                if self.strict_chats:
                    raise FeishuError(BOT_NOT_IN_CHAT)
                chat = self.add_chat(chat_id=receive_id)
            return chat
        for user in self.users.values():
            if receive_id == {"open_id": user.open_id, "user_id": user.user_id, "union_id": user.union_id}.get(
                id_type, user.email
            ):
                return self.p2p_chat(user)
        raise FeishuError(NO_AVAILABILITY)

    def _repeat(self, uuid: Any) -> dict[str, Any] | None:
        """The answer to a send repeating an earlier ``uuid`` (Feishu dedupes for an hour)."""
        if isinstance(uuid, str) and uuid in self._by_uuid:
            return self._by_uuid[uuid].payload(self.app_id, self.tenant_key)
        return None

    def _live_message(self, message_id: str) -> Message:
        message = self._by_id.get(message_id)
        if message is None:
            raise FeishuError(INVALID_REQUEST, f"invalid message_id: {message_id}")
        if message.deleted:
            raise FeishuError(MESSAGE_RECALLED)
        return message

    def _threading(self, parent: Message, in_thread: bool) -> tuple[str, str, str | None]:
        """(root_id, parent_id, thread_id) of a reply to ``parent``.

        A reply to a message in a thread stays in it; ``in_thread`` on any other message
        opens a thread rooted at it (the parent then carries the ``thread_id`` too);
        otherwise it is a quote reply in the main chat (no thread).
        """
        if parent.thread_id:
            return parent.root_id or parent.message_id, parent.message_id, parent.thread_id
        if in_thread:
            parent.thread_id = hex_id("omt_", 16)
            return parent.message_id, parent.message_id, parent.thread_id
        return parent.root_id or parent.message_id, parent.message_id, None

    def _bot_message(
        self, chat_id: str, body: dict[str, Any], threading: tuple[str, str, str | None] | None = None
    ) -> Message:
        msg_type, content = body.get("msg_type"), body.get("content")
        if msg_type not in MSG_TYPES:
            raise FeishuError(INVALID_REQUEST, f"invalid msg_type: {msg_type!r}")
        entity = self._check_content(str(msg_type), content)
        uuid = body.get("uuid") if isinstance(body.get("uuid"), str) else None
        message = Message(hex_id("om_"), chat_id, str(msg_type), str(content), uuid=uuid, card=entity)
        if threading is not None:
            message.root_id, message.parent_id, message.thread_id = threading
        message.history.append(Revision("create", message.msg_type, message.content))
        if entity is not None:
            entity.message_ids.append(message.message_id)
        self._store(message)
        if uuid:
            self._by_uuid[uuid] = message
        if message.msg_type in ("image", "file"):  # the bot can download what it sent
            key = message.body.get("image_key") or message.body.get("file_key")
            upload = self.uploads[key]
            self.resources[(message.message_id, key)] = Resource(
                upload.data,
                upload.kind,
                upload.file_name,
                _image_type(upload.data) if upload.kind == "image" else "application/octet-stream",
            )
        return message

    def _store(self, message: Message) -> None:
        self.messages.setdefault(message.chat_id, []).append(message)
        self._by_id[message.message_id] = message

    def _revise(self, message: Message, op: str, msg_type: str, content: str, entity: CardEntity | None) -> None:
        message.msg_type, message.content, message.card = msg_type, content, entity
        message.update_time = now_ms()
        message.history.append(Revision(op, msg_type, content))
        if entity is not None and message.message_id not in entity.message_ids:
            entity.message_ids.append(message.message_id)

    def _check_content(self, msg_type: str, content: Any) -> CardEntity | None:
        """Validate ``content`` for ``msg_type``; returns the card entity it shows, if any."""
        body = loads_object(content, INVALID_REQUEST, "content")
        size = len(str(content).encode())
        if size > (TEXT_LIMIT if msg_type == "text" else CARD_LIMIT):
            raise FeishuError(CONTENT_TOO_LONG)
        if msg_type == "text":
            if not isinstance(body.get("text"), str) or not body["text"]:
                raise FeishuError(INVALID_REQUEST, "text content is empty")
        elif msg_type == "post":
            locales = body.get("post", body)
            if not any(isinstance(v, dict) and isinstance(v.get("content"), list) for v in locales.values()):
                raise FeishuError(
                    INVALID_REQUEST, 'post content must be keyed by locale: {"zh_cn": {"title", "content"}}'
                )
        elif msg_type in ("image", "file"):
            key = body.get(f"{msg_type}_key")
            if key not in self.uploads or self.uploads[key].kind != msg_type:
                raise FeishuError(INVALID_REQUEST, f"unknown {msg_type}_key: {key!r}")
        elif msg_type == "interactive":
            return self._check_card_content(body)
        return None

    def _check_card_content(self, body: dict[str, Any]) -> CardEntity | None:
        kind = body.get("type")
        if kind == "card":
            card_ref = (body.get("data") or {}).get("card_id")
            entity = self.cards.get(str(card_ref))
            if entity is None:
                raise FeishuError(
                    CARD_CONTENT_FAILED,
                    "Failed to create card content, ext=ErrCode: 11310; ErrMsg: cardid is invalid; ",
                )
            return entity
        if kind == "template":
            if not (body.get("data") or {}).get("template_id"):
                raise FeishuError(CARD_PARSE_ERROR)
            return None
        if "card_id" in body or not ({"elements", "header", "body", "i18n_elements"} & body.keys()):
            raise FeishuError(CARD_PARSE_ERROR)
        if body.get("schema") == "2.0" and not isinstance((body.get("body") or {}).get("elements"), list):
            raise FeishuError(CARD_PARSE_ERROR)
        return None

    # -- files -------------------------------------------------------------------------
    def m_im_v1_message_resource_get(self, req: ApiRequest) -> web.Response:
        kind = req.query.get("type")
        if kind not in ("image", "file"):
            raise FeishuError(FILE_INVALID_PARAM, "type must be image or file")
        resource = self.resources.get((req.path["message_id"], req.path["file_key"]))
        if resource is None or resource.kind != kind:
            raise FeishuError(FILE_NOT_IN_MESSAGE)
        headers = {"X-Tt-Logid": log_id()}
        if resource.file_name:
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(resource.file_name)}"
        return web.Response(body=resource.data, content_type=resource.content_type, headers=headers)

    def m_im_v1_image_create(self, req: ApiRequest) -> dict[str, Any]:
        image_type = req.body.get("image_type")
        if image_type not in ("message", "avatar") or "image" not in req.files:
            raise FeishuError(FILE_INVALID_PARAM, "image_type (message / avatar) and image are required")
        data = self._upload_size(req.files["image"], IMAGE_LIMIT)
        upload = Upload(hex_id("img_v3_", 24), "image", data, file_type=str(image_type))
        self.uploads[upload.key] = upload
        return {"image_key": upload.key}

    def m_im_v1_file_create(self, req: ApiRequest) -> dict[str, Any]:
        file_type, file_name = req.body.get("file_type"), req.body.get("file_name")
        if file_type not in FILE_TYPES or not file_name or "file" not in req.files:
            raise FeishuError(FILE_INVALID_PARAM, "file_type, file_name and file are required")
        data = self._upload_size(req.files["file"], FILE_LIMIT)
        duration = req.body.get("duration")
        upload = Upload(
            hex_id("file_v3_", 24),
            "file",
            data,
            file_name=str(file_name),
            file_type=str(file_type),
            duration=int(duration) if duration else None,
        )
        self.uploads[upload.key] = upload
        return {"file_key": upload.key}

    @staticmethod
    def _upload_size(data: bytes, limit: int) -> bytes:
        if not data:
            raise FeishuError(FILE_EMPTY)
        if len(data) > limit:
            raise FeishuError(FILE_TOO_LARGE)
        return data


def _image_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "application/octet-stream"
