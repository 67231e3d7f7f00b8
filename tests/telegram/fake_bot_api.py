"""A fake Telegram Bot API server on 127.0.0.1, speaking the real wire format.

The real python-telegram-bot client is pointed at it with
``ApplicationBuilder().base_url(fake.base_url).base_file_url(fake.base_file_url)``.
Requests arrive as ``POST /bot<token>/<method>`` with form or multipart bodies
(nested values JSON-encoded, as PTB sends them); answers are
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": ..., "description": ...}``.
Files are served from ``GET /file/bot<token>/<file_path>``.

It keeps what a chat would show (messages, their edits, drafts, documents,
callback answers), validates what the real API validates that matters here
(4,096 UTF-16 units after entity parsing, entity bounds, empty texts,
"message is not modified"), and lets tests inject failures
(:meth:`FakeBotAPI.fail`, optionally only for calls matching ``when``),
unsupported methods (``unsupported``) and slow downloads (:meth:`FakeBotAPI.hold`).
With ``flood_control`` on, a 429 opens a window on its chat like Telegram's flood
wait: messages sent to that chat before ``retry_after`` has passed are answered
429 again and recorded in ``early_calls``.

Tests produce updates with :meth:`FakeBotAPI.say`, :meth:`FakeBotAPI.press`
and :meth:`FakeBotAPI.push`; PTB receives them through ``getUpdates`` (long
polling honours ``offset`` and ``timeout``). :meth:`FakeBotAPI.redeliver` hands
an old update out once more, before anything newer and whatever ``offset`` says
(not to a poll whose client has gone away).

It is a :class:`~tests.fakes.platform_server.PlatformServer`: the base runs the
server, keeps the call log (``calls``; ``calls_of`` and ``wait_for`` are this fake's
names for the base's ``called`` and ``wait_until``), the failure queues
(``fail`` wraps the base's with Telegram's arguments, or takes a
:class:`~tests.fakes.platform_server.Failure`) and dispatches each method to its
``m_<method>`` handler (none: 404 Not Found).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.platform_server import Call, Failure, PlatformServer, UnknownMethod

TOKEN = "123456:TEST-token_for-the-fake"
BOT_ID = 999
BOT_USERNAME = "cc_test_bot"

# Methods that put something in a chat: what Telegram's flood wait holds back.
_MESSAGE_METHODS = {"sendMessage", "editMessageText", "sendMessageDraft", "sendDocument"}

# Form fields PTB sends JSON-encoded (every other field is a plain string).
_JSON_FIELDS = {
    "chat_id",
    "message_id",
    "draft_id",
    "message_thread_id",
    "entities",
    "caption_entities",
    "reply_markup",
    "reply_parameters",
    "offset",
    "limit",
    "timeout",
    "allowed_updates",
    "commands",
    "show_alert",
    "scope",
    "disable_notification",
    "max_connections",
    "drop_pending_updates",
    "cache_time",
    "protect_content",
    "link_preview_options",
}


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


class ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: float | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


@dataclass
class ChatMessage:
    """A message in a chat, as a client would see it (its latest version)."""

    chat_id: int
    message_id: int
    text: str
    entities: list[dict[str, Any]] = field(default_factory=list)
    reply_markup: dict[str, Any] | None = None
    thread_id: int | None = None
    reply_to: int | None = None
    from_bot: bool = True
    history: list[str] = field(default_factory=list)  # every text it showed, in order
    document: dict[str, Any] | None = None
    caption: str | None = None

    def buttons(self) -> list[dict[str, Any]]:
        if not self.reply_markup:
            return []
        return [b for row in self.reply_markup.get("inline_keyboard", []) for b in row]


@dataclass
class Draft:
    chat_id: int
    draft_id: int
    text: str
    entities: list[dict[str, Any]]
    thread_id: int | None = None


@dataclass
class Document:
    chat_id: int
    filename: str
    data: bytes
    caption: str | None
    thread_id: int | None = None


class BotRequest(dict[str, Any]):
    """A method call's parameters (what handlers read), with its uploaded files and HTTP request."""

    def __init__(
        self, params: dict[str, Any], uploads: dict[str, tuple[str, bytes]], http: web.Request | None = None
    ) -> None:
        super().__init__(params)
        self.uploads = uploads
        self.http = http


