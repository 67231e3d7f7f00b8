"""The Slack bridge: a bolt ``AsyncApp`` whose listeners feed the core dispatcher.

Receiving: Socket Mode (``AsyncSocketModeHandler``, no public URL) or the HTTP
Events API (an aiohttp server handing requests to bolt). Over HTTP a body over
4 MB gets 413 unread; every other request's signature and timestamp are checked
before its body is parsed (forged or stale: 401), and a signed body that is not
what Slack sends gets 400 (:mod:`.payloads`); nothing runs for any of them. Events
are acknowledged at once (bolt acks event listeners before running them) and the
turn runs in the background (:meth:`Dispatcher.submit`). A delivery is handled
once: repeated ``event_id``s (Slack's retries, ``X-Slack-Retry-Num``) and the
``message`` twin of an ``app_mention`` are dropped.

Everything platform-specific about *answering* lives in :mod:`.sink`; who is
answered and in which conversation in :mod:`.events`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from core import (
    Agent,
    ApprovalError,
    Attachment,
    ConfigError,
    ConversationKey,
    Dispatcher,
    IncomingMessage,
    UserRef,
    send_notice,
)
from core.commands import COMMANDS, help_text
from core.dedupe import RecentKeys

from .approvals import ACTION_PATTERN, decision_for
from .config import SlackConfig
from .errors import NETWORK_ERRORS, error_code
from .events import PLATFORM, BotIdentity, Router, SlackInbound, SlackPlace, translate_message
from .files import FileFetcher, FileRejected, SlackFile
from .formatting import clip_escaped, escape, from_slack, to_mrkdwn
from .payloads import is_ssl_check, read_body, shape_problem
from .sink import SinkOptions, SlackSink, SlackTarget
from .status import Capabilities

log = logging.getLogger(__name__)

_NAME_CACHE = 5000
_MAX_REQUEST_BYTES = 4 * 1024 * 1024  # Slack's payloads are small; refuse anything huge
# What an empty message addressed to the bot (a bare @mention) gets instead of a turn.
EMPTY_MENTION_HINT = "👋 Put your question in the same message as the mention (`!help` lists the commands)."
EMPTY_DM_HINT = "👋 Send me a question or a task (`!help` lists the commands)."


class SlackBridge:
    def __init__(
        self, agent: Agent, config: SlackConfig, route: Router, *, dispatcher: Dispatcher | None = None
    ) -> None:
        self.agent = agent
        self.config = config
        self.route = route  # the bot's policy: which conversation a message belongs to, if any
        self.dispatcher = dispatcher or Dispatcher(agent)
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
        self.files = FileFetcher(token, max_bytes=config.max_file_bytes, extra_hosts={api_host} if api_host else set())
        self.bot: BotIdentity | None = None
        self._seen_events = RecentKeys()
        self._seen_messages = RecentKeys()
        self._names: dict[str, str | None] = {}
        self._names_enabled = True
        self._ims: dict[str, str] = {}  # user id -> the bot's DM channel with them
        secret = config.signing_secret.get_secret_value() if config.signing_secret else None
        self._verifier = SignatureVerifier(secret) if secret else None
        self._runner: web.AppRunner | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self.port: int | None = None
        self.app = self._build_app()

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> BotIdentity:
        """Check the bot token (``auth.test``) and learn the bot's own ids."""
        try:
            auth = await self.client.auth_test()
        except SlackApiError as exc:
            raise ConfigError(f"Slack rejected the bot token ({error_code(exc) or exc})", key="bot_token") from None
        except NETWORK_ERRORS as exc:
            raise ConfigError(
                f"cannot reach the Slack Web API at {self.config.base_url}: {exc!r}", key="base_url"
            ) from None
        self.bot = BotIdentity(user_id=str(auth["user_id"]), bot_id=auth.get("bot_id"), team_id=auth.get("team_id"))
        log.info("Slack: connected as <@%s> in team %s", self.bot.user_id, self.bot.team_id)
        return self.bot

    async def serve_http(self) -> int:
        """Serve the Events API / interactivity / slash commands at ``host:port`` + ``path``."""
        web_app = web.Application(client_max_size=_MAX_REQUEST_BYTES)
        web_app.router.add_post(self.config.path, self._http_request)
        web_app.router.add_get("/healthz", _healthz)
        self._runner = web.AppRunner(web_app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        log.info("Slack: listening for events on http://%s:%s%s", self.config.host, self.port, self.config.path)
        return self.port

    async def _http_request(self, request: web.Request) -> web.Response:
        """One Events API / interactivity / slash command request: signature first, then bolt."""
        too_large = web.json_response(
            {"error": f"request body too large (the limit is {_MAX_REQUEST_BYTES // (1024 * 1024)} MB)"}, status=413
        )
        if (request.content_length or 0) > _MAX_REQUEST_BYTES:
            return too_large
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return too_large
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

    async def connect_socket(self) -> None:
        """Open the Socket Mode connection (``apps.connections.open`` + WebSocket)."""
        assert self.config.app_token is not None  # SlackConfig guarantees it in socket mode
        self._socket = AsyncSocketModeHandler(
            self.app, self.config.app_token.get_secret_value(), web_client=self.client
        )
        try:
            await self._socket.connect_async()
        except SlackApiError as exc:
            raise ConfigError(f"Socket Mode connection refused ({error_code(exc) or exc})", key="app_token") from None
        log.info("Slack: connected over Socket Mode")

    async def run(self) -> None:
        """Receive events until cancelled."""
        await self.start()
        try:
            if self.config.mode == "http":
                await self.serve_http()
            else:
                await self.connect_socket()
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def close(self) -> None:
        if self._socket is not None:
            socket, self._socket = self._socket, None
            try:
                await socket.close_async()
            except Exception as exc:  # closing is best effort
                log.debug("closing Socket Mode failed: %r", exc)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        await self.files.close()

    # -- bolt wiring -----------------------------------------------------------
    def _build_app(self) -> AsyncApp:
        secret = self.config.signing_secret.get_secret_value() if self.config.signing_secret else None
        app = AsyncApp(
            client=self.client,
            signing_secret=secret,
            request_verification_enabled=self.config.mode == "http",
            logger=logging.getLogger("ccbridge.slack.bolt"),
        )
        app.middleware(self._drop_repeats)
        app.event("app_mention")(self._on_message)
        app.event("message")(self._on_message)
        app.action(ACTION_PATTERN)(self._on_approval_button)
        if self.config.slash_command:
            app.command(self.config.slash_command)(self._on_slash_command)
        app.event(re.compile(".*"))(self._on_other_event)
        app.error(self._on_error)
        return app

    async def _drop_repeats(self, req: AsyncBoltRequest, body: dict[str, Any], next: Any) -> BoltResponse | None:
        """Handle each Events API delivery once (Slack retries unacknowledged ones)."""
        event_id = body.get("event_id") if isinstance(body, dict) and body.get("type") == "event_callback" else None
        if event_id and not self._seen_events.first_time(event_id):
            retry = (req.headers.get("x-slack-retry-num") or ["-"])[0]
            log.info("Slack: dropping a repeated delivery of %s (retry %s)", event_id, retry)
            return BoltResponse(status=200, body="")
        return await next()

    async def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        log.error(
            "Slack listener failed on a %s payload", body.get("type") if isinstance(body, dict) else "?", exc_info=error
        )

    async def _on_other_event(self, event: dict[str, Any]) -> None:
        log.debug("Slack: skipping a %s event", event.get("type"))

    # -- messages --------------------------------------------------------------
    async def _identity(self) -> BotIdentity:
        return self.bot or await self.start()

    async def _on_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        bot = await self._identity()
        inbound = translate_message(
            event, bot, self.route, team_id=body.get("team_id"), dm_threads=self.config.dm_threads
        )
        if inbound is None:
            log.debug("Slack: not for the bot: %s/%s", event.get("type"), event.get("subtype"))
            return
        if not self._seen_messages.first_time((inbound.target.channel, inbound.ts)):
            log.debug("Slack: message %s already handled (app_mention + message event)", inbound.ts)
            return
        if inbound.direct:
            self._remember_dm(inbound.user_id, inbound.target.channel)
        await self._deliver(inbound)

    def sink_for(self, target: SlackTarget) -> SlackSink:
        return SlackSink(self.client, target, self.sink_options, self.caps)

    async def _deliver(self, inbound: SlackInbound) -> None:
        sink = self.sink_for(inbound.target)
        attachments: list[Attachment] = []
        if inbound.files and await self._takes_files(inbound):
            attachments, problems = await self._download(inbound.key, inbound.files)
            for problem in problems:
                await send_notice(sink, f"⚠️ {problem}")
            if problems and not attachments and not inbound.text.strip():
                return
        if not inbound.text.strip() and not inbound.files and inbound.mentioned:
            if self.agent.access.allows(PLATFORM, inbound.user_id):  # others get the dispatcher's refusal
                await send_notice(sink, EMPTY_DM_HINT if inbound.direct else EMPTY_MENTION_HINT)
                return
        user = UserRef(inbound.user_id, await self._name(inbound.user_id))
        self.dispatcher.submit(
            IncomingMessage(
                key=inbound.key,
                user=user,
                text=inbound.text,
                reply=sink,
                attachments=attachments,
                mentioned=inbound.mentioned,
                message_id=inbound.ts,
            )
        )

    async def _takes_files(self, inbound: SlackInbound) -> bool:
        """Only download for people the bot will answer."""
        if not self.agent.access.allows(PLATFORM, inbound.user_id):
            return False
        return inbound.mentioned or await self.agent.conversations.get(inbound.key) is not None

    async def _download(self, key: ConversationKey, infos: list[dict[str, Any]]) -> tuple[list[Attachment], list[str]]:
        attachments: list[Attachment] = []
        problems: list[str] = []
        for info in infos:
            if not info.get("url_private") and not info.get("url_private_download") and info.get("id"):
                info = await self._file_info(str(info["id"])) or info
            file = SlackFile.from_event(info)
            try:
                data = await self.files.fetch(file)
            except FileRejected as exc:
                problems.append(str(exc))
                continue
            path = await self.agent.workspaces.save_upload(key, file.name, data)
            attachments.append(Attachment(path=path, name=file.name, mime_type=file.mime_type))
        return attachments, problems

    async def _file_info(self, file_id: str) -> dict[str, Any] | None:
        """Complete a partial file object (``file_access: check_file_info``)."""
        try:
            response = await self.client.files_info(file=file_id)
            info = response.get("file")
            return info if isinstance(info, dict) else None
        except (SlackApiError, *NETWORK_ERRORS) as exc:
            log.info("files.info %s failed: %r", file_id, exc)
            return None

    async def _name(self, user_id: str) -> str | None:
        """The user's display name (``users.info``, cached); None when unknown."""
        if user_id in self._names or not self._names_enabled:
            return self._names.get(user_id)
        name: str | None = None
        try:
            response = await self.client.users_info(user=user_id)
            user = response.get("user") or {}
            profile = user.get("profile") or {}
            name = profile.get("display_name") or profile.get("real_name") or user.get("real_name") or user.get("name")
        except SlackApiError as exc:
            if error_code(exc) in ("missing_scope", "not_allowed_token_type", "unknown_method"):
                log.info("Slack: users.info unavailable (%s); using user ids as names", error_code(exc))
                self._names_enabled = False
                return None
        except NETWORK_ERRORS as exc:
            log.debug("users.info failed: %r", exc)
            return None
        if len(self._names) >= _NAME_CACHE:
            self._names.clear()
        self._names[user_id] = name or None
        return name or None

    # -- buttons ---------------------------------------------------------------
    async def _on_approval_button(
        self, ack: Any, body: dict[str, Any], action: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        await ack()
        decision = decision_for(str(action.get("action_id", "")))
        user_id = context.user_id  # bolt reads it from `user` (an object or an id)
        request_id = action.get("value")
        if decision is None or not user_id or not request_id:
            log.debug("Slack: malformed approval action %r", action)
            return
        try:
            self.dispatcher.resolve_approval(str(request_id), decision, str(user_id))
        except ApprovalError as exc:
            container = body.get("container") or {}  # an object (see .payloads)
            channel = context.channel_id or container.get("channel_id")
            thread = container.get("thread_ts") or context.thread_ts
            if channel:
                await self._ephemeral(str(channel), str(user_id), f":no_entry: {escape(str(exc))}", thread)

    async def _ephemeral(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
        try:
            kwargs: dict[str, Any] = {"channel": channel, "user": user, "text": text}
            if thread_ts:
                kwargs["thread_ts"] = thread_ts
            await self.client.chat_postEphemeral(**kwargs)
        except (SlackApiError, *NETWORK_ERRORS) as exc:
            log.warning("could not tell %s privately: %r", user, exc)

    # -- slash command ---------------------------------------------------------
    async def _on_slash_command(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        await ack()
        text = from_slack(str(command.get("text") or "")).strip()
        user_id, channel = str(command.get("user_id") or ""), str(command.get("channel_id") or "")
        if not user_id or not channel:
            return
        word = text.split(maxsplit=1)[0].lstrip("/!").lower() if text else "help"
        is_command = word in COMMANDS
        line = ("/" + text.lstrip("/!")) if (is_command and text) else (text or "/help")
        team = command.get("team_id")
        if not self.agent.access.allows(PLATFORM, user_id):
            await respond(text=to_mrkdwn(self.agent.access.settings.refusal), response_type="ephemeral")
            return
        moved = False
        if channel.startswith("D") or command.get("channel_name") == "directmessage":
            # Any DM the command was typed in; the bot can only write in its own DM with this person.
            im = await self._dm_channel(user_id)
            if im is None:
                await respond(text="I can't reply here; send me a direct message instead.", response_type="ephemeral")
                return
            moved, channel = im != channel, im
            key = self.route(SlackPlace(True, user_id, channel, None, "", True))
            target = SlackTarget(channel, None, user_id, team, None)
        else:
            if is_command:
                bot = await self._identity()
                hint = (
                    "In a channel, commands work inside my threads: "
                    f"mention me there, e.g. <@{bot.user_id}> /{word} (or send !{word}).\n\n"
                )
                await respond(text=hint + to_mrkdwn(help_text()), response_type="ephemeral")
                return
            try:
                opened = await self.client.chat_postMessage(
                    channel=channel, text=f"<@{user_id}> asked: {clip_escaped(text, 2900)}"
                )
            except SlackApiError as exc:
                await respond(
                    text=f"I can't post here ({error_code(exc)}). Invite me to the channel first.",
                    response_type="ephemeral",
                )
                return
            root = str(opened["ts"])
            key = self.route(SlackPlace(False, user_id, channel, root, root, True))
            target = SlackTarget(channel, root, user_id, team, root)
        if key is None:
            await respond(text="I don't answer here.", response_type="ephemeral")
            return
        user = UserRef(user_id, await self._name(user_id))
        self.dispatcher.submit(IncomingMessage(key=key, user=user, text=line, reply=self.sink_for(target)))
        if moved:
            await respond(
                text="I can't write in a DM between people, so I answered in our own DM.",
                response_type="ephemeral",
            )

    async def _dm_channel(self, user_id: str) -> str | None:
        """The bot's own DM with ``user_id`` (``conversations.open``, cached); None when it can't be had."""
        if user_id in self._ims:
            return self._ims[user_id]
        try:
            response = await self.client.conversations_open(users=user_id)
        except (SlackApiError, *NETWORK_ERRORS) as exc:
            log.warning("Slack: conversations.open with %s failed (%s)", user_id, error_code(exc) or repr(exc))
            return None
        channel = (response.get("channel") or {}).get("id")
        if not isinstance(channel, str) or not channel:
            return None
        self._remember_dm(user_id, channel)
        return channel

    def _remember_dm(self, user_id: str, channel: str) -> None:
        if len(self._ims) >= _NAME_CACHE:
            self._ims.clear()
        self._ims[user_id] = channel


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})
