"""A fake Slack, served on 127.0.0.1, that the real slack-sdk / slack-bolt talk to.

* The Web API: ``POST /api/<method>`` with form or JSON bodies, the bot token in
  ``Authorization``; answers ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``
  (HTTP 429 + ``Retry-After`` for rate limits), as Slack does. Implemented:
  auth.test, chat.postMessage / update / postEphemeral / startStream /
  appendStream / stopStream, reactions.add / remove, assistant.threads.setStatus,
  users.info, conversations.open (the bot's DM with a user: :attr:`FakeSlack.ims`),
  files.getUploadURLExternal / completeUploadExternal / info (with the upload POST
  to the returned URL), apps.connections.open.
* ``url_private`` file downloads that demand the bot token.
* Socket Mode: the WebSocket returned by ``apps.connections.open`` sends
  ``hello``, then whatever envelopes a test pushes, and records the acks.
* Signed Events API deliveries (:func:`signed_headers`, :class:`EventPoster`).

It is a :class:`~tests.fakes.platform_server.PlatformServer`: the base runs the
server, keeps the call log (``calls``, ``called(method)``: :class:`SlackCall` s, whose
``args`` are the call's params), the failure queues and dispatches each Web API method
to its ``m_<method>`` handler (dots become ``_``; none: ``unknown_method``).

Failure injection: :meth:`FakeSlack.fail_next` (a given error / 429 for the next
calls of a method; Slack's arguments over the base's ``fail``, which works too:
``fail(method, Failure(200, code="channel_not_found"))``) and :meth:`FakeSlack.disable`
(``unknown_method``).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from tests.fakes.platform_server import Call, Failure, PlatformServer

BOT_TOKEN = "xoxb-fake-bot-token"
APP_TOKEN = "xapp-fake-app-token"
SIGNING_SECRET = "fake-signing-secret"
TEAM = "T0FAKE"
BOT_USER = "UBOT"
BOT_ID = "BBOT"
APP_ID = "AFAKE"


@dataclass
class SlackCall(Call):
    """A Web API call; ``args`` is what Slack calls its params."""

    @property
    def args(self) -> dict[str, Any]:
        return self.params


@dataclass
class Message:
    channel: str
    ts: str
    user: str
    thread_ts: str | None = None
    text: str = ""
    markdown: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)  # streamed markdown, in order
    streamed: bool = False
    streaming: bool = False
    edits: int = 0
    files: list[str] = field(default_factory=list)

    @property
    def from_bot(self) -> bool:
        return self.user == BOT_USER

    @property
    def is_approval(self) -> bool:
        return any(str(b.get("block_id", "")).startswith("ccbridge_approval") for b in self.blocks)

    def rendered(self) -> str:
        """What a person sees."""
        if self.streamed:
            return "".join(self.chunks)
        if self.blocks:
            return "\n".join(_block_text(b) for b in self.blocks)
        return self.markdown or self.text

    def buttons(self) -> list[dict[str, Any]]:
        return [e for b in self.blocks if b.get("type") == "actions" for e in b.get("elements", [])]


def _block_text(block: dict[str, Any]) -> str:
    kind = block.get("type")
    if kind in ("section", "header"):
        return str((block.get("text") or {}).get("text", ""))
    if kind == "markdown":
        return str(block.get("text", ""))
    if kind == "context":
        return " ".join(str(e.get("text", "")) for e in block.get("elements", []))
    if kind == "actions":
        return " ".join(f"[{e.get('text', {}).get('text', '')}]" for e in block.get("elements", []))
    return ""


class FakeSlack(PlatformServer):
    """A Slack workspace with one bot (see the module docstring)."""

    call_type = SlackCall

    def __init__(self, *, port: int = 0) -> None:
        super().__init__(port=port)
        self.messages: dict[tuple[str, str], Message] = {}
        self.ephemerals: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []  # posted to response_url (slash commands)
        self.reactions: dict[tuple[str, str], set[str]] = {}
        self.statuses: list[dict[str, Any]] = []
        self.uploads: dict[str, dict[str, Any]] = {}  # file_id -> {filename, data, shared...}
        self.hosted: dict[str, tuple[bytes, str]] = {}  # path -> (content, content type)
        self.downloads: list[dict[str, Any]] = []  # file download attempts
        self.users: dict[str, str] = {}
        self.ims: dict[str, str] = {}  # user id -> the bot's DM channel with them (made up when missing)
        self.assistant_status = False  # whether assistant.threads.setStatus works
        self.socket_acks: list[dict[str, Any]] = []
        self.socket_connections = 0
        self._disabled: set[str] = set()
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._sockets: list[web.WebSocketResponse] = []

    # -- server ----------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_route("POST", "/api/{method}", self._api)
        app.router.add_route("GET", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/files-pri/{path:.*}", self._download)
        app.router.add_post("/respond/{id}", self._respond)
        app.router.add_get("/socket", self._socket)

    async def on_stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()

    # -- scripting -------------------------------------------------------------
    def fail_next(
        self,
        method: str,
        error: str = "ratelimited",
        *,
        status: int | None = None,
        retry_after: float | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with ``error`` (429 for ratelimited).

        Slack's arguments over the base's :meth:`PlatformServer.fail`: ``error`` is the failure's ``code``."""
        if status is None:
            status = 429 if error == "ratelimited" else 200
        if error == "ratelimited" and retry_after is None:
            retry_after = 1
        self.fail(method, Failure(status, code=error, retry_after=retry_after), times=times)

    def disable(self, *methods: str) -> None:
        """Make methods unknown (``unknown_method``), e.g. streaming on an old workspace."""
        self._disabled.update(methods)

    def new_ts(self) -> str:
        return f"{1_700_000_000 + next(self._ts)}.{next(self._ids):06d}"

    def user_message(self, channel: str, user: str, text: str, *, thread_ts: str | None = None) -> Message:
        """A message a person posted (so it can get reactions / replies)."""
        msg = Message(channel=channel, ts=self.new_ts(), user=user, thread_ts=thread_ts, text=text)
        self.messages[(channel, msg.ts)] = msg
        return msg

    def host_file(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Serve a file at a url_private-style URL (only with the bot token); returns the URL."""
        path = f"T0FAKE-F{next(self._ids):05d}/{name}"
        self.hosted[path] = (data, content_type)
        return f"{self.url}/files-pri/{path}"

    # -- views -----------------------------------------------------------------
    def thread(self, channel: str, thread_ts: str | None) -> list[Message]:
        """Bot messages in a thread (thread_ts None: top level of the channel), oldest first."""
        return [m for m in self.messages.values() if m.channel == channel and m.from_bot and m.thread_ts == thread_ts]

    def replies(self, channel: str, thread_ts: str | None) -> list[str]:
        """Rendered reply texts (approval prompts left out)."""
        return [m.rendered() for m in self.thread(channel, thread_ts) if not m.is_approval]

    def approvals(self, channel: str, thread_ts: str | None) -> list[Message]:
        return [m for m in self.thread(channel, thread_ts) if m.is_approval]

    def bot_messages(self) -> list[Message]:
        return [m for m in self.messages.values() if m.from_bot]

    def files_in(self, channel: str, thread_ts: str | None) -> list[dict[str, Any]]:
        return [f for f in self.uploads.values() if f.get("channel") == channel and f.get("thread_ts") == thread_ts]

    # -- Web API ---------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.method == "GET":
            pass
        elif request.content_type == "application/json":
            body = await request.json()
            args.update(body if isinstance(body, dict) else {})
        else:
            form = await request.post()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() or args.pop("token", "")
        args.pop("token", None)
        self.record(method, args)
        response = await self._answer(method, args, token)
        self._poke()  # the call changed the workspace: wake the waiters again
        return response

    async def _answer(self, method: str, args: dict[str, Any], token: str) -> web.Response:
        failure = self.take_failure(method, args)
        if failure is not None:
            return self._failure_response(failure, args)
        if method in self._disabled or not self.has_method(method):
            return _error("unknown_method")
        expected = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if token != expected:
            return _error("invalid_auth" if token else "not_authed")
        try:
            result = await self.dispatch(method, args)
        except _ApiError as exc:
            return _error(exc.code)
        return web.json_response({"ok": True, **result})

    def _failure_response(self, failure: Failure, args: dict[str, Any]) -> web.Response:
        error = str(failure.code or ("ratelimited" if failure.status == 429 else "fatal_error"))
        if error == "message_not_in_streaming_state":  # the stream really did expire
            expired = self.messages.get((args.get("channel", ""), args.get("ts", "")))
            if expired is not None:
                expired.streaming = False
        headers = {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after is not None else {}
        return web.json_response({"ok": False, "error": error}, status=failure.status, headers=headers)

    @staticmethod
    def _need(args: dict[str, Any], *names: str) -> None:
        for name in names:
            if not args.get(name):
                raise _ApiError("invalid_arguments")

    def _message(self, args: dict[str, Any], ts_field: str = "ts") -> Message:
        self._need(args, "channel", ts_field)
        msg = self.messages.get((args["channel"], args[ts_field]))
        if msg is None:
            raise _ApiError("message_not_found")
        return msg

    def m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://fake.slack.com/",
            "team": "Fake",
            "user": "ccbridge",
            "team_id": TEAM,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def m_apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"{self.ws_url}/socket"}

    def m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        self._need(args, "user")
        user = args["user"]
        name = self.users.get(user, user.lower())
        return {"user": {"id": user, "name": name, "real_name": name.title(), "profile": {"display_name": name}}}

    def m_conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        self._need(args, "users")
        users = str(args["users"]).split(",")
        if len(users) != 1:  # a group DM; the bridge never asks for one
            raise _ApiError("not_supported")
        channel = self.ims.setdefault(users[0], f"D0{users[0]}")
        return {"channel": {"id": channel}}

    def _content(self, msg: Message, args: dict[str, Any]) -> None:
        if not (args.get("text") or args.get("markdown_text") or args.get("blocks")):
            raise _ApiError("no_text")
        if args.get("markdown_text") and (args.get("text") or args.get("blocks")):
            raise _ApiError("markdown_text_conflict")
        if len(str(args.get("markdown_text") or "")) > 12_000:
            raise _ApiError("msg_too_long")
        msg.text = str(args.get("text") or "")
        msg.markdown = str(args.get("markdown_text") or "")
        blocks = args.get("blocks") or []
        msg.blocks = json.loads(blocks) if isinstance(blocks, str) else list(blocks)

    def m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        self._need(args, "channel")
        msg = Message(channel=args["channel"], ts=self.new_ts(), user=BOT_USER, thread_ts=args.get("thread_ts") or None)
        self._content(msg, args)
        self.messages[(msg.channel, msg.ts)] = msg
        return {"channel": msg.channel, "ts": msg.ts, "message": {"text": msg.text, "ts": msg.ts}}

    def m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self._message(args)
        if not msg.from_bot:
            raise _ApiError("cant_update_message")
        if msg.streaming:
            raise _ApiError("message_is_streaming")
        self._content(msg, args)
        msg.streamed, msg.chunks = False, []
        msg.edits += 1
        return {"channel": msg.channel, "ts": msg.ts, "text": msg.text}

    def m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        self._need(args, "channel", "user")
        self.ephemerals.append(dict(args))
        return {"message_ts": self.new_ts()}

    def _chunk_text(self, args: dict[str, Any]) -> str:
        text = str(args.get("markdown_text") or "")
        chunks = args.get("chunks") or []
        if isinstance(chunks, str):
            chunks = json.loads(chunks)
        text += "".join(str(c.get("text", "")) for c in chunks if c.get("type") == "markdown_text")
        if len(text) > 12_000:
            raise _ApiError("msg_too_long")
        return text

    def m_chat_startStream(self, args: dict[str, Any]) -> dict[str, Any]:
        self._need(args, "channel", "thread_ts")
        channel = args["channel"]
        if not channel.startswith("D") and not (args.get("recipient_user_id") and args.get("recipient_team_id")):
            raise _ApiError("invalid_arguments")
        msg = Message(
            channel=channel, ts=self.new_ts(), user=BOT_USER, thread_ts=args["thread_ts"], streamed=True, streaming=True
        )
        text = self._chunk_text(args)
        if text:
            msg.chunks.append(text)
        self.messages[(channel, msg.ts)] = msg
        return {"channel": channel, "ts": msg.ts}

    def _streaming_message(self, args: dict[str, Any]) -> Message:
        msg = self._message(args)
        if not msg.streaming:
            raise _ApiError("message_not_in_streaming_state")
        return msg

    def m_chat_appendStream(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self._streaming_message(args)
        text = self._chunk_text(args)
        if not text:
            raise _ApiError("invalid_arguments")
        msg.chunks.append(text)
        return {"channel": msg.channel, "ts": msg.ts}

    def m_chat_stopStream(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self._streaming_message(args)
        text = self._chunk_text(args)
        if text:
            msg.chunks.append(text)
        msg.streaming = False
        return {"channel": msg.channel, "ts": msg.ts, "message": {"ts": msg.ts}}

    def m_reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        self._need(args, "name")
        msg = self._message(args, "timestamp")
        names = self.reactions.setdefault((msg.channel, msg.ts), set())
        if args["name"] in names:
            raise _ApiError("already_reacted")
        names.add(args["name"])
        return {}

    def m_reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        self._need(args, "name")
        msg = self._message(args, "timestamp")
        names = self.reactions.setdefault((msg.channel, msg.ts), set())
        if args["name"] not in names:
            raise _ApiError("no_reaction")
        names.discard(args["name"])
        return {}

    def m_assistant_threads_setStatus(self, args: dict[str, Any]) -> dict[str, Any]:
        if not self.assistant_status:
            raise _ApiError("not_allowed")
        self._need(args, "channel_id", "thread_ts")
        self.statuses.append(dict(args))
        return {}

    def m_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        self._need(args, "filename", "length")
        file_id = f"F{next(self._ids):06d}"
        self.uploads[file_id] = {
            "id": file_id,
            "filename": args["filename"],
            "length": int(args["length"]),
            "data": None,
            "shared": False,
        }
        return {"upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    def m_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        self._need(args, "files")
        files = json.loads(args["files"]) if isinstance(args["files"], str) else args["files"]
        out = []
        for item in files:
            upload = self.uploads.get(item.get("id"))
            if upload is None or upload["data"] is None:
                raise _ApiError("file_not_found" if upload is None else "file_upload_not_complete")
            upload.update(
                shared=True,
                title=item.get("title"),
                channel=args.get("channel_id"),
                thread_ts=args.get("thread_ts") or None,
                initial_comment=args.get("initial_comment"),
            )
            out.append({"id": upload["id"], "name": upload["filename"], "title": item.get("title")})
        return {"files": out}

    def m_files_info(self, args: dict[str, Any]) -> dict[str, Any]:
        self._need(args, "file")
        for path, (data, ctype) in self.hosted.items():
            if path.split("/")[0].endswith(args["file"]):
                url = f"{self.url}/files-pri/{path}"
                return {
                    "file": {
                        "id": args["file"],
                        "name": path.split("/")[-1],
                        "size": len(data),
                        "mimetype": ctype,
                        "url_private": url,
                        "url_private_download": url,
                    }
                }
        raise _ApiError("file_not_found")

    async def _upload(self, request: web.Request) -> web.Response:
        upload = self.uploads.get(request.match_info["file_id"])
        if upload is None:
            return web.Response(status=404, text="unknown upload")
        upload["data"] = await request.read()
        self._poke()
        return web.Response(text=f"OK - {len(upload['data'])}")

    async def _download(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        authorized = request.headers.get("Authorization") == f"Bearer {BOT_TOKEN}"
        self.downloads.append({"path": path, "authorized": authorized})
        self._poke()
        if path not in self.hosted:
            return web.Response(status=404)
        if not authorized:  # Slack shows its sign-in page
            return web.Response(text="<html>sign in</html>", content_type="text/html")
        data, ctype = self.hosted[path]
        return web.Response(body=data, content_type=ctype)

    async def _respond(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        self._poke()
        return web.Response(text="ok")

    # -- Socket Mode -----------------------------------------------------------
    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "connection_info": {"app_id": APP_ID},
                "debug_info": {"host": "fake", "approximate_connection_time": 3600},
            }
        )
        self.socket_connections += 1  # counted once it got its hello: wait_socket returns then
        self._poke()
        try:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self.socket_acks.append(json.loads(message.data))
                    self._poke()
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
            self._poke()
        return ws

    async def wait_socket(self, timeout: float = 30) -> None:
        """Wait until a client has connected over Socket Mode (and got its ``hello``)."""
        await self.wait_until(lambda: self.socket_connections, timeout, "a Socket Mode connection")

    async def socket_send(self, payload: dict[str, Any], *, kind: str = "events_api", retry_attempt: int = 0) -> str:
        """Push an envelope to the connected client; returns its envelope_id."""
        envelope_id = f"env-{next(self._ids)}"
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        }
        await self._sockets[-1].send_json(envelope)
        return envelope_id

    async def wait_ack(self, envelope_id: str, timeout: float = 30) -> dict[str, Any]:
        """Wait for the client's ack of an envelope; returns it."""

        def ack() -> dict[str, Any] | None:
            return next((a for a in self.socket_acks if a.get("envelope_id") == envelope_id), None)

        return await self.wait_until(ack, timeout, f"the ack of {envelope_id}")


class _ApiError(Exception):
    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(code)


def _error(code: str) -> web.Response:
    return web.json_response({"ok": False, "error": code})


# -- deliveries to the bot -----------------------------------------------------
def signed_headers(
    body: bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None, content_type: str = "application/json"
) -> dict[str, str]:
    """Headers of a request signed the way Slack signs them (``v0=`` HMAC-SHA256 of ``v0:ts:body``)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature, "Content-Type": content_type}


def event_callback(event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    return {
        "token": "legacy",
        "team_id": TEAM,
        "api_app_id": APP_ID,
        "type": "event_callback",
        "event": event,
        "event_id": event_id or f"Ev{int(time.time() * 1000) % 10**9}{id(event) % 1000}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
    }


class EventPoster:
    """Sends signed requests to the bot's Events API endpoint, as Slack would."""

    def __init__(self, url: str, secret: str = SIGNING_SECRET) -> None:
        self.url = url
        self.secret = secret
        self._ids = itertools.count(1)

    def next_event_id(self) -> str:
        return f"Ev{next(self._ids):08d}"

    async def send(
        self,
        body: bytes,
        *,
        content_type: str = "application/json",
        timestamp: int | None = None,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        all_headers = signed_headers(body, secret=secret or self.secret, timestamp=timestamp, content_type=content_type)
        all_headers.update(headers or {})
        async with aiohttp.ClientSession() as session:
            async with session.post(self.url, data=body, headers=all_headers) as response:
                return response.status, await response.text()

    async def event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None, **kwargs: Any
    ) -> tuple[int, str]:
        payload = event_callback(event, event_id=event_id or self.next_event_id())
        headers = dict(kwargs.pop("headers", None) or {})
        if retry_num is not None:
            headers.update({"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"})
        return await self.send(json.dumps(payload).encode(), headers=headers, **kwargs)

    async def interaction(self, payload: dict[str, Any]) -> tuple[int, str]:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self.send(body, content_type="application/x-www-form-urlencoded")

    async def command(self, fields: dict[str, str]) -> tuple[int, str]:
        body = urlencode(fields).encode()
        return await self.send(body, content_type="application/x-www-form-urlencoded")
