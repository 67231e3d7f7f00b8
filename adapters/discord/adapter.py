"""The Discord adapter: a discord.py 2.x client whose events feed the core dispatcher.

* Gateway: ``start()`` logs in over REST (a rejected token is one ``ConfigError``),
  runs ``client.connect()`` in a background task (discord.py heartbeats, reconnects
  and resumes by itself; the bot's loop is never blocked), waits for READY, then
  syncs the slash commands if they changed (:mod:`.commands`).
* Messages: a DM, a mention (or a reply to the bot) in a server channel, any message
  in a thread -> :class:`~.places.DiscordPlace` -> the bot's ``route`` -> the
  dispatcher. A mention outside a thread is answered in a thread opened from it
  (:class:`~.sink.ThreadOpener`; an existing one, 160004, is reused). Each message
  is handled once (``message:<id>`` in the store: a resume's replay or a redelivery
  after a restart is dropped).
* Slash commands are deferred at once (Discord's 3-second window), then answered by
  followups (:class:`~.sink.InteractionSink`) — or, for ``/claude <prompt>`` in a
  channel, in a thread opened from the command's answer. Other commands at the top level
  of a server channel are deferred too, then told (privately) to use them in a thread.
* Replies go by REST: ``sink_at`` rebuilds a reply's sink from its ``address()`` (channel,
  thread to open, message answered) once the client is ready, so messages left waiting
  when the bot stopped are answered as soon as it is back.
* Approval buttons (:mod:`.approvals`) are ``DynamicItem`` s: a press is matched by
  its custom id, also after a restart; only the requester or an admin may answer,
  anyone else is told privately (ephemeral).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

import discord
from discord import app_commands

from core import (
    ApprovalForbidden,
    ApprovalNotFound,
    CCBridgeError,
    ChatAdapter,
    ConfigError,
    ConversationKey,
    Decision,
    Dispatcher,
    IncomingMessage,
    PlatformUnavailable,
    UserRef,
)
from core.adapter import Router, drain_tasks
from core.commands import help_text
from core.dispatcher import Ticket
from core.sink import target_from

from . import approvals, commands
from .config import DiscordConfig
from .errors import NETWORK_ERRORS, gateway_error
from .files import incoming_files, upload_limit
from .places import (
    PLATFORM,
    DiscordPlace,
    interaction_place,
    mentions_in,
    message_place,
    message_text,
    other_mentions,
    replied_message,
    roles_of,
    thread_name,
)
from .ratelimits import trace_config
from .roles import RoleBook
from .sink import Destination, DiscordSink, DiscordTarget, InteractionSink, ThreadOpener, discord_limits

log = logging.getLogger(__name__)

# Discord wants an interaction acknowledged within 3 s; what is looked up first must be quicker than that.
ADMIT_TIMEOUT = 0.8  # seconds the access check may take before a slash command is deferred anyway
ROLES_TIMEOUT = 0.8  # seconds a DM author's roles may take to look up (in their servers) before that
DEDUPE_TIMEOUT = 0.5  # seconds the check for a replayed interaction may take before it is handled anyway
_PEOPLE_MESSAGES = (discord.MessageType.default, discord.MessageType.reply)
CHANNEL_HINT = (
    "In a channel, commands work inside a thread I'm answering in (type `/{name}` there, or `!{name}`). "
    "`/claude <prompt>` starts one."
)


def intents_for(config: DiscordConfig) -> discord.Intents:
    """Only what the bot uses; MESSAGE_CONTENT (privileged) when configured."""
    intents = discord.Intents.none()
    intents.guilds = True  # servers, channels, threads, roles
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = config.message_content
    return intents


def client_options(config: DiscordConfig) -> dict[str, Any]:
    return {
        "intents": intents_for(config),
        "guild_ready_timeout": config.guild_ready_timeout,
        "chunk_guilds_at_startup": False,
        "allowed_mentions": discord.AllowedMentions.none(),  # nothing the bot writes pings anyone by default
        "http_trace": trace_config(),  # a 429 on a reply reaches the core's streamer (see .ratelimits)
    }


class BridgeTree(app_commands.CommandTree["BridgeClient"]):
    async def on_error(self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError) -> None:
        command = interaction.command.name if interaction.command else "?"
        log.error("Discord: the /%s command failed", command, exc_info=error)


class BridgeClient(discord.Client):
    """A discord.py client that hands its events to a :class:`DiscordAdapter` (``None``: REST only)."""

    def __init__(self, adapter: DiscordAdapter | None, **options: Any) -> None:
        super().__init__(**options)
        self.bridge = adapter
        self.tree = BridgeTree(
            self,
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=False),
            allowed_installs=app_commands.AppInstallationType(guild=True, user=False),
        )

    async def setup_hook(self) -> None:
        self.add_dynamic_items(approvals.ApprovalButton)  # presses reach us by custom id, across restarts

    async def on_ready(self) -> None:
        if self.bridge is not None:
            self.bridge.on_ready()

    async def on_resumed(self) -> None:
        log.info("Discord: gateway session resumed")

    async def on_message(self, message: discord.Message) -> None:
        if self.bridge is not None:
            await self.bridge.on_message(message)

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """Presses discord.py routes nowhere: an approval button the message no longer shows (a stale client)."""
        if interaction.type is not discord.InteractionType.component:
            return
        custom = str((interaction.data or {}).get("custom_id") or "")
        press = approvals.parse(custom)
        if press is not None and not approvals.shows(interaction.message, custom):
            await self.on_approval_press(interaction, *press)

    async def on_approval_press(
        self, interaction: discord.Interaction[Any], request_id: str, decision: Decision
    ) -> None:
        if self.bridge is not None:
            await self.bridge.on_approval_press(interaction, request_id, decision)
        else:
            await interaction.response.send_message(approvals.expired_text(""), ephemeral=True)


class DiscordAdapter(ChatAdapter[DiscordPlace]):
    platform: ClassVar[str] = PLATFORM

    def __init__(
        self, settings: DiscordConfig, dispatcher: Dispatcher, route: Router[DiscordPlace], *, where: str = ""
    ) -> None:
        super().__init__(settings, dispatcher, route, where=where)
        self.config = config = settings
        self.limits = discord_limits(
            max_len=config.max_message_chars, edit_interval=config.edit_interval, typing_interval=config.typing_interval
        )
        self.client = BridgeClient(self, **client_options(config))
        if config.slash_commands:
            scopes = [discord.Object(g) for g in config.command_guilds]
            for command in commands.build(self.on_slash):
                if scopes:
                    self.client.tree.add_command(command, guilds=scopes)
                else:
                    self.client.tree.add_command(command)
        self.roles = RoleBook(self._role_guilds, self._access_names_roles)
        self._ready = asyncio.Event()
        self._open = asyncio.Event()  # set once start() returns: events wait for it
        self._stopping = False
        self._started = False
        self._gateway: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def single_connection(self) -> bool:
        """One gateway session per bot token: with several instances, only the leader connects."""
        return True

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        client = self.client
        try:
            await client.login(self.config.token.get_secret_value())
        except discord.LoginFailure:
            await client.close()
            raise ConfigError("Discord rejected the bot token", key=self.config_key("token")) from None
        except (discord.HTTPException, *NETWORK_ERRORS) as exc:
            await client.close()
            raise PlatformUnavailable(f"cannot reach Discord's API at {discord.http.Route.BASE}: {exc!r}") from None
        self._gateway = asyncio.create_task(client.connect(reconnect=True), name=f"ccbridge-discord-{self.where}")
        try:
            await self._wait_ready()
            # Only what changed is synced; with slash_commands off, commands an earlier run registered go.
            await commands.sync_if_changed(client, client.tree, self.config.command_guilds)
        except BaseException:
            await self.stop(drain_timeout=0)
            raise
        self._open.set()
        self.dispatcher.answer_left_waiting()
        me = client.user
        log.info(
            "Discord: %s (%s) is up in %d server(s); message content intent %s",
            me,
            me.id if me else "?",
            len(client.guilds),
            "on" if self.config.message_content else "off (threads are followed only when mentioned)",
        )

    async def _wait_ready(self) -> None:
        assert self._gateway is not None
        ready = asyncio.create_task(self._ready.wait())
        try:
            done, _ = await asyncio.wait(
                {ready, self._gateway}, timeout=self.config.ready_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
        if ready in done:
            return
        if self._gateway in done:
            exc = self._gateway.exception() if not self._gateway.cancelled() else None
            raise self._gateway_error(exc or PlatformUnavailable("the Discord gateway closed before READY"))
        raise PlatformUnavailable(f"the Discord gateway sent no READY within {self.config.ready_timeout:g}s")

    def _gateway_error(self, exc: BaseException) -> Exception:
        if isinstance(exc, (ConfigError, PlatformUnavailable)):
            return exc
        return gateway_error(exc, token_key=self.config_key("token"), intent_key=self.config_key("message_content"))

    def on_ready(self) -> None:
        if not self._ready.is_set():
            self._ready.set()
        else:
            log.info("Discord: gateway session re-identified")

    async def serve(self) -> None:
        gateway = self._gateway
        if gateway is None:
            raise RuntimeError("start() the adapter first")
        finished = asyncio.Event()
        gateway.add_done_callback(lambda _: finished.set())
        await finished.wait()
        if gateway.cancelled() or self._stopping:
            return
        exc = gateway.exception()
        if exc is not None:
            raise self._gateway_error(exc) from exc

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop taking messages, let replies in flight finish (approvals can still be answered), disconnect."""
        self._stopping = True
        self.dispatcher.end_windows()
        self._open.set()  # events waiting for start() see that the bot is stopping
        await drain_tasks(drain_timeout, self._tasks, self.dispatcher.in_flight)
        await self.client.close()
        gateway, self._gateway = self._gateway, None
        if gateway is not None and not gateway.done():
            try:
                await asyncio.wait_for(asyncio.shield(gateway), 5)
            except (TimeoutError, asyncio.CancelledError):
                gateway.cancel()
            except Exception as exc:
                log.debug("Discord gateway ended with %r", exc)
            with contextlib.suppress(BaseException):
                await gateway
        elif gateway is not None and not gateway.cancelled():
            gateway.exception()  # retrieved: no "never retrieved" warning

    def sink_at(self, address: Mapping[str, Any]) -> DiscordSink | None:
        """The sink a :meth:`DiscordSink.address` names (messages left waiting by a restart, a reply another
        instance received); None unless the client is ready (logged in, READY seen) and not stopping."""
        target = target_from(DiscordTarget, address)
        if target is None or not self._ready.is_set() or self._stopping or self.client.is_closed():
            return None
        try:
            return DiscordSink(self._destination_at(target), self.limits)
        except (TypeError, ValueError) as exc:
            log.warning("Discord: a reply address that names no channel (%r): %s", dict(address), exc)
            return None

    def _destination_at(self, target: DiscordTarget) -> Destination:
        channel_id = int(target.channel)
        cached = self.client.get_channel(channel_id)
        channel: Any = (
            cached
            if isinstance(cached, discord.abc.Messageable) and hasattr(cached, "get_partial_message")
            else self.client.get_partial_messageable(
                channel_id, guild_id=int(target.guild) if target.guild is not None else None
            )
        )  # replies go by REST: a channel id is all they need
        reply_to = channel.get_partial_message(int(target.reply_to)) if target.reply_to is not None else None
        if target.thread_from is None:
            replies_to = channel.get_partial_message(int(target.replies_to)) if target.replies_to is not None else None
            return Destination(channel, reply_to=reply_to, upload_limit=target.upload_limit, replies_to=replies_to)
        anchor = channel.get_partial_message(int(target.thread_from))
        opener = self._opener(anchor, channel, target.thread_name)  # an existing thread is reused (160004)
        return Destination(opener=opener, reply_to=reply_to, upload_limit=target.upload_limit)

    def _submit(self, incoming: IncomingMessage, ticket: Ticket | None = None) -> None:
        task = self.dispatcher.submit(incoming, ticket)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- who is who ----------------------------------------------------------------
    def _role_guilds(self) -> list[discord.Guild]:
        allowed = set(self.config.guilds)
        return [g for g in self.client.guilds if not allowed or g.id in allowed]

    def _access_names_roles(self) -> bool:
        access = self.dispatcher.access
        entries = [*access.settings.allowlist, *access.settings.admins, *access.granted]
        return any(e.startswith(f"{PLATFORM}:role:") for e in entries)

    async def user_ref(self, user: discord.abc.User | discord.Member, *, timeout: float = 2.0) -> UserRef:
        """The person, with their roles (in a DM: their roles in the servers the bot shares with them)."""
        if isinstance(user, discord.Member):
            return UserRef(str(user.id), user.display_name, roles_of(user))
        await self.dispatcher.refresh_grants()  # a role granted in the chat since makes its roles matter
        return UserRef(str(user.id), user.display_name, await self.roles.roles(user.id, timeout=timeout))

    @property
    def bot_id(self) -> int:
        me = self.client.user
        assert me is not None, "the client is not logged in"
        return me.id

    # -- messages --------------------------------------------------------------------
    async def on_message(self, message: discord.Message) -> None:
        if self._stopping or message.author.bot or message.webhook_id is not None:
            return  # the bot's own messages come back over the gateway too; other bots are never answered
        if message.type not in _PEOPLE_MESSAGES or self.client.user is None:
            return
        bot_id = self.bot_id
        place = message_place(message, bot_id)
        key = self.route(place)
        if key is None:
            log.debug("Discord: message %s in %s is not for the bot", message.id, message.channel.id)
            return
        if not place.direct and not place.mentioned and not self.config.message_content:
            log.debug("Discord: message %s carries no text without the message content intent", message.id)
            return
        ticket = self.dispatcher.reserve(key)  # keeps the conversation's messages in the order they came
        try:
            await self._open.wait()
            if self._stopping:
                ticket.release()
                return
            if not await self.dispatcher.first_delivery(f"message:{message.id}"):
                log.info("Discord: message %s was delivered again; it is handled once", message.id)
                ticket.release()
                return
            text = message_text(message, bot_id)
            mentions, role_mentions = other_mentions(message, bot_id)
            incoming = IncomingMessage(
                key=key,
                user=await self.user_ref(message.author),
                text=text,
                reply=self._sink_for(message, place, key, text),
                files=incoming_files(message),
                mentioned=place.mentioned or place.reply_to_bot,
                message_id=str(message.id),
                mentions=mentions,
                role_mentions=role_mentions,
            )
        except BaseException:
            ticket.release()
            raise
        self._submit(incoming, ticket)

    def _sink_for(self, message: discord.Message, place: DiscordPlace, key: ConversationKey, text: str) -> DiscordSink:
        limit = upload_limit(message.guild)
        channel = message.channel
        if place.direct or place.thread_id is not None:
            return DiscordSink(Destination(channel, upload_limit=limit), self.limits)
        anchor: discord.Message | discord.PartialMessage
        if key.thread == place.message_id:
            anchor = message
        elif key.thread is not None and key.thread == place.reference_id:
            anchor = replied_message(message) or channel.get_partial_message(int(place.reference_id))
        elif key.thread is not None and key.thread == place.anchor:  # a reply to the bot's answer in the channel
            anchor = channel.get_partial_message(int(key.thread))
        else:  # a routing policy of the bot's own: answer where it was written
            return DiscordSink(Destination(channel, reply_to=message, upload_limit=limit), self.limits)
        opener = self._opener(anchor, channel, thread_name(text))
        return DiscordSink(Destination(opener=opener, reply_to=message, upload_limit=limit), self.limits)

    def _opener(
        self, anchor: discord.Message | discord.PartialMessage, parent: discord.abc.Messageable, name: str
    ) -> ThreadOpener:
        return ThreadOpener(
            anchor,
            parent,
            name,
            archive_minutes=self.config.thread_archive_minutes,
            fetch_channel=self.client.fetch_channel,
        )

    # -- slash commands --------------------------------------------------------------
    async def on_slash(self, interaction: discord.Interaction[Any], name: str, text: str) -> None:
        """A slash command: deferred at once, then answered by followups (``/claude``: in a thread)."""
        await self._open.wait()
        if self._stopping:
            await self._answer_now(interaction, "⏳ I'm restarting; try again in a moment.")
            return
        if not await self._first_interaction(interaction):
            log.info("Discord: interaction %s was delivered again; it is handled once", interaction.id)
            return
        place = interaction_place(interaction)
        user = await self.user_ref(interaction.user, timeout=ROLES_TIMEOUT)
        place = replace(place, roles=user.roles)
        line = text.strip() if name == commands.CLAUDE else f"/{name} {text.strip()}".strip()
        mentions, role_mentions = mentions_in(text, self.bot_id)
        try:
            admitted = await asyncio.wait_for(self.dispatcher.admits(PLATFORM, user), ADMIT_TIMEOUT)
        except TimeoutError:
            admitted = True  # the dispatcher decides again (and refuses) once the store answers
        if not admitted:
            # Refused privately: nothing shows in the channel, and no thread is opened.
            await interaction.response.defer(ephemeral=True, thinking=True)
            dm = replace(place, direct=True, guild_id=None, thread_id=None, parent_id=None)
            key = self.route(dm) or ConversationKey(PLATFORM, place.user_id)
            sink = InteractionSink(interaction, ephemeral=True, limits=self.limits)
            self._submit(IncomingMessage(key=key, user=user, text=line, reply=sink))
            return
        key = self.route(place)
        if key is None:
            await self._answer_now(interaction, "I don't answer here.")
            return
        top_level = not place.direct and place.thread_id is None
        if name != commands.CLAUDE:
            if top_level:
                hint = CHANNEL_HINT.format(name=name)
                await self._answer_later(interaction, hint + ("\n\n" + help_text() if name == "help" else ""))
                return
            await interaction.response.defer(thinking=True)
            sink = InteractionSink(interaction, ephemeral=False, limits=self.limits)
            self._submit(
                IncomingMessage(
                    key=key, user=user, text=line, reply=sink, mentions=mentions, role_mentions=role_mentions
                )
            )
            return
        await interaction.response.defer(thinking=True)
        try:
            asked = await interaction.edit_original_response(content=_asked(user, line))
        except (discord.DiscordException, *NETWORK_ERRORS) as exc:
            log.warning("Discord: could not show the /claude question (%r); not answered", exc)
            try:  # the first followup fills in "thinking…", which would otherwise stay for good
                await InteractionSink(interaction, ephemeral=True, limits=self.limits).notify(
                    "⚠️ Discord did not let me post your question here, so it was not answered; please try again."
                )
            except CCBridgeError as again:
                log.info("Discord: could not answer interaction %s either: %s", interaction.id, again)
            return
        limit = upload_limit(interaction.guild)
        channel = interaction.channel
        if top_level and isinstance(channel, discord.abc.Messageable):
            opened = replace(place, message_id=str(asked.id))  # the thread starts at the command's answer
            key = self.route(opened) or key
            opener = self._opener(asked, channel, thread_name(line))
            destination = Destination(opener=opener, reply_to=asked, upload_limit=limit)
        else:
            target = channel if isinstance(channel, discord.abc.Messageable) else None
            if target is None:
                target = self.client.get_partial_messageable(interaction.channel_id or 0)
            destination = Destination(target, upload_limit=limit)
        self._submit(IncomingMessage(key=key, user=user, text=line, reply=DiscordSink(destination, self.limits)))

    async def _first_interaction(self, interaction: discord.Interaction[Any]) -> bool:
        """Whether this interaction is new; a slow store is not waited for past DEDUPE_TIMEOUT (Discord
        wants an answer within 3 s, and an interaction replayed after a resume is rare): then it is new."""
        try:
            return await asyncio.wait_for(
                self.dispatcher.first_delivery(f"interaction:{interaction.id}"), DEDUPE_TIMEOUT
            )
        except TimeoutError:
            log.warning(
                "Discord: the store took over %gs to check interaction %s; handling it", DEDUPE_TIMEOUT, interaction.id
            )
            return True

    async def _answer_later(self, interaction: discord.Interaction[Any], text: str) -> None:
        """Deferred (privately) at once, then answered by a followup, like every command."""
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
        except discord.HTTPException as exc:
            log.info("Discord: could not acknowledge interaction %s: %s", interaction.id, exc)
            return
        try:
            await InteractionSink(interaction, ephemeral=True, limits=self.limits).notify(text)
        except CCBridgeError as exc:
            log.info("Discord: could not answer interaction %s: %s", interaction.id, exc)

    @staticmethod
    async def _answer_now(interaction: discord.Interaction[Any], text: str) -> None:
        try:
            await interaction.response.send_message(text[:2000], ephemeral=True)
        except discord.HTTPException as exc:
            log.info("Discord: could not answer interaction %s: %s", interaction.id, exc)

    # -- approval buttons ------------------------------------------------------------
    async def on_approval_press(
        self, interaction: discord.Interaction[Any], request_id: str, decision: Decision
    ) -> None:
        try:
            await interaction.response.defer()  # acknowledged at once; the prompt then shows the decision
        except discord.HTTPException as exc:
            log.info("Discord: could not acknowledge button press %s: %s", interaction.id, exc)
        if not await self._first_interaction(interaction):
            return
        presser = await self.user_ref(interaction.user)  # after the acknowledgement: no hurry
        try:
            await self.dispatcher.resolve_approval(request_id, decision, presser)
        except ApprovalForbidden as exc:
            await self._tell(interaction, f"⛔ {_sentence(exc)}")
        except ApprovalNotFound as exc:
            await self._tell(interaction, f"⌛ {_sentence(exc)}")
            await self._retire(interaction.message)

    @staticmethod
    async def _tell(interaction: discord.Interaction[Any], text: str) -> None:
        try:
            await interaction.followup.send(text, ephemeral=True)
        except (discord.DiscordException, *NETWORK_ERRORS) as exc:
            log.warning("Discord: could not tell %s privately: %r", interaction.user.id, exc)

    @staticmethod
    async def _retire(message: discord.Message | None) -> None:
        """A prompt whose request is gone (the bot restarted) keeps no buttons that do nothing."""
        if message is None or not approvals.is_prompt(message):
            return
        try:
            await message.edit(content=approvals.expired_text(message.content), view=None)
        except (discord.DiscordException, *NETWORK_ERRORS) as exc:
            log.info("Discord: could not retire the stale approval prompt %s: %r", message.id, exc)


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


def _asked(user: UserRef, prompt: str) -> str:
    mention = f"<@{user.id}>" if user.id.isdigit() else str(user)
    text = f"💬 {mention}: {prompt}"
    return text if len(text) <= 1900 else text[:1899] + "…"
