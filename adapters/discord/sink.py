"""The Discord reply sinks: a message posted once, then edited; slash commands answered by followups.

:class:`DiscordSink` replies in a channel: a DM, a thread, or a thread it opens
from the message that addressed the bot (:class:`ThreadOpener`: on the first
reply, not before — a refusal or a hint is a reply to that message in the
channel instead, so nobody gets a thread for being turned away). ``post`` sends
a message, ``edit`` edits it (identical text: nothing is sent), ``finalize``
gives it its final text. Every message is at most 2,000 characters (the core
splits longer replies, keeping code fences; :func:`discord_len` counts UTF-16
units, as strictly as Discord could); notices that are longer are split here.
Mentions in replies never ping (``AllowedMentions.none()``), except an approval
prompt pinging the person who asked.

An approval prompt or a file ends the message being written; the reply goes on
in a new message below it, so a thread reads top to bottom.

``address()`` is the destination by id (:class:`DiscordTarget`): the adapter's
``sink_at`` rebuilds the sink from it, so messages left waiting by a restart are
answered where they were written, and another instance can post a reply itself.

:class:`InteractionSink` answers a deferred slash command through its followup
webhook (the first followup replaces the "thinking…" message); with
``ephemeral`` only the person who ran the command sees it (``private_notices``);
it has no address (an interaction's token answers it, nothing else can).

Errors become the core's (:mod:`.errors`): 429 -> ``RateLimited`` (the
streamer waits it out, :mod:`.ratelimits`), a deleted / too old message ->
``MessageGone`` (the streamer goes on in a new message), others -> ``SinkError``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import discord

from core import ApprovalRequest, MessageGone, ReplySink, SinkLimits
from core.intake import size_over_limit
from core.text_split import split_markdown

from . import approvals
from .errors import MISSING_PERMISSIONS, NETWORK_ERRORS, THREAD_EXISTS, WRONG_CHANNEL_TYPE, to_sink_error
from .ratelimits import RateLimitSurfaced, surfacing

log = logging.getLogger(__name__)

T = TypeVar("T")
DISCORD_LIMIT = 2000  # characters of message content
DEFAULT_UPLOAD_LIMIT = discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES  # 10 MiB: DMs and servers without boosts
NO_PINGS = discord.AllowedMentions.none()
_FAILURES = (RateLimitSurfaced, discord.DiscordException, *NETWORK_ERRORS)


def discord_len(text: str) -> int:
    """Length as Discord's 2,000-character limit could count it at the most (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def discord_limits(
    *, max_len: int = DISCORD_LIMIT, edit_interval: float = 1.0, typing_interval: float = 8.0
) -> SinkLimits:
    return SinkLimits(
        max_len=min(max_len, DISCORD_LIMIT),
        min_edit_interval=edit_interval,
        typing_interval=typing_interval,
        measure=discord_len,
    )


async def call(what: str, op: Callable[[], Awaitable[T]]) -> T:
    """One reply operation: a 429 surfaces at once; failures become core sink errors."""
    try:
        with surfacing():
            return await op()
    except _FAILURES as exc:
        raise to_sink_error(exc, what) from exc


