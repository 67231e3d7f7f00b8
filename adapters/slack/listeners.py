"""What the Slack bot does with each event bolt hands it: messages, approval buttons, the slash command.

Events are acknowledged at once (bolt acks event listeners before running
them) and each becomes an :class:`~core.dispatcher.IncomingMessage` for the
dispatcher, which decides everything else. A delivery is handled once: repeated
``event_id`` s (Slack's retries, ``X-Slack-Retry-Num``; remembered in the store,
so also across a restart) and the ``message`` twin of an ``app_mention`` are
dropped.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any

from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError

from core import ApprovalError, IncomingMessage, ReplySink, UserRef
from core.commands import COMMANDS, help_text

from .approvals import ACTION_PATTERN, decision_for
from .errors import NETWORK_ERRORS, error_code
from .events import SlackInbound, SlackPlace, mentioned_people, translate_message
from .formatting import clip_escaped, escape, from_slack, to_mrkdwn
from .sink import SlackTarget

if TYPE_CHECKING:
    from .adapter import SlackAdapter

log = logging.getLogger(__name__)

_CACHE = 5000
#: how long a message waits for its author's name (``users.info``) before it goes on without it: the
#: sign of life comes first; the lookup finishes aside and names the author's next messages
_NAME_WAIT = 0.03
COMMAND_PREFIX = "!"  # Slack's composer treats a leading "/" as a slash command


class Responder(ReplySink):
    """Answers through a slash command's ``respond`` (ephemeral): only notices go this way."""

    private_notices = True

    def __init__(self, respond: Any) -> None:
        self.respond = respond

    async def post(self, text: str) -> Any:
        await self.notify(text)

    async def edit(self, handle: Any, text: str) -> None:
        return None

    async def finalize(self, handle: Any | None, text: str) -> None:
        await self.notify(text)

    async def notify(self, text: str) -> None:
        await self.respond(text=to_mrkdwn(text), response_type="ephemeral")


class SlackListeners:
    def __init__(self, adapter: SlackAdapter) -> None:
        self.adapter = adapter
        self.config = adapter.config
        self.client = adapter.client
        self.dispatcher = adapter.dispatcher
        self._names: dict[str, str | None] = {}
        self._names_enabled = True
        self._lookups: dict[str, asyncio.Task[str | None]] = {}  # users.info calls under way, by user
        self._ims: dict[str, str] = {}  # user id -> the bot's DM channel with them

    def register(self, app: AsyncApp) -> None:
        app.middleware(self._drop_repeats)
        app.event("app_mention")(self._on_message)
        app.event("message")(self._on_message)
        app.action(ACTION_PATTERN)(self._on_approval_button)
        if self.config.slash_command:
            app.command(self.config.slash_command)(self._on_slash_command)
        app.event(re.compile(".*"))(self._on_other_event)
        app.error(self._on_error)

    async def _drop_repeats(self, req: AsyncBoltRequest, body: dict[str, Any], next: Any) -> BoltResponse | None:
        """Handle each Events API delivery once (Slack retries unacknowledged ones)."""
        event_id = body.get("event_id") if isinstance(body, dict) and body.get("type") == "event_callback" else None
        if event_id and not await self.dispatcher.first_delivery(f"event:{event_id}"):
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
    async def _on_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        bot = await self.adapter.identity()
        inbound = translate_message(
            event, bot, self.adapter.route, team_id=body.get("team_id"), dm_threads=self.config.dm_threads
        )
        if inbound is None:
            log.debug("Slack: not for the bot: %s/%s", event.get("type"), event.get("subtype"))
            return
        if not await self.dispatcher.first_delivery(f"message:{inbound.target.channel}:{inbound.ts}"):
            log.debug("Slack: message %s already handled (app_mention + message event)", inbound.ts)
            return
        if inbound.direct:
            self._remember_dm(inbound.user_id, inbound.target.channel)
        await self._submit(inbound)

    async def _submit(self, inbound: SlackInbound) -> None:
        files = self.adapter.files
        self.dispatcher.submit(
            IncomingMessage(
                key=inbound.key,
                user=UserRef(inbound.user_id, await self._name_soon(inbound.user_id)),
                text=inbound.text,
                reply=self.adapter.sink_for(inbound.target),
                files=[files.incoming(info, self._file_info) for info in inbound.files],
                mentioned=inbound.mentioned,
                message_id=inbound.ts,
                command_prefix=COMMAND_PREFIX,
                mentions=inbound.mentions,
            )
        )

    async def _file_info(self, file_id: str) -> dict[str, Any] | None:
        """Complete a partial file object (``file_access: check_file_info``)."""
        try:
            response = await self.client.files_info(file=file_id)
            info = response.get("file")
            return info if isinstance(info, dict) else None
        except (SlackApiError, *NETWORK_ERRORS) as exc:
            log.info("files.info %s failed: %r", file_id, exc)
            return None

    async def _name_soon(self, user_id: str) -> str | None:
        """The user's name if it is known, or looked up within :data:`_NAME_WAIT`; else None for now (the
        lookup goes on, and its answer is cached for the next message)."""
        if user_id in self._names or not self._names_enabled:
            return self._names.get(user_id)
        lookup = self._lookups.get(user_id)
        if lookup is None:
            lookup = asyncio.create_task(self.name(user_id), name=f"slack-users-info-{user_id}")
            self._lookups[user_id] = lookup
            lookup.add_done_callback(lambda _: self._lookups.pop(user_id, None))
        done, _ = await asyncio.wait({lookup}, timeout=_NAME_WAIT)
        return lookup.result() if done else None

    async def name(self, user_id: str) -> str | None:
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
        if len(self._names) >= _CACHE:
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
            await self.dispatcher.resolve_approval(str(request_id), decision, UserRef(str(user_id)))
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
        user = UserRef(user_id, await self.name(user_id))
        route = self.adapter.route
        if not await self.dispatcher.admits(self.adapter.platform, user):
            # The dispatcher refuses (once per cooldown), privately: nothing is posted in the channel.
            dm_key = route(SlackPlace(True, user_id, channel, None, "", True))
            if dm_key is not None:
                self.dispatcher.submit(IncomingMessage(key=dm_key, user=user, text=line, reply=Responder(respond)))
            return
        moved = False
        if channel.startswith("D") or command.get("channel_name") == "directmessage":
            # Any DM the command was typed in; the bot can only write in its own DM with this person.
            im = await self._dm_channel(user_id)
            if im is None:
                await respond(text="I can't reply here; send me a direct message instead.", response_type="ephemeral")
                return
            moved, channel = im != channel, im
            key = route(SlackPlace(True, user_id, channel, None, "", True))
            target = SlackTarget(channel, None, user_id, team, None)
        else:
            if is_command:
                bot = await self.adapter.identity()
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
            key = route(SlackPlace(False, user_id, channel, root, root, True))
            target = SlackTarget(channel, root, user_id, team, root)
        if key is None:
            await respond(text="I don't answer here.", response_type="ephemeral")
            return
        raw = str(command.get("text") or "")
        # people picked from the mention list (`/claude allow @eve`): Slack escapes them as <@U…|eve>
        mentions = mentioned_people(raw, (await self.adapter.identity()).user_id) if "<@" in raw else []
        self.dispatcher.submit(
            IncomingMessage(
                key=key,
                user=user,
                text=line,
                reply=self.adapter.sink_for(target),
                command_prefix=COMMAND_PREFIX,
                mentions=mentions,
            )
        )
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
        if len(self._ims) >= _CACHE:
            self._ims.clear()
        self._ims[user_id] = channel