def _api_error(failure: Failure) -> ApiError:
    """How an injected failure looks on the wire (a 429 retries after 1 s unless told)."""
    retry_after = failure.retry_after
    if failure.status == 429 and retry_after is None:
        retry_after = 1
    description = failure.description
    if description in ("", "injected failure"):
        too_many = f"Too Many Requests: retry after {retry_after}"
        description = too_many if failure.status == 429 else "Bad Request: injected failure"
    return ApiError(failure.status, description, retry_after)


def user(uid: int, first_name: str = "User", username: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": uid, "is_bot": False, "first_name": first_name}
    if username:
        out["username"] = username
    return out


def private_chat(u: dict[str, Any]) -> dict[str, Any]:
    return {"id": u["id"], "type": "private", "first_name": u["first_name"]}


def group_chat(chat_id: int, title: str = "Team", *, forum: bool = False) -> dict[str, Any]:
    chat: dict[str, Any] = {"id": chat_id, "type": "supergroup", "title": title}
    if forum:
        chat["is_forum"] = True
    return chat


class FakeBotAPI(PlatformServer):
    """The Bot API of one bot (see the module docstring)."""

    def __init__(
        self,
        token: str = TOKEN,
        *,
        bot_id: int = BOT_ID,
        bot_username: str = BOT_USERNAME,
        unsupported: set[str] | None = None,
        flood_control: bool = False,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.token = token
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.unsupported: set[str] = set(unsupported or ())  # methods answered with 404 Not Found
        self.flood_control = flood_control  # enforce retry_after per chat (see the module doc)
        self.messages: dict[int, list[ChatMessage]] = {}
        self.drafts: list[Draft] = []
        self.documents: list[Document] = []
        self.chat_actions: list[tuple[int, str]] = []
        self.callback_answers: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] | None = None
        self.webhook: dict[str, Any] | None = None
        self.files: dict[str, tuple[str | None, bytes]] = {}  # file_id -> (file_path, data)
        self.early_calls: list[Call] = []  # calls into a chat's flood wait (flood_control)
        self._flood_until: dict[int, float] = {}
        self._held: dict[str, asyncio.Event] = {}
        self._updates: list[dict[str, Any]] = []
        self._replays: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1000)
        self._message_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)

    # -- server ----------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot"

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)

    async def on_stop(self) -> None:
        for held in self._held.values():  # held downloads end with the server
            held.set()

    # -- scripting -------------------------------------------------------------
    def fail(  # type: ignore[override]
        self,
        method: str,
        code: int | Failure = 429,
        description: str | None = None,
        *,
        retry_after: int | None = None,
        times: int = 1,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (matching ``when``) with an error (429 -> RetryAfter).

        Telegram's arguments over the base's :meth:`PlatformServer.fail` (``code`` is the HTTP status and
        ``error_code``; a 429 retries after 1 s unless told); a :class:`Failure` is passed on as it is."""
        failure = code if isinstance(code, Failure) else Failure(code, code, description or "", retry_after, when)
        super().fail(method, failure, times=times)

    def add_file(self, data: bytes, file_path: str | None) -> str:
        """A file users can send; ``file_path`` None: getFile answers without one."""
        file_id = f"file-{next(self._file_ids)}"
        self.files[file_id] = (file_path, data)
        return file_id

    def hold(self, file_path: str) -> asyncio.Event:
        """Downloads of ``file_path`` wait until the returned event is set."""
        return self._held.setdefault(file_path, asyncio.Event())

    def downloads_of(self, file_path: str) -> int:
        return sum(1 for c in self.called("download") if c.params.get("path") == file_path)

    def push(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates (an ``update_id`` is assigned when missing)."""
        update.setdefault("update_id", next(self._update_ids))
        self._updates.append(update)
        self._poke()
        return update

    def new_message(
        self,
        chat: dict[str, Any],
        sender: dict[str, Any],
        text: str | None = None,
        *,
        entities: list[dict[str, Any]] | None = None,
        thread_id: int | None = None,
        reply_to: ChatMessage | dict[str, Any] | None = None,
        caption: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A user's message as the Bot API delivers it (not queued); commands and @bot get their entities."""
        message_id = next(self._message_ids)
        msg: dict[str, Any] = {"message_id": message_id, "date": int(time.time()), "chat": chat, "from": sender}
        if text is not None:
            msg["text"] = text
            if ents := self._entities(text, entities):
                msg["entities"] = ents
        if caption is not None:
            msg["caption"] = caption
            if ents := self._entities(caption, entities):
                msg["caption_entities"] = ents
        if thread_id is not None:
            msg["message_thread_id"] = thread_id
            msg["is_topic_message"] = True
        if isinstance(reply_to, ChatMessage):
            msg["reply_to_message"] = self.message_json(reply_to)
        elif reply_to is not None:
            msg["reply_to_message"] = reply_to
        msg.update(extra)
        self.messages.setdefault(chat["id"], []).append(
            ChatMessage(
                chat["id"],
                message_id,
                text or caption or "",
                list(entities or []),
                None,
                thread_id,
                None,
                from_bot=False,
                history=[text or caption or ""],
            )
        )
        return msg

    def _entities(self, text: str, extra: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        ents = list(extra or [])
        if text.startswith("/"):
            ents.append({"type": "bot_command", "offset": 0, "length": utf16_len(text.split()[0])})
        at = f"@{self.bot_username}"
        start = text.find(at)
        if start >= 0 and not text.startswith("/"):
            ents.append({"type": "mention", "offset": utf16_len(text[:start]), "length": utf16_len(at)})
        return ents

    def redeliver(self, update: dict[str, Any]) -> None:
        """Deliver an update again with its old ``update_id`` (Telegram does when a delivery was not confirmed)."""
        self._replays.append(update)
        self._poke()

    def say(self, chat: dict[str, Any], sender: dict[str, Any], text: str | None = None, **kw: Any) -> dict[str, Any]:
        """A user sends a message; returns the queued update."""
        return self.push({"message": self.new_message(chat, sender, text, **kw)})

    def press(self, sender: dict[str, Any], message: ChatMessage, data: str) -> dict[str, Any]:
        """A user presses an inline button of ``message``; returns the queued update."""
        return self.push(self.new_press(sender, message, data))

    def new_press(self, sender: dict[str, Any], message: ChatMessage, data: str) -> dict[str, Any]:
        """The update of a button press (not queued: e.g. to post it to a webhook)."""
        query = {
            "id": f"cbq-{next(self._callback_ids)}",
            "from": sender,
            "chat_instance": "ci-1",
            "data": data,
            "message": self.message_json(message),
        }
        return {"update_id": next(self._update_ids), "callback_query": query}

    def message_json(self, m: ChatMessage) -> dict[str, Any]:
        chat = {"id": m.chat_id, "type": "private" if m.chat_id > 0 else "supergroup"}
        if m.chat_id > 0:
            chat["first_name"] = "User"
        else:
            chat["title"] = "Team"
        out: dict[str, Any] = {"message_id": m.message_id, "date": int(time.time()), "chat": chat}
        out["from"] = self.me() if m.from_bot else user(m.chat_id)
        if m.document is not None:
            out["document"] = m.document
            if m.caption:
                out["caption"] = m.caption
        else:
            out["text"] = m.text
        if m.entities:
            out["entities"] = m.entities
        if m.reply_markup:
            out["reply_markup"] = m.reply_markup
        if m.thread_id is not None:
            out["message_thread_id"] = m.thread_id
            out["is_topic_message"] = True
        return out

    def me(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Claude",
            "username": self.bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    # -- views -----------------------------------------------------------------
    def bot_messages(self, chat_id: int) -> list[ChatMessage]:
        return [m for m in self.messages.get(chat_id, []) if m.from_bot]

    def texts(self, chat_id: int) -> list[str]:
        return [m.text for m in self.bot_messages(chat_id) if m.document is None]

    def calls_of(self, method: str) -> list[Call]:
        """The base's :meth:`PlatformServer.called`, under this fake's old name."""
        return self.called(method)

    def answers_for(self, update: dict[str, Any]) -> list[dict[str, Any]]:
        qid = update["callback_query"]["id"]
        return [a for a in self.callback_answers if a.get("callback_query_id") == qid]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every API call); returns its value.

        The base's :meth:`PlatformServer.wait_until` under this fake's old name."""
        return await self.wait_until(predicate, timeout, what)

    # -- HTTP ------------------------------------------------------------------
    async def _params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
        params: dict[str, Any] = {}
        uploads: dict[str, tuple[str, bytes]] = {}
        if request.content_type == "application/json":
            params = await request.json() if request.can_read_body else {}
        elif request.can_read_body:
            form = await request.post()
            for name, value in form.items():
                if isinstance(value, web.FileField):
                    uploads[name] = (value.filename, value.file.read())
                elif name in _JSON_FIELDS:
                    try:
                        params[name] = json.loads(value)
                    except ValueError:
                        params[name] = value
                else:
                    params[name] = value
        params.update({k: v for k, v in request.query.items() if k not in params})
        return params, uploads

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params, uploads = await self._params(request)
        call = self.record(method, params)
        try:
            if method in self.unsupported:
                raise ApiError(404, "Not Found")
            self._check_flood(call)
            failure = self.take_failure(method, params)
            if failure is not None:
                raise self._start_flood(call, _api_error(failure))
            result = await self.dispatch(method, BotRequest(params, uploads, request))
        except UnknownMethod:
            return self._answer({"ok": False, "error_code": 404, "description": "Not Found"}, 404)
        except ApiError as exc:
            return self._answer(exc.payload(), exc.code)
        return self._answer({"ok": True, "result": result})

    def _answer(self, body: dict[str, Any], status: int = 200) -> web.Response:
        self._poke()  # the call changed what a chat shows: wake the waiters again
        return web.json_response(body, status=status)

    def _start_flood(self, call: Call, error: ApiError) -> ApiError:
        chat = call.params.get("chat_id")
        if self.flood_control and error.code == 429 and error.retry_after and isinstance(chat, int):
            self._flood_until[chat] = max(self._flood_until.get(chat, 0.0), call.at + error.retry_after)
        return error

    def _check_flood(self, call: Call) -> None:
        chat = call.params.get("chat_id")
        if not self.flood_control or call.method not in _MESSAGE_METHODS or not isinstance(chat, int):
            return
        left = self._flood_until.get(chat, 0.0) - call.at
        if left > 0:
            self.early_calls.append(call)
            raise ApiError(429, f"Too Many Requests: retry after {math.ceil(left)}", math.ceil(left))

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        self.record("download", {"path": path})
        if path in self._held:
            await self._held[path].wait()
        for file_path, data in self.files.values():
            if file_path is not None and file_path == path:
                return web.Response(body=data)
        return web.Response(status=404)

    # -- methods ---------------------------------------------------------------
    def m_getMe(self, p: BotRequest) -> dict[str, Any]:
        return self.me()

    def m_deleteWebhook(self, p: BotRequest) -> bool:
        self.webhook = None
        return True

    def m_setWebhook(self, p: BotRequest) -> bool:
        self.webhook = dict(p)
        return True

    def m_setMyCommands(self, p: BotRequest) -> bool:
        commands = p.get("commands")
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: commands must be a list")
        for c in commands:
            name = c.get("command", "")
            if not (1 <= len(name) <= 32) or name != name.lower() or not (1 <= len(c.get("description", "")) <= 256):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        self.commands = commands
        return True

    def m_close(self, p: BotRequest) -> bool:
        return True

    async def m_getUpdates(self, p: BotRequest) -> list[dict[str, Any]]:
        offset = int(p.get("offset") or 0)
        timeout = float(p.get("timeout") or 0)
        if offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        await self.watch(lambda: self._updates or self._replays, timeout)  # the long poll
        request = p.http
        gone = request is not None and (request.transport is None or request.transport.is_closing())
        if self._replays and not gone:  # handed out once, before anything newer, whatever the offset says
            replays, self._replays = self._replays, []
            return replays
        limit = int(p.get("limit") or 100)
        return self._updates[:limit]

    def _chat_id(self, p: dict[str, Any]) -> int:
        try:
            return int(p["chat_id"])
        except (KeyError, TypeError, ValueError):
            raise ApiError(400, "Bad Request: chat not found") from None

    @staticmethod
    def _check_text(text: str, entities: list[dict[str, Any]], *, limit: int = 4096, what: str = "message") -> None:
        if not text or not text.strip():
            raise ApiError(400, f"Bad Request: {what} text is empty")
        length = utf16_len(text)
        if length > limit:
            raise ApiError(400, f"Bad Request: {what} is too long")
        for e in entities:
            if e.get("offset", -1) < 0 or e.get("length", 0) <= 0 or e["offset"] + e["length"] > length:
                raise ApiError(400, f"Bad Request: can't parse entities: entity {e} is out of bounds")

    def _find(self, chat_id: int, message_id: Any) -> ChatMessage:
        for m in self.messages.get(chat_id, []):
            if m.message_id == message_id and m.from_bot:
                return m
        raise ApiError(400, "Bad Request: message to edit not found")

    def m_sendMessage(self, p: BotRequest) -> dict[str, Any]:
        chat_id = self._chat_id(p)
        text = str(p.get("text", ""))
        entities = p.get("entities") or []
        if p.get("parse_mode"):
            raise ApiError(400, "Bad Request: this fake only accepts entities, not parse_mode")
        self._check_text(text, entities)
        reply = (p.get("reply_parameters") or {}).get("message_id")
        m = ChatMessage(
            chat_id,
            next(self._message_ids),
            text,
            entities,
            p.get("reply_markup"),
            p.get("message_thread_id"),
            reply,
            history=[text],
        )
        self.messages.setdefault(chat_id, []).append(m)
        return self.message_json(m)

    def m_sendMessageDraft(self, p: BotRequest) -> bool:
        chat_id = self._chat_id(p)
        if chat_id < 0:
            raise ApiError(400, "Bad Request: drafts are available in private chats only")
        if not p.get("draft_id"):
            raise ApiError(400, "Bad Request: draft_id must be non-zero")
        text = str(p.get("text", ""))
        entities = p.get("entities") or []
        if text:
            self._check_text(text, entities)
        self.drafts.append(Draft(chat_id, int(p["draft_id"]), text, entities, p.get("message_thread_id")))
        return True

    def m_editMessageText(self, p: BotRequest) -> dict[str, Any]:
        chat_id = self._chat_id(p)
        m = self._find(chat_id, p.get("message_id"))
        text = str(p.get("text", ""))
        entities = p.get("entities") or []
        self._check_text(text, entities)
        markup = p.get("reply_markup")
        if text == m.text and entities == m.entities and markup == m.reply_markup:
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message",
            )
        m.text, m.entities, m.reply_markup = text, entities, markup
        m.history.append(text)
        return self.message_json(m)

    def m_editMessageReplyMarkup(self, p: BotRequest) -> dict[str, Any]:
        m = self._find(self._chat_id(p), p.get("message_id"))
        markup = p.get("reply_markup")
        if markup == m.reply_markup:
            raise ApiError(400, "Bad Request: message is not modified")
        m.reply_markup = markup
        return self.message_json(m)

    def m_sendChatAction(self, p: BotRequest) -> bool:
        self.chat_actions.append((self._chat_id(p), str(p.get("action"))))
        return True

    def m_answerCallbackQuery(self, p: BotRequest) -> bool:
        if not p.get("callback_query_id"):
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        self.callback_answers.append(dict(p))
        return True

    def m_getFile(self, p: BotRequest) -> dict[str, Any]:
        file_id = str(p.get("file_id", ""))
        if file_id not in self.files:
            raise ApiError(400, "Bad Request: invalid file_id")
        path, data = self.files[file_id]
        out: dict[str, Any] = {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(data)}
        if path is not None:
            out["file_path"] = path
        return out

    def m_sendDocument(self, p: BotRequest) -> dict[str, Any]:
        chat_id = self._chat_id(p)
        if "document" not in p.uploads:
            raise ApiError(400, "Bad Request: there is no document in the request")
        filename, data = p.uploads["document"]
        caption = p.get("caption")
        if caption is not None:
            self._check_text(caption, p.get("caption_entities") or [], limit=1024, what="message caption")
        self.documents.append(Document(chat_id, filename, data, caption, p.get("message_thread_id")))
        file_id = self.add_file(data, f"documents/{filename}")
        doc = {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_name": filename, "file_size": len(data)}
        m = ChatMessage(
            chat_id,
            next(self._message_ids),
            "",
            p.get("caption_entities") or [],
            None,
            p.get("message_thread_id"),
            document=doc,
            caption=caption,
        )
        self.messages.setdefault(chat_id, []).append(m)
        return self.message_json(m)