class ThreadOpener:
    """Opens (once) the thread of a conversation from the message it starts at; reuses one that exists.

    A thread started from a message has that message's id. If Discord says one exists
    already (160004), it is fetched and used. Where no thread can be opened (no
    permission, a channel without threads) the reply goes to the channel itself, each
    message of it answering the anchor (``fell_back``): a reply to any of them finds the
    conversation again (see :attr:`~adapters.discord.places.DiscordPlace.anchor`).
    """

    def __init__(
        self,
        anchor: discord.Message | discord.PartialMessage,
        parent: discord.abc.Messageable,
        name: str,
        *,
        archive_minutes: int = 1440,
        fetch_channel: Callable[[int], Awaitable[Any]] | None = None,
    ) -> None:
        self.anchor = anchor
        self.parent = parent
        self.name = name
        self.archive_minutes = archive_minutes
        self.fetch_channel = fetch_channel
        self.opened: discord.abc.Messageable | None = None
        self.fell_back = False  # no thread: the replies went to the parent channel
        self._lock = asyncio.Lock()

    async def open(self) -> discord.abc.Messageable:
        async with self._lock:
            if self.opened is None:
                self.opened = await self._open()
                self.fell_back = self.opened is self.parent
            return self.opened

    def _cached(self) -> discord.Thread | None:
        guild = getattr(self.parent, "guild", None)
        return guild.get_thread(self.anchor.id) if guild is not None else None

    async def _open(self) -> discord.abc.Messageable:
        existing = self._cached()
        if existing is not None:
            return existing
        try:
            with surfacing():
                return await self.anchor.create_thread(name=self.name, auto_archive_duration=self.archive_minutes)  # type: ignore[arg-type]
        except discord.HTTPException as exc:
            if exc.code == THREAD_EXISTS:
                log.info("Discord: a thread exists for message %s already; using it", self.anchor.id)
                return await self._existing()
            if exc.status == 403 or exc.code in (MISSING_PERMISSIONS, WRONG_CHANNEL_TYPE):
                log.warning("Discord: cannot open a thread here (%s); answering in the channel", exc.text or exc.code)
                return self.parent
            raise to_sink_error(exc, "open the thread") from exc
        except _FAILURES as exc:
            raise to_sink_error(exc, "open the thread") from exc

    async def _existing(self) -> discord.abc.Messageable:
        cached = self._cached()
        if cached is not None:
            return cached
        if self.fetch_channel is None:
            return self.parent
        try:
            with surfacing():
                channel = await self.fetch_channel(self.anchor.id)
        except _FAILURES as exc:
            raise to_sink_error(exc, "find the existing thread") from exc
        return channel if isinstance(channel, discord.abc.Messageable) else self.parent


@dataclass(frozen=True)
class DiscordTarget:
    """A :class:`Destination` as plain JSON data: a :class:`DiscordSink`'s ``address()``.

    ``channel`` is where replies go (a DM, a thread, a channel) or, with ``thread_from``, the
    channel in which the thread named ``thread_name`` is opened from that message on the first
    reply. ``reply_to`` is the message notices answer while no thread is open; ``replies_to``
    the message every reply answers (a conversation's first, where no thread could be opened
    from it); ``guild`` the server (None: a DM). Ids are strings: snowflakes outgrow the integers JSON keeps exactly
    everywhere. The adapter's ``sink_at`` turns one back into a sink.
    """

    channel: str
    guild: str | None = None
    thread_from: str | None = None
    thread_name: str = ""
    reply_to: str | None = None
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    replies_to: str | None = None


@dataclass
class Destination:
    """Where a reply goes: ``channel`` (a DM, a thread), or the thread ``opener`` opens on first use.

    ``reply_to`` is the message notices answer (as a reply) while no thread is open;
    ``replies_to`` the one every reply answers (set where the opener could open no thread).
    """

    channel: discord.abc.Messageable | None = None
    opener: ThreadOpener | None = None
    reply_to: discord.Message | discord.PartialMessage | None = None
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    replies_to: discord.Message | discord.PartialMessage | None = None

    def __post_init__(self) -> None:
        if self.channel is None and self.opener is None:
            raise ValueError("a Destination needs a channel or a thread opener")

    def target(self) -> DiscordTarget:
        """Where this destination answers, by id (a thread opened already: that thread)."""
        opener, reply_to, replies_to = self.opener, self.reply_to, self.answered()
        if opener is not None and opener.opened is not None:
            channel, opener, reply_to = opener.opened, None, None
        elif opener is not None:
            channel = opener.parent
        else:
            assert self.channel is not None
            channel = self.channel
        return DiscordTarget(
            channel=str(channel.id),
            guild=_guild_id(channel),
            thread_from=str(opener.anchor.id) if opener is not None else None,
            thread_name=opener.name if opener is not None else "",
            reply_to=str(reply_to.id) if reply_to is not None else None,
            upload_limit=self.upload_limit,
            replies_to=str(replies_to.id) if replies_to is not None else None,
        )

    def answered(self) -> discord.Message | discord.PartialMessage | None:
        """The message every reply answers: none, unless no thread could be opened for the conversation."""
        if self.replies_to is not None:
            return self.replies_to
        return self.opener.anchor if self.opener is not None and self.opener.fell_back else None

    async def replies(self) -> discord.abc.Messageable:
        if self.channel is not None:
            return self.channel
        assert self.opener is not None
        return await self.opener.open()

    def notices(self) -> tuple[discord.abc.Messageable, discord.MessageReference | None]:
        """Where a notice goes now, and the message it answers."""
        reference = self.reply_to.to_reference(fail_if_not_exists=False) if self.reply_to is not None else None
        if self.opener is not None:
            if self.opener.opened is None:
                return self.opener.parent, reference
            return self.opener.opened, None
        assert self.channel is not None
        return self.channel, reference


@dataclass
class Posted:
    """A sink handle: one reply message as the core sees it.

    After an approval prompt or a file the reply continues *below* it: the handle moves
    on to a new Discord message, which shows ``shown[base:]``.
    """

    message: discord.Message
    shown: str  # the reply text delivered so far for this handle
    base: int = 0  # where the current Discord message starts in ``shown``
    moved: bool = False  # the next text goes into a new message (below a prompt / file)


@dataclass(eq=False)
class DiscordSink(ReplySink):
    destination: Destination
    limits: SinkLimits = field(default_factory=discord_limits)

    def __post_init__(self) -> None:
        self._prompts: dict[str, discord.Message] = {}  # approval request id -> its prompt
        self._open: Posted | None = None  # the reply message being written

    def address(self) -> dict[str, Any]:
        return dataclasses.asdict(self.destination.target())

    # -- the contract ----------------------------------------------------------
    async def post(self, text: str) -> Posted:
        message = await self._send(text)
        handle = Posted(message, text)
        self._open = handle
        return handle

    async def edit(self, handle: Posted, text: str) -> None:
        if text == handle.shown:
            return
        if handle.moved and text.startswith(handle.shown):
            await self._continue_below(handle, text)
            return
        await self._edit(handle, text)

    async def finalize(self, handle: Posted | None, text: str) -> None:
        if handle is None:
            for part in self._parts(text):
                await self._send(part)
            return
        if handle.moved and text.startswith(handle.shown):
            rest = text[len(handle.shown) :].lstrip("\n")
            if rest.strip():
                await self._send(rest)
            handle.shown, handle.moved = text, False
        elif text != handle.shown:
            await self._edit(handle, text)
        if handle is self._open:
            self._open = None

    async def typing(self) -> None:
        channel = await self.destination.replies()
        await call("show typing", lambda: _trigger_typing(channel))

    async def notify(self, text: str) -> None:
        channel, reference = self.destination.notices()
        for i, part in enumerate(self._parts(text)):
            answers = reference if i == 0 else None  # the first part answers the message; the rest follow it
            await call("send a notice", lambda part=part, answers=answers: _send(channel, part, reference=answers))

    async def show_approval(self, request: ApprovalRequest) -> None:
        if request.pending:
            if request.id in self._prompts:
                return  # already shown (a retried call)
            self._move_below()
            channel = await self.destination.replies()
            prompt = await call(
                "send the approval prompt",
                lambda: channel.send(
                    content=approvals.prompt_text(request),
                    view=approvals.view(request),
                    allowed_mentions=approvals.requester_mentions(request),
                ),
            )
            self._prompts[request.id] = prompt
            return
        text = approvals.decided_text(request)
        prompt = self._prompts.pop(request.id, None)
        if prompt is not None:
            try:
                await call("show the decision", lambda: prompt.edit(content=text, view=None))
                return
            except MessageGone:
                log.info("approval prompt %s is gone; posting the decision anew", prompt.id)
        await self._send(text)

    async def send_file(self, path: Path, caption: str = "") -> None:
        size = (await asyncio.to_thread(path.stat)).st_size
        limit = self.destination.upload_limit
        if size > limit:
            shown, most = size_over_limit(size, limit)
            await self.finalize(
                None,
                f"📎 `{path.name}` is {shown}, more than Discord's upload limit here ({most}); "
                "it stays in the workspace.",
            )
            return
        data = await asyncio.to_thread(path.read_bytes)
        self._move_below()
        channel = await self.destination.replies()
        content = _clip(caption, self.limits.max_len) if caption else None
        await call(
            "upload the file",
            lambda: channel.send(content=content, file=discord.File(io.BytesIO(data), filename=path.name)),
        )

    # -- helpers ---------------------------------------------------------------
    def _parts(self, text: str) -> list[str]:
        if self.limits.measure(text) <= self.limits.max_len:
            return [text]
        return split_markdown(text, self.limits.max_len, self.limits.measure)

    async def _send(self, text: str) -> discord.Message:
        channel = await self.destination.replies()
        answered = self.destination.answered()
        reference = answered.to_reference(fail_if_not_exists=False) if answered is not None else None
        return await call("send the reply", lambda: _send(channel, text, reference=reference))

    async def _edit(self, handle: Posted, text: str) -> None:
        body = text[handle.base :] if text.startswith(handle.shown[: handle.base]) else text
        await call("edit the reply", lambda: handle.message.edit(content=body))
        handle.shown = text

    def _move_below(self) -> None:
        """Before a prompt or a file: the message being written is done; the reply goes on below."""
        if self._open is not None:
            self._open.moved = True

    async def _continue_below(self, handle: Posted, text: str) -> None:
        body = text[len(handle.shown) :].lstrip("\n")
        if not body.strip():
            return  # only the separator so far: wait for words
        handle.message = await self._send(body)
        handle.base = len(text) - len(body)
        handle.shown, handle.moved = text, False


class InteractionSink(ReplySink):
    """Answers a deferred slash command through its followup webhook (commands and refusals: notices)."""

    def __init__(self, interaction: discord.Interaction[Any], *, ephemeral: bool, limits: SinkLimits | None = None):
        self.interaction = interaction
        self.ephemeral = ephemeral
        self.private_notices = ephemeral
        self.limits = limits or discord_limits()

    async def post(self, text: str) -> Posted:
        return Posted(await self._send(text), text)

    async def edit(self, handle: Posted, text: str) -> None:
        if text != handle.shown:
            await call("edit the answer", lambda: handle.message.edit(content=text))
            handle.shown = text

    async def finalize(self, handle: Posted | None, text: str) -> None:
        if handle is not None:
            await self.edit(handle, text)
            return
        parts = (
            [text]
            if self.limits.measure(text) <= self.limits.max_len
            else split_markdown(text, self.limits.max_len, self.limits.measure)
        )
        for part in parts:
            await self._send(part)

    async def notify(self, text: str) -> None:
        await self.finalize(None, text)

    async def send_file(self, path: Path, caption: str = "") -> None:
        """A file with the command's answer (``/diff``), as a followup, within the server's upload limit."""
        size = (await asyncio.to_thread(path.stat)).st_size
        guild = self.interaction.guild
        limit = guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT
        if size > limit:
            shown, most = size_over_limit(size, limit)
            await self.notify(
                f"📎 `{path.name}` is {shown}, more than Discord's upload limit here ({most}); it stays in the workspace."
            )
            return
        data = await asyncio.to_thread(path.read_bytes)
        followup = self.interaction.followup
        content = _clip(caption, self.limits.max_len) if caption else discord.utils.MISSING
        await call(
            "upload the file",
            lambda: followup.send(
                content=content,
                file=discord.File(io.BytesIO(data), filename=path.name),
                ephemeral=self.ephemeral,
                wait=True,
                allowed_mentions=NO_PINGS,
            ),
        )

    async def _send(self, text: str) -> discord.Message:
        followup = self.interaction.followup
        return await call(
            "answer the command",
            lambda: followup.send(content=text, ephemeral=self.ephemeral, wait=True, allowed_mentions=NO_PINGS),
        )


async def _send(
    channel: discord.abc.Messageable, text: str, *, reference: discord.MessageReference | None = None
) -> discord.Message:
    if reference is not None:
        return await channel.send(content=text, reference=reference, mention_author=False, allowed_mentions=NO_PINGS)
    return await channel.send(content=text, allowed_mentions=NO_PINGS)


async def _trigger_typing(channel: discord.abc.Messageable) -> None:
    await channel.typing()  # awaiting discord.py's Typing sends one indicator (it shows for ~10 s)


def _guild_id(channel: discord.abc.Messageable) -> str | None:
    guild_id = getattr(channel, "guild_id", None)  # a thread, a partial messageable
    if guild_id is None:
        guild = getattr(channel, "guild", None)  # a server channel (a DM has none)
        guild_id = guild.id if guild is not None else None
    return str(guild_id) if guild_id is not None else None


def _clip(text: str, limit: int) -> str:
    while discord_len(text) > limit:
        text = text[: max(0, len(text) - (discord_len(text) - limit) - 1)] + "…"
    return text


__all__ = [
    "DEFAULT_UPLOAD_LIMIT",
    "DISCORD_LIMIT",
    "Destination",
    "DiscordSink",
    "DiscordTarget",
    "InteractionSink",
    "Posted",
    "ThreadOpener",
    "discord_len",
    "discord_limits",
]
