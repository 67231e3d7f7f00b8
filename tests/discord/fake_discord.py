"""A fake Discord on 127.0.0.1 that the real discord.py 2.x talks to over the real wire protocol.

Pointing discord.py at it
-------------------------
discord.py builds every REST URL from the class attribute ``discord.http.Route.BASE``
(webhooks and interaction callbacks too) and a non-sharded client connects straight to
``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` (a ``yarl.URL``; it never asks
``/gateway/bot``). :meth:`FakeDiscord.patch_discord` (pytest ``monkeypatch``) or the
context manager :meth:`FakeDiscord.pointed_at` set both. ``AutoShardedClient`` asks
``GET /gateway/bot`` and gets the fake's gateway URL back.

REST (``/api/v10``)
-------------------
Requests carry ``Authorization: Bot <token>`` (interaction callbacks and interaction
webhooks carry none: their token is in the path). Bodies are JSON, or multipart with a
``payload_json`` part and ``files[n]`` parts (attachment ``n`` is described in
``payload_json["attachments"]`` by ``{"id": n, "filename": ...}``). Answers are JSON
with ``Content-Type: application/json`` *exactly*: discord.py only parses a body whose
content type equals that string (aiohttp's ``json_response`` adds ``; charset=utf-8``,
which would make discord.py see a plain string). Errors are Discord's
``{"message": ..., "code": ...}`` (``"errors"`` for 50035 Invalid Form Body).

Every answer carries ``X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket`` for a
per-route bucket (keyed like Discord's: route + channel / guild / webhook), so
discord.py's bucket logic runs for real; an exhausted bucket answers 429 as Discord does.
Default buckets are generous (:attr:`FakeDiscord.default_rate_limit`);
:meth:`FakeDiscord.set_rate_limit` tightens one.

Route names (for :meth:`fail`, :meth:`called`, :meth:`wait_for_call`)
-----------------------------------------------------------------------
A route's name is its HTTP method, a space and its path template *as written in
discord.py's* ``http.py`` / ``webhook/async_.py`` (that is ``Route.key``), e.g.
``"POST /channels/{channel_id}/messages"``,
``"PATCH /channels/{channel_id}/messages/{message_id}"``,
``"POST /interactions/{webhook_id}/{webhook_token}/callback"``,
``"POST /webhooks/{webhook_id}/{webhook_token}"``,
``"PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original"``,
``"PUT /applications/{application_id}/commands"``. :meth:`FakeDiscord.route_names`
lists them all. A call's params are the path parameters (snowflakes as ``int``), the
query string and the JSON body's fields (a list body is under ``"body"``; uploads are
under ``"files"`` as ``{"filename", "size"}``). Attachment downloads are logged as
``"GET /attachments/{channel_id}/{attachment_id}/{filename}"``.

``fail(name, Failure(429, retry_after=0.5))`` answers a 429 with the body
``{"message": "You are being rate limited.", "retry_after": 0.5, "global": false}`` and
``Retry-After``, ``X-RateLimit-*`` (``Remaining: 0``, ``Scope``) and ``Via`` headers:
without ``Via`` discord.py takes a 429 for a Cloudflare ban and raises at once
(``Failure(429, extra={"cloudflare": True})`` simulates exactly that). ``extra`` may also
hold ``"global": True``, ``"scope": "shared"``, ``"headers"`` and ``"errors"``. Any other
status answers ``{"message": description, "code": code}`` (a known code gets Discord's
own message when ``description`` is left at its default), e.g.
``Failure(400, code=30046)`` for "message too old to edit".

Gateway (``/gateway/``, resumes at ``/resume/``)
-----------------------------------------------
discord.py connects with ``?v=10&encoding=json&compress=zlib-stream`` (``zstd-stream``
when the ``zstandard`` module is importable); there is no public switch to turn that off
(``Client.connect`` never passes ``compress``). The fake implements zlib-stream: one
zlib context per connection, every frame compressed and ended by a ``Z_SYNC_FLUSH``
(``00 00 ff ff``) in a binary WebSocket message. For any other (or no) compression, or
with :attr:`FakeDiscord.transport_compression` off, it sends plain JSON text frames,
which discord.py also accepts. Client frames are always JSON text.

HELLO (op 10) opens; heartbeats (op 1) get acks (op 11); IDENTIFY (op 2) gets READY
(``resume_gateway_url`` points at ``/resume/`` on the fake) and a GUILD_CREATE per guild;
RESUME (op 6) replays every dispatch after the client's ``seq`` then sends RESUMED; an
unknown or closed session gets INVALID_SESSION (op 9, ``false``). REQUEST_GUILD_MEMBERS
(op 8, which discord.py sends at startup with the members intent) gets
GUILD_MEMBERS_CHUNK. Each session keeps its log of dispatches, so whatever is dispatched
while the client is away arrives on resume, exactly once. Intents are honoured the way
Discord does: events are only sent to sessions whose intents cover them, privileged
intents not enabled (:attr:`FakeDiscord.enabled_privileged_intents`) close with 4014,
and without MESSAGE_CONTENT guild messages that neither mention the bot nor come from it
arrive with empty content, embeds, attachments and components. Without GUILD_PRESENCES
a GUILD_CREATE lists only the bot as a member (so discord.py chunks with op 8).

Scripting and state
-------------------
Set up with :meth:`add_guild` / :meth:`add_channel` / :meth:`add_thread` (optionally
started from a message) / :meth:`add_role` / :meth:`add_member` / :meth:`add_user` /
:meth:`dm_channel` / :meth:`host_file`; act as users with :meth:`user_message`,
:meth:`user_reaction`, :meth:`slash_command` and :meth:`press` (``stale=True``: a button
the message showed earlier, as a client that has not refreshed sends it), each
dispatching over the gateway and returning once the frame is written (or queued when the
client is away); :meth:`redeliver` dispatches a message again (a duplicate delivery);
break things with :meth:`disconnect`, :meth:`request_reconnect`,
:meth:`invalidate_session` and :meth:`hold_gateway`. Read :attr:`messages` (per channel,
with edit history, uploads, components — ``shown_components``: all it ever showed —, reactions),
:attr:`threads`, :attr:`interactions` (callbacks, original response, followups),
:attr:`typing`, :attr:`command_syncs`, :attr:`sessions` and :attr:`connections`.

Interactions follow Discord's rules that bite bots: the first callback must come within
:attr:`interaction_response_window` seconds (3) or it is an "Unknown interaction"; a
second callback is 40060 "already acknowledged"; the first followup after a deferred
(type 5) response edits the "thinking" message instead of posting a new one (and keeps
the defer's ephemerality).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import mimetypes
import re
import secrets
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from tests.fakes.platform_server import Call, Failure, PlatformServer

__all__ = [
    "APP_ID",
    "BOT_ID",
    "TOKEN",
    "Channel",
    "CommandSync",
    "DiscordCall",
    "FakeDiscord",
    "Failure",
    "GatewayConnection",
    "GatewaySession",
    "Guild",
    "Intents",
    "Interaction",
    "Member",
    "Message",
    "Role",
    "User",
]

TOKEN = "MTAwMDAwMDAwMDAwMDAwMDA.fake.bot-token-for-tests"
BOT_ID = 1_000_000_000_000_000_001
APP_ID = BOT_ID  # modern applications share the bot user's id
DISCORD_EPOCH_MS = 1_420_070_400_000
API_PREFIX = "/api/v10"
GATEWAY_PATH = "/gateway/"
RESUME_PATH = "/resume/"
DEFAULT_FILE_LIMIT = 10 * 1024 * 1024  # 10 MiB: a guild without boosts


class Intents:
    """Gateway intent bits (only those the fake looks at)."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    MESSAGE_CONTENT = 1 << 15
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


class ChannelType:
    TEXT = 0
    DM = 1
    CATEGORY = 4
    PUBLIC_THREAD = 11
    PRIVATE_THREAD = 12
    FORUM = 15
    THREADS = (PUBLIC_THREAD, PRIVATE_THREAD)


class MessageFlag:
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7


class Perm:
    """Permission bits for the default roles (the fake does not enforce permissions)."""

    ADMINISTRATOR = 1 << 3
    MEMBER_DEFAULT = (
        (1 << 0)  # create instant invite
        | (1 << 6)  # add reactions
        | (1 << 10)  # view channel
        | (1 << 11)  # send messages
        | (1 << 14)  # embed links
        | (1 << 15)  # attach files
        | (1 << 16)  # read message history
        | (1 << 18)  # use external emojis
        | (1 << 26)  # change nickname
        | (1 << 31)  # use application commands
        | (1 << 35)  # create public threads
        | (1 << 38)  # send messages in threads
    )
    ALL = (1 << 51) - 1


# Discord's own messages for the error codes the fake produces (and common injected ones).
ERROR_MESSAGES: dict[int, str] = {
    0: "General error",
    10003: "Unknown Channel",
    10004: "Unknown Guild",
    10007: "Unknown Member",
    10008: "Unknown Message",
    10011: "Unknown Role",
    10013: "Unknown User",
    10015: "Unknown Webhook",
    10062: "Unknown interaction",
    30046: "Maximum number of edits to messages older than 1 hour reached. Try again later.",
    40005: "Request entity too large",
    40060: "Interaction has already been acknowledged.",
    50005: "Cannot edit a message authored by another user",
    50006: "Cannot send an empty message",
    50013: "Missing Permissions",
    50024: "Cannot execute action on this channel type",
    50027: "Invalid Webhook Token",
    50035: "Invalid Form Body",
    50109: "The request body contains invalid JSON.",
    160004: "A thread has already been created for this message",
}


# -- ids and time ----------------------------------------------------------------


class Snowflakes:
    """Time-based, strictly increasing snowflakes (so ``created_at`` and "too old" logic hold)."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        now = int(time.time() * 1000) - DISCORD_EPOCH_MS
        self._last = max(now << 22, self._last + 1)
        return self._last


def snowflake_time(snowflake: int) -> float:
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _sid(value: int | None) -> str | None:
    return None if value is None else str(value)


# -- errors ----------------------------------------------------------------------


class ApiError(Exception):
    """An error answer: HTTP status, Discord error code, message and (50035) field errors."""

    def __init__(self, status: int, code: int, message: str | None = None, errors: dict[str, Any] | None = None):
        self.status = status
        self.code = code
        self.message = message or ERROR_MESSAGES.get(code, "Unknown error")
        self.errors = errors
        super().__init__(f"{status} {code} {self.message}")

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            out["errors"] = self.errors
        return out


def form_error(path: str, code: str, message: str) -> ApiError:
    """A 400 / 50035 with ``errors`` nested along ``path`` (dot separated), as Discord reports it."""
    node: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path.split(".")):
        node = {key: node}
    return ApiError(400, 50035, errors=node)


# -- records: what a chat would show ----------------------------------------------


@dataclass
class DiscordCall(Call):
    """A REST call, with the HTTP status the fake answered (0 while it is being handled)."""

    status: int = 0


@dataclass
class User:
    id: int
    username: str
    bot: bool = False
    global_name: str | None = None

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "public_flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
            "primary_guild": None,
        }
        if self.bot:
            out["bot"] = True
        return out


@dataclass
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int = 0
    position: int = 0
    color: int = 0
    managed: bool = False

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": self.color,
            "colors": {"primary_color": self.color, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }


@dataclass
class Member:
    user: User
    guild_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: float = field(default_factory=time.time)

    @property
    def id(self) -> int:
        return self.user.id

    def payload(self, *, with_user: bool = True, permissions: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "roles": [str(r) for r in self.roles],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": iso(self.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            out["user"] = self.user.payload()
        if permissions is not None:
            out["permissions"] = str(permissions)
        return out


@dataclass
class Channel:
    """A guild channel, a thread (threads are channels) or a DM channel."""

    id: int
    type: int
    name: str | None = None
    guild_id: int | None = None
    parent_id: int | None = None
    position: int = 0
    topic: str | None = None
    owner_id: int | None = None  # threads: who started it
    starter_message_id: int | None = None  # threads started from a message (same id as the thread)
    recipients: list[User] = field(default_factory=list)  # DMs
    archived: bool = False
    locked: bool = False
    auto_archive_duration: int = 1440
    message_count: int = 0
    created_at: float = field(default_factory=time.time)
    last_message_id: int | None = None

    @property
    def is_thread(self) -> bool:
        return self.type in ChannelType.THREADS

    @property
    def is_dm(self) -> bool:
        return self.type == ChannelType.DM

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": str(self.id), "type": self.type, "flags": 0}
        if self.is_dm:
            out.update(recipients=[u.payload() for u in self.recipients], last_message_id=_sid(self.last_message_id))
            return out
        out.update(
            guild_id=_sid(self.guild_id),
            name=self.name,
            parent_id=_sid(self.parent_id),
            rate_limit_per_user=0,
            last_message_id=_sid(self.last_message_id),
        )
        if self.is_thread:
            out.update(
                owner_id=_sid(self.owner_id),
                message_count=self.message_count,
                member_count=1,
                total_message_sent=self.message_count,
                applied_tags=[],
                thread_metadata={
                    "archived": self.archived,
                    "auto_archive_duration": self.auto_archive_duration,
                    "archive_timestamp": iso(self.created_at),
                    "locked": self.locked,
                    "invitable": True,
                    "create_timestamp": iso(self.created_at),
                },
            )
            return out
        out.update(position=self.position, permission_overwrites=[], nsfw=False, topic=self.topic)
        if self.type == ChannelType.TEXT:
            out["default_auto_archive_duration"] = 1440
        if self.type == ChannelType.FORUM:
            out.update(
                available_tags=[],
                default_reaction_emoji=None,
                default_thread_rate_limit_per_user=0,
                default_sort_order=None,
                default_forum_layout=0,
                default_auto_archive_duration=1440,
            )
        return out


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, Role] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)  # threads included
    joined_at: float = field(default_factory=time.time)

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]

    def channel(self, name: str) -> Channel:
        """The guild's channel (or thread) called ``name``."""
        for channel in self.channels.values():
            if channel.name == name:
                return channel
        raise KeyError(f"no channel {name!r} in guild {self.name!r}")

    def role(self, name: str) -> Role:
        for role in self.roles.values():
            if role.name == name:
                return role
        raise KeyError(f"no role {name!r} in guild {self.name!r}")

    def permissions_of(self, member: Member) -> int:
        value = self.everyone.permissions
        for role_id in member.roles:
            value |= self.roles[role_id].permissions if role_id in self.roles else 0
        if member.id == self.owner_id or value & Perm.ADMINISTRATOR:
            return Perm.ALL
        return value

    def payload(self, members: Iterable[Member], *, large_threshold: int = 250) -> dict[str, Any]:
        """The GUILD_CREATE payload (the REST guild object plus the gateway-only fields)."""
        listed = [m.payload() for m in members]
        return {
            **self.rest_payload(),
            "joined_at": iso(self.joined_at),
            "large": len(self.members) >= large_threshold,
            "unavailable": False,
            "member_count": len(self.members),
            "voice_states": [],
            "members": listed,
            "channels": [c.payload() for c in self.channels.values() if not c.is_thread],
            "threads": [c.payload() for c in self.channels.values() if c.is_thread and not c.archived],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def rest_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [r.payload() for r in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "max_members": 500000,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
        }


@dataclass
class Upload:
    """A file part of a multipart request (``files[index]``)."""

    index: int
    filename: str
    data: bytes
    content_type: str


@dataclass
class Message:
    """A message as a chat shows it (its current version), with what happened to it."""

    id: int
    channel_id: int
    author: User
    content: str = ""
    guild_id: int | None = None
    type: int = 0
    flags: int = 0
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)  # public attachment objects
    files: dict[int, bytes] = field(default_factory=dict)  # attachment id -> bytes the bot uploaded
    mentions: list[User] = field(default_factory=list)
    mention_roles: list[int] = field(default_factory=list)
    mention_everyone: bool = False
    reference: Message | None = None
    nonce: str | None = None
    webhook_id: int | None = None
    interaction_id: int | None = None
    thread_id: int | None = None  # the thread started from this message
    reactions: dict[str, set[int]] = field(default_factory=dict)  # emoji -> user ids
    history: list[str] = field(default_factory=list)  # every content it showed, oldest first
    shown_components: list[dict[str, Any]] = field(default_factory=list)  # every component it ever showed
    edits: list[dict[str, Any]] = field(default_factory=list)  # every edit body, in order
    edited_at: float | None = None
    deleted: bool = False

    @property
    def from_bot(self) -> bool:
        return self.author.id == BOT_ID

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlag.EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & MessageFlag.LOADING)

    @property
    def created_at(self) -> float:
        return snowflake_time(self.id)

    def all_components(self) -> list[dict[str, Any]]:
        """Every component, flattened out of action rows and containers."""
        out: list[dict[str, Any]] = []

        def walk(items: Iterable[dict[str, Any]]) -> None:
            for item in items:
                out.append(item)
                walk(item.get("components") or [])
                if isinstance(item.get("accessory"), dict):
                    walk([item["accessory"]])

        walk(self.components)
        return out

    def buttons(self) -> list[dict[str, Any]]:
        return [c for c in self.all_components() if c.get("type") == 2]

    def component(self, custom_id: str) -> dict[str, Any] | None:
        return next((c for c in self.all_components() if c.get("custom_id") == custom_id), None)

    def remember_components(self) -> None:
        """Keep the components shown now (a client that has not refreshed still shows them later)."""
        for item in self.all_components():
            if item.get("custom_id") and item not in self.shown_components:
                self.shown_components.append(dict(item))

    def payload(self, *, gateway_member: dict[str, Any] | None = None, depth: int = 0) -> dict[str, Any]:
        """The message object; ``gateway_member`` makes it a MESSAGE_CREATE (``guild_id``, ``member``)."""
        out: dict[str, Any] = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "author": self.author.payload(),
            "content": self.content,
            "timestamp": iso(self.created_at),
            "edited_timestamp": None if self.edited_at is None else iso(self.edited_at),
            "tts": False,
            "mention_everyone": self.mention_everyone,
            "mentions": [u.payload() for u in self.mentions],
            "mention_roles": [str(r) for r in self.mention_roles],
            "attachments": [dict(a) for a in self.attachments],
            "embeds": [dict(e) for e in self.embeds],
            "reactions": [
                {
                    "count": len(users),
                    "count_details": {"burst": 0, "normal": len(users)},
                    "me": BOT_ID in users,
                    "me_burst": False,
                    "emoji": _emoji_payload(emoji),
                    "burst_colors": [],
                }
                for emoji, users in self.reactions.items()
                if users
            ],
            "pinned": False,
            "type": self.type,
            "flags": self.flags,
            "components": [dict(c) for c in self.components],
        }
        if self.nonce is not None:
            out["nonce"] = self.nonce
        if self.webhook_id is not None:
            out["webhook_id"] = str(self.webhook_id)
            out["application_id"] = str(self.webhook_id)
        if self.reference is not None:
            ref = self.reference
            out["message_reference"] = {
                "type": 0,
                "message_id": str(ref.id),
                "channel_id": str(ref.channel_id),
                "guild_id": _sid(ref.guild_id),
            }
            out["referenced_message"] = None if ref.deleted or depth else ref.payload(depth=depth + 1)
        if self.thread_id is not None:
            out["thread"] = {"id": str(self.thread_id)}  # completed by the fake (it knows the thread)
        if gateway_member is not None and self.guild_id is not None:
            out["guild_id"] = str(self.guild_id)
            out["member"] = gateway_member
        return out


def _emoji_payload(emoji: str) -> dict[str, Any]:
    """``"👍"`` -> ``{"id": None, "name": "👍"}``; ``"name:123"`` (a custom emoji) -> its id and name."""
    name, _, emoji_id = emoji.partition(":")
    return {"id": emoji_id or None, "name": name}


@dataclass
class Interaction:
    """An interaction the fake dispatched, and how the bot answered it."""

    id: int
    token: str
    type: int  # 2 application command, 3 component
    channel_id: int
    guild_id: int | None
    user: User
    data: dict[str, Any]
    payload: dict[str, Any]
    message_id: int | None = None  # component interactions: the message the component is on
    created: float = field(default_factory=time.monotonic)
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # bodies POSTed to /callback, in order
    response_type: int | None = None
    original: Message | None = None
    followups: list[Message] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        return self.response_type is not None

    @property
    def deferred(self) -> bool:
        return self.response_type in (5, 6)


@dataclass
class CommandSync:
    """One bulk overwrite (``PUT .../commands``): what the bot registered and whether it changed anything."""

    guild_id: int | None
    commands: list[dict[str, Any]]
    changed: bool

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.commands]


# -- gateway plumbing --------------------------------------------------------------


class GatewayConnection:
    """One WebSocket connection: what went each way, and the zlib-stream context when asked for."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        *,
        path: str,
        query: dict[str, str],
        compress: bool,
        transport: asyncio.BaseTransport | None = None,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.path = path
        self.query = query
        self.compression = query.get("compress") if compress else None
        self._zlib = zlib.compressobj() if self.compression == "zlib-stream" else None
        self._lock = asyncio.Lock()
        self.session: GatewaySession | None = None
        self.cursor = 0  # how many frames of the session's log this connection has written
        self.sent: list[dict[str, Any]] = []  # every frame written (HELLO, acks, dispatches)
        self.received: list[dict[str, Any]] = []  # every frame the client sent
        self.close_code: int | None = None  # the first close code: the fake's, or the client's
        self.closed_by_fake = False
        self.pump: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return not self.ws.closed

    @property
    def binary(self) -> bool:
        return self._zlib is not None

    def ops_received(self, op: int) -> list[dict[str, Any]]:
        return [f for f in self.received if f.get("op") == op]

    def dispatches_sent(self, event: str | None = None) -> list[dict[str, Any]]:
        return [f for f in self.sent if f.get("op") == 0 and (event is None or f.get("t") == event)]

    async def close(self, code: int, reason: str) -> None:
        """Close from the fake's side; :attr:`close_code` keeps ``code`` (not the client's reply)."""
        if self.close_code is None:
            self.close_code = code
        self.closed_by_fake = True
        await self.ws.close(code=code, message=reason.encode())

    async def send(self, frame: dict[str, Any]) -> None:
        data = json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
        async with self._lock:
            if self._zlib is not None:
                chunk = self._zlib.compress(data.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                await self.ws.send_bytes(chunk)
            else:
                await self.ws.send_str(data)
            self.sent.append(frame)


@dataclass
class GatewaySession:
    """An identified gateway session: its intents, shard and the log of dispatches (``s`` = index + 1)."""

    id: str
    intents: int
    shard: tuple[int, int] | None
    identify: dict[str, Any]
    log: list[dict[str, Any]] = field(default_factory=list)
    connection: GatewayConnection | None = None
    resumable: bool = True
    resumes: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def seq(self) -> int:
        return len(self.log)

    def has(self, intent: int) -> bool:
        return bool(self.intents & intent)

    def covers(self, guild_id: int | None) -> bool:
        """Whether this session's shard receives events of ``guild_id`` (DMs go to shard 0)."""
        if self.shard is None:
            return True
        shard_id, count = self.shard
        return ((guild_id >> 22) % count if guild_id is not None else 0) == shard_id

    def append(self, event: str, data: dict[str, Any]) -> int:
        seq = len(self.log) + 1
        self.log.append({"op": 0, "t": event, "s": seq, "d": data})
        self.wake.set()
        return seq


@dataclass
class _Bucket:
    limit: int
    per: float
    hash: str
    remaining: int = 0
    reset_at: float = 0.0

    def refresh(self, now: float) -> None:
        if now >= self.reset_at:
            self.remaining = self.limit
            self.reset_at = now + self.per

    def headers(self, now: float) -> dict[str, str]:
        reset_after = max(0.0, self.reset_at - now)
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": f"{self.reset_at:.3f}",
            "X-RateLimit-Reset-After": f"{math.ceil(reset_after * 1000) / 1000:.3f}",
            "X-RateLimit-Bucket": self.hash,
        }


@dataclass
class Request:
    """A parsed REST request as a route handler sees it."""

    name: str
    path: dict[str, str]
    query: dict[str, str]
    body: Any
    uploads: list[Upload]

    def snowflake(self, key: str, unknown: int = 0) -> int:
        """Path parameter ``key`` as an id; a malformed one is a 404 with ``unknown`` (or a form error)."""
        value = self.path[key]
        if not value.isdigit():
            if unknown:
                raise ApiError(404, unknown)
            raise form_error(key, "NUMBER_TYPE_COERCE", f'Value "{value}" is not snowflake.')
        return int(value)

    @property
    def json(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if isinstance(self.body, dict):
            out.update(self.body)
        elif self.body is not None:
            out["body"] = self.body
        out.update(self.query)
        out.update({k: int(v) if v.isdigit() else v for k, v in self.path.items()})
        if self.uploads:
            out["files"] = [{"filename": u.filename, "size": len(u.data)} for u in self.uploads]
        return out


Handler = Callable[[Any, Request], Awaitable[Any]]


def route(method: str, path: str, *, auth: bool = True) -> Callable[[Handler], Handler]:
    """Mark a :class:`FakeDiscord` coroutine as the handler of ``method path`` (discord.py's template)."""

    def mark(fn: Handler) -> Handler:
        fn._discord_route = (method, path, auth)  # type: ignore[attr-defined]
        return fn

    return mark


_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")
_COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")


# -- the fake ------------------------------------------------------------------------


class FakeDiscord(PlatformServer):
    """Discord's REST API, gateway and CDN on one loopback port (see the module docstring)."""

    def __init__(
        self,
        *,
        token: str = TOKEN,
        bot_name: str = "ccbridge",
        heartbeat_interval: float = 41.25,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.token = token
        self.heartbeat_interval = heartbeat_interval  # seconds; sent in HELLO as milliseconds
        self.ids = Snowflakes()
        self.bot = User(BOT_ID, bot_name, bot=True)
        self.owner = User(self.ids.next(), "owner")  # the application's owner
        self.users: dict[int, User] = {self.bot.id: self.bot, self.owner.id: self.owner}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, list[Message]] = {}  # channel id -> messages, oldest first
        self.interactions: dict[int, Interaction] = {}
        self.typing: list[tuple[int, float]] = []  # (channel id, time.monotonic())
        self.commands: dict[int | None, list[dict[str, Any]]] = {}  # guild id (None: global) -> registered
        self.command_syncs: list[CommandSync] = []
        self.hosted: dict[int, tuple[str, bytes, str]] = {}  # attachment id -> (filename, data, content type)
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: list[GatewayConnection] = []
        self.heartbeats = 0
        self.presence_updates: list[dict[str, Any]] = []
        # Knobs a test may turn.
        self.enabled_privileged_intents = Intents.PRIVILEGED  # what the developer portal allows
        self.transport_compression = True  # honour ?compress=zlib-stream
        self.require_registered_commands = True  # slash_command() only for synced commands
        self.interaction_response_window = 3.0  # seconds to send the first callback
        self.interaction_token_ttl = 15 * 60.0  # seconds a followup token lives
        self.echo_bot_messages = True  # dispatch MESSAGE_CREATE/UPDATE for the bot's own messages
        self.default_rate_limit: tuple[int, float] = (50, 1.0)  # per bucket: requests per seconds
        self.file_size_limit = DEFAULT_FILE_LIMIT
        self._rate_limits: dict[str, tuple[int, float]] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._gateway_open = asyncio.Event()
        self._gateway_open.set()
        self._dms: dict[int, int] = {}  # user id -> DM channel id
        self._default_guild: int | None = None
        self._command_ids: dict[tuple[int | None, str, int], int] = {}

    # -- lifecycle and pointing discord.py at the fake ---------------------------------
    @property
    def api_url(self) -> str:
        """What ``discord.http.Route.BASE`` must be."""
        return f"{self.url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` must be (a ``yarl.URL`` of it)."""
        return f"{self.ws_url}{GATEWAY_PATH}"

    @property
    def resume_url(self) -> str:
        """READY's ``resume_gateway_url``: where discord.py reconnects to resume."""
        return f"{self.ws_url}{RESUME_PATH}"

    def patch_discord(self, monkeypatch: Any) -> None:
        """Point discord.py at the fake for one test (``monkeypatch`` undoes it)."""
        import discord.gateway
        import discord.http
        import yarl

        monkeypatch.setattr(discord.http.Route, "BASE", self.api_url)
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(self.gateway_url))

    @contextlib.contextmanager
    def pointed_at(self) -> Iterator[None]:
        """``with fake.pointed_at():`` discord.py talks to the fake inside, to Discord again after."""
        import discord.gateway
        import discord.http
        import yarl

        base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_url
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE = base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway

    async def on_stop(self) -> None:
        self._gateway_open.set()
        for conn in list(self.connections):
            if conn.open:
                await conn.close(1001, "server shutting down")

    # -- scripting: the guilds, people and files a test sets up -----------------------
    def add_user(self, username: str, *, bot: bool = False, id: int | None = None) -> User:
        user = User(id or self.ids.next(), username, bot=bot, global_name=username.title())
        self.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str = "Test Guild",
        *,
        text_channels: Sequence[str] = ("general",),
        forum_channels: Sequence[str] = (),
        roles: Sequence[str] = (),
        bot_roles: Sequence[str] = (),
        owner: User | None = None,
    ) -> Guild:
        """A guild the bot is in, with an @everyone role, the named roles and channels and the bot as member."""
        guild_id = self.ids.next()
        guild = Guild(guild_id, name, (owner or self.owner).id)
        guild.roles[guild_id] = Role(guild_id, guild_id, "@everyone", permissions=Perm.MEMBER_DEFAULT)
        self.guilds[guild_id] = guild
        self._default_guild = self._default_guild or guild_id
        for role_name in roles:
            self.add_role(role_name, guild=guild)
        guild.members[self.bot.id] = Member(self.bot, guild_id, [guild.role(r).id for r in bot_roles])
        if owner is not None or guild.owner_id == self.owner.id:
            guild.members.setdefault(guild.owner_id, Member(self.users[guild.owner_id], guild_id))
        for channel_name in text_channels:
            self._add_channel(self._guild_channel(guild, channel_name, ChannelType.TEXT))
        for channel_name in forum_channels:
            self._add_channel(self._guild_channel(guild, channel_name, ChannelType.FORUM))
        self._emit_guild_event("GUILD_CREATE", guild)  # a guild joined while connected
        return guild

    def add_channel(
        self, name: str, *, guild: Guild | None = None, type: int = ChannelType.TEXT, topic: str | None = None
    ) -> Channel:
        guild = guild or self.default_guild
        channel = self._guild_channel(guild, name, type, topic=topic)
        self._add_channel(channel)
        self._emit("CHANNEL_CREATE", channel.payload(), guild_id=guild.id, intent=Intents.GUILDS)
        return channel

    def _guild_channel(self, guild: Guild, name: str, type: int, *, topic: str | None = None) -> Channel:
        return Channel(self.ids.next(), type, name, guild_id=guild.id, position=len(guild.channels), topic=topic)

    def add_thread(
        self,
        name: str,
        parent: Channel,
        *,
        owner: User | None = None,
        private: bool = False,
        archived: bool = False,
        starter: Message | None = None,
        announce: bool = False,
    ) -> Channel:
        """A thread that already exists (it shows in GUILD_CREATE's ``threads`` when active).

        With ``starter`` it was started from that message of ``parent`` (it has the message's id, and
        starting another thread from the message is error 160004). With ``announce`` it was just
        made by ``owner`` (a forum post, say): THREAD_CREATE is dispatched; otherwise nothing is.
        """
        kind = ChannelType.PRIVATE_THREAD if private else ChannelType.PUBLIC_THREAD
        thread_id = starter.id if starter is not None else self.ids.next()
        thread = Channel(thread_id, kind, name, guild_id=parent.guild_id, parent_id=parent.id, archived=archived)
        thread.owner_id = (owner or self.owner).id
        if starter is not None:
            if starter.thread_id is not None or starter.channel_id != parent.id:
                raise AssertionError("the starter must be a message of the parent without a thread")
            thread.starter_message_id = starter.id
            starter.thread_id = thread.id
        self._add_channel(thread)
        if announce:
            data = {**thread.payload(), "newly_created": True}
            self._emit("THREAD_CREATE", data, guild_id=thread.guild_id, intent=Intents.GUILDS)
        return thread

    def add_role(self, name: str, *, guild: Guild | None = None, permissions: int = 0) -> Role:
        guild = guild or self.default_guild
        role = Role(self.ids.next(), guild.id, name, permissions=permissions, position=len(guild.roles))
        guild.roles[role.id] = role
        return role

    def add_member(
        self, user: User | str, *, roles: Sequence[Role | str | int] = (), guild: Guild | None = None
    ) -> Member:
        """Make ``user`` (a name creates the user) a member of ``guild`` (default: the first) with ``roles``."""
        guild = guild or self.default_guild
        person = self.add_user(user) if isinstance(user, str) else user
        self.users.setdefault(person.id, person)
        member = Member(person, guild.id, [self._role_id(guild, r) for r in roles])
        guild.members[person.id] = member
        self._emit(
            "GUILD_MEMBER_ADD", {**member.payload(), "guild_id": str(guild.id)}, guild_id=guild.id,
            intent=Intents.GUILD_MEMBERS,
        )  # fmt: skip
        return member

    def dm_channel(self, user: User) -> Channel:
        """The DM channel between the bot and ``user`` (made on first use)."""
        if user.id not in self._dms:
            channel = Channel(self.ids.next(), ChannelType.DM, recipients=[user])
            self._add_channel(channel)
            self._dms[user.id] = channel.id
        return self.channels[self._dms[user.id]]

    def host_file(
        self, name: str, data: bytes, content_type: str | None = None, *, channel_id: int = 0
    ) -> dict[str, Any]:
        """Serve ``data`` from the fake's CDN; returns the attachment object a message would carry."""
        attachment_id = self.ids.next()
        ctype = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        self.hosted[attachment_id] = (name, data, ctype)
        return self._attachment_payload(attachment_id, channel_id, name, len(data), ctype)

    @property
    def default_guild(self) -> Guild:
        if self._default_guild is None:
            raise AssertionError("add_guild() first")
        return self.guilds[self._default_guild]

    # -- scripting: what people do (dispatched over the gateway) ----------------------
    async def user_message(
        self,
        channel: Channel | int,
        author: User | Member,
        content: str = "",
        *,
        mentions: Sequence[User | Member] = (),
        role_mentions: Sequence[Role] = (),
        reference: Message | int | None = None,
        ping_reply: bool = True,
        attachments: Sequence[dict[str, Any] | tuple[str, bytes]] = (),
        embeds: Sequence[dict[str, Any]] = (),
    ) -> Message:
        """A person posts in ``channel``: MESSAGE_CREATE (guild ones carry ``guild_id`` and ``member``).

        Mentions are what Discord derives from the text (``<@id>``, ``<@&id>``, ``@everyone``);
        users in ``mentions`` (roles in ``role_mentions``) missing from it are put in front, as
        if typed. A reply to ``reference`` mentions its author unless ``ping_reply`` is off.
        ``attachments`` are :meth:`host_file` results or ``(filename, bytes)`` to host.
        """
        chan = self._channel_of(channel)
        user = author.user if isinstance(author, Member) else author
        if chan.guild_id is not None and user.id not in self.guilds[chan.guild_id].members:
            raise AssertionError(f"{user.username} is not a member of the guild: add_member() first")
        prefix = [u.mention for u in (m.user if isinstance(m, Member) else m for m in mentions)]
        prefix += [r.mention for r in role_mentions]
        missing = [tag for tag in prefix if tag not in content]
        text = " ".join([*missing, content]) if missing else content
        replied = self._message_of(reference) if reference is not None else None
        files = [self.host_file(*a, channel_id=chan.id) if isinstance(a, tuple) else a for a in attachments]
        message = Message(
            self.ids.next(),
            chan.id,
            user,
            text,
            guild_id=chan.guild_id,
            type=19 if replied else 0,
            embeds=list(embeds),
            attachments=files,
            reference=replied,
            history=[text],
        )
        self._resolve_mentions(message, chan, extra=[replied.author] if replied and ping_reply else [])
        self._store(message)
        await self._deliver(self._emit_message("MESSAGE_CREATE", message))
        return message

    async def redeliver(self, message: Message | int) -> None:
        """Dispatch a person's MESSAGE_CREATE again (a duplicate delivery, as after a replay); returns once written."""
        msg = self._message_of(message)
        await self._deliver(self._emit_message("MESSAGE_CREATE", msg))

    async def user_reaction(self, message: Message | int, user: User | Member, emoji: str) -> None:
        """A person reacts to ``message``: MESSAGE_REACTION_ADD."""
        msg = self._message_of(message)
        person = user.user if isinstance(user, Member) else user
        msg.reactions.setdefault(emoji, set()).add(person.id)
        data: dict[str, Any] = {
            "user_id": str(person.id),
            "channel_id": str(msg.channel_id),
            "message_id": str(msg.id),
            "message_author_id": str(msg.author.id),
            "emoji": _emoji_payload(emoji),
            "burst": False,
            "type": 0,
        }
        intent = Intents.DIRECT_MESSAGE_REACTIONS
        if msg.guild_id is not None:
            data["guild_id"] = str(msg.guild_id)
            data["member"] = self.guilds[msg.guild_id].members[person.id].payload()
            intent = Intents.GUILD_MESSAGE_REACTIONS
        await self._deliver(self._emit("MESSAGE_REACTION_ADD", data, guild_id=msg.guild_id, intent=intent))

    async def slash_command(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user: User | Member,
        channel: Channel | int,
    ) -> Interaction:
        """A person runs ``/name`` (``"group sub"`` for subcommands): INTERACTION_CREATE type 2.

        The command must have been synced (guild commands first, then global), unless
        :attr:`require_registered_commands` is off; option types come from the synced
        definition (user, channel and role options get ``resolved`` data).
        """
        chan = self._channel_of(channel)
        person = user.user if isinstance(user, Member) else user
        top, *path = name.split()
        command, scope = self._registered(top, chan.guild_id)
        if command is None and self.require_registered_commands:
            raise AssertionError(f"/{top} is not registered (sync the command tree first)")
        definition = command or {"name": top, "options": []}
        resolved: dict[str, dict[str, Any]] = {}
        inner = self._build_options(definition, path, options or {}, chan, resolved)
        data: dict[str, Any] = {
            "id": str(self._command_id(scope, top, 1)) if command is None else command["id"],
            "name": top,
            "type": 1,
            "options": inner,
        }
        if scope is not None:
            data["guild_id"] = str(scope)
        if resolved:
            data["resolved"] = resolved
        return await self._interact(2, data, person, chan)

    async def press(
        self,
        custom_id: str,
        *,
        user: User | Member,
        message: Message | int | None = None,
        values: Sequence[str] | None = None,
        stale: bool = False,
    ) -> Interaction:
        """A person presses the button (or picks ``values`` in the select) ``custom_id``: INTERACTION_CREATE type 3.

        ``message`` defaults to the newest bot message carrying that component; a missing
        or disabled component is refused, as the Discord client would not let anyone click it.
        With ``stale`` the component may be one the message showed earlier (a client that
        has not refreshed yet still shows it); the interaction carries the message as it is now.
        """
        msg = self._message_of(message) if message is not None else self._message_with(custom_id)
        component = msg.component(custom_id)
        if component is None and stale:
            component = next((c for c in msg.shown_components if c.get("custom_id") == custom_id), None)
        if component is None:
            raise AssertionError(f"message {msg.id} has no component {custom_id!r}")
        if component.get("disabled"):
            raise AssertionError(f"component {custom_id!r} is disabled")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component.get("type", 2)}
        if component.get("type", 2) != 2:
            data["values"] = list(values or [])
        person = user.user if isinstance(user, Member) else user
        return await self._interact(3, data, person, self.channels[msg.channel_id], message=msg)

    async def wait_for_interaction_response(self, interaction: Interaction, timeout: float = 10.0) -> Interaction:
        await self.wait_until(lambda: interaction.acknowledged, timeout, f"a response to interaction {interaction.id}")
        return interaction

    # -- scripting: breaking the connection -------------------------------------------
    async def disconnect(self, code: int | None = 4000, *, session: GatewaySession | None = None) -> None:
        """Close the live gateway connection(s) with ``code`` (4000: resumable), or drop the TCP link (None).

        4007 / 4009 make the session unresumable, like Discord (the client gets op 9 on RESUME).
        """
        for conn in self._live(session):
            if code in (4007, 4009) and conn.session is not None:
                conn.session.resumable = False
            if code is None:
                conn.closed_by_fake = True
                if conn.transport is not None:
                    conn.transport.abort()
            else:
                await conn.close(code, "fake disconnect")
        await self.wait_until(lambda: not self._live(session), 10, "the gateway connection to close")

    async def request_reconnect(self, *, session: GatewaySession | None = None) -> None:
        """Send op 7 RECONNECT: the client closes and resumes."""
        for conn in self._live(session):
            await conn.send({"op": 7, "d": None})

    async def invalidate_session(self, *, resumable: bool = False, session: GatewaySession | None = None) -> None:
        """Send op 9 INVALID_SESSION (discord.py re-identifies after a 5 s pause when not resumable)."""
        for conn in self._live(session):
            if conn.session is not None and not resumable:
                conn.session.resumable = False
            await conn.send({"op": 9, "d": resumable})

    def hold_gateway(self) -> None:
        """New gateway connections wait for HELLO until :meth:`release_gateway` (to script 'while away')."""
        self._gateway_open.clear()

    def release_gateway(self) -> None:
        self._gateway_open.set()

    # -- state a test reads ------------------------------------------------------------
    def channel_messages(self, channel: Channel | int, *, include_deleted: bool = False) -> list[Message]:
        cid = channel.id if isinstance(channel, Channel) else channel
        return [m for m in self.messages.get(cid, []) if include_deleted or not m.deleted]

    def bot_messages(self, channel: Channel | int | None = None) -> list[Message]:
        if channel is not None:
            return [m for m in self.channel_messages(channel) if m.from_bot]
        return [m for ms in self.messages.values() for m in ms if m.from_bot and not m.deleted]

    def message(self, message_id: int) -> Message:
        return self._message_of(message_id)

    @property
    def threads(self) -> list[Channel]:
        return [c for c in self.channels.values() if c.is_thread]

    def typing_in(self, channel: Channel | int) -> int:
        cid = channel.id if isinstance(channel, Channel) else channel
        return sum(1 for c, _ in self.typing if c == cid)

    @property
    def session(self) -> GatewaySession:
        """The newest gateway session."""
        if not self.sessions:
            raise AssertionError("no client has identified")
        return list(self.sessions.values())[-1]

    def route_names(self) -> list[str]:
        return sorted(f"{m} {p}" for m, p, _, _ in self._handlers())

    def set_rate_limit(self, name: str, limit: int, per: float) -> None:
        """Bucket size of route ``name``: ``limit`` requests per ``per`` seconds (per channel / guild / webhook)."""
        self._rate_limits[name] = (limit, per)

    async def wait_for_event(self, event: str, *, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``count`` dispatches named ``event`` were written to clients; returns them."""

        def sent() -> list[dict[str, Any]] | None:
            found = [f for c in self.connections for f in c.dispatches_sent(event)]
            return found if len(found) >= count else None

        return await self.wait_until(sent, timeout, f"{count} {event} dispatch(es)")

    # -- HTTP plumbing -----------------------------------------------------------------
    def setup_routes(self, app: web.Application) -> None:
        # Literal segments (@me, @original) first: aiohttp matches in registration order.
        for method, path, auth, handler in sorted(self._handlers(), key=lambda h: h[1].count("{")):
            app.router.add_route(method, API_PREFIX + path, self._endpoint(f"{method} {path}", handler, auth))
        app.router.add_get(GATEWAY_PATH, self._gateway)
        app.router.add_get(RESUME_PATH, self._gateway)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._cdn)
        app.router.add_get("/media/attachments/{channel_id}/{attachment_id}/{filename}", self._cdn)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._unknown_route)

    def _handlers(self) -> list[tuple[str, str, bool, Callable[[Request], Awaitable[Any]]]]:
        out = []
        for attr in dir(type(self)):
            fn = getattr(type(self), attr)
            spec = getattr(fn, "_discord_route", None)
            if spec is not None:
                method, path, auth = spec
                out.append((method, path, auth, getattr(self, attr)))
        return out

    def _endpoint(
        self, name: str, handler: Callable[[Request], Awaitable[Any]], auth: bool
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(http: web.Request) -> web.StreamResponse:
            try:
                req = await self._parse(name, http)
            except ApiError as exc:
                return _json(exc.body(), status=exc.status)
            call = DiscordCall(name, req.params())
            self.calls.append(call)
            response = await self._answer(call, req, http, handler, auth)
            call.status = response.status
            self._poke()
            return response

        return serve

    async def _parse(self, name: str, http: web.Request) -> Request:
        body: Any = None
        uploads: list[Upload] = []
        if http.content_type.startswith("multipart/"):
            reader = await http.multipart()
            async for part in reader:
                if not isinstance(part, aiohttp.BodyPartReader):  # a nested multipart: Discord ignores it
                    continue
                if part.name == "payload_json":
                    body = _loads(await part.text())
                elif part.name and part.name.startswith("files["):
                    filename = part.filename or "file"
                    index = int(part.name[6:-1]) if part.name[6:-1].isdigit() else len(uploads)
                    ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
                    uploads.append(Upload(index, filename, bytes(await part.read()), ctype))
        elif http.can_read_body:
            raw = await http.read()
            body = _loads(raw.decode()) if raw else None
        return Request(name, dict(http.match_info), dict(http.query), body, uploads)

    async def _answer(
        self,
        call: DiscordCall,
        req: Request,
        http: web.Request,
        handler: Callable[[Request], Awaitable[Any]],
        auth: bool,
    ) -> web.Response:
        if auth and http.headers.get("Authorization") != f"Bot {self.token}":
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        now = time.time()
        bucket = self._bucket(req)
        bucket.refresh(now)
        failure = self.take_failure(call.method, call.params)
        if failure is not None:
            return self._failure_response(failure, bucket, now)
        if bucket.remaining <= 0:  # the client ignored the headers: Discord answers 429
            retry = bucket.reset_at - now
            return self._rate_limited(Failure(429, retry_after=retry), bucket, now)
        bucket.remaining -= 1
        try:
            result = await handler(req)
        except ApiError as exc:
            return _json(exc.body(), status=exc.status, headers=bucket.headers(now))
        if result is None:
            return web.Response(status=204, headers=bucket.headers(now))
        return _json(result, headers=bucket.headers(now))

    def _bucket(self, req: Request) -> _Bucket:
        major = "+".join(
            req.path[k] for k in ("channel_id", "guild_id", "webhook_id", "webhook_token") if k in req.path
        )
        limit, per = self._rate_limits.get(req.name, self.default_rate_limit)
        key = f"{req.name}:{major}"
        bucket = self._buckets.get(key)
        if bucket is None or (bucket.limit, bucket.per) != (limit, per):
            digest = hashlib.sha1(req.name.encode()).hexdigest()[:16]
            bucket = self._buckets[key] = _Bucket(limit, per, digest)
        return bucket

    def _failure_response(self, failure: Failure, bucket: _Bucket, now: float) -> web.Response:
        if failure.status == 429:
            return self._rate_limited(failure, bucket, now)
        code = int(failure.code or 0)
        description = failure.description
        if description == "injected failure" and code in ERROR_MESSAGES:
            description = ERROR_MESSAGES[code]
        body: dict[str, Any] = {"message": description, "code": code}
        if failure.extra.get("errors"):
            body["errors"] = failure.extra["errors"]
        headers = {**bucket.headers(now), **failure.extra.get("headers", {})}
        return _json(body, status=failure.status, headers=headers)

    def _rate_limited(self, failure: Failure, bucket: _Bucket, now: float) -> web.Response:
        retry_after = 1.0 if failure.retry_after is None else max(0.0, failure.retry_after)
        if failure.extra.get("cloudflare"):  # a Cloudflare ban: an HTML page, no Via header
            return web.Response(status=429, text="<html>You are being rate limited.</html>", content_type="text/html")
        is_global = bool(failure.extra.get("global"))
        body: dict[str, Any] = {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": is_global,
        }
        if is_global:
            body["code"] = 0
        headers = {
            **bucket.headers(now),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": f"{retry_after:.3f}",
            "X-RateLimit-Reset": f"{now + retry_after:.3f}",
            "X-RateLimit-Scope": str(failure.extra.get("scope", "global" if is_global else "user")),
            "Retry-After": str(math.ceil(retry_after)),
            "Via": "1.1 google",
            **failure.extra.get("headers", {}),
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        return _json(body, status=429, headers=headers)

    async def _unknown_route(self, http: web.Request) -> web.Response:
        self.calls.append(DiscordCall(f"{http.method} {http.path.removeprefix(API_PREFIX)}", dict(http.query), 404))
        self._poke()
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    # -- REST: users, application, gateway ---------------------------------------------
    @route("GET", "/users/@me")
    async def _get_me(self, req: Request) -> Any:
        return {**self.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0, "locale": "en-US"}

    @route("GET", "/users/{user_id}")
    async def _get_user(self, req: Request) -> Any:
        user = self.users.get(req.snowflake("user_id", 10013))
        if user is None:
            raise ApiError(404, 10013)
        return user.payload()

    @route("POST", "/users/@me/channels")
    async def _open_dm(self, req: Request) -> Any:
        user = self.users.get(int(req.json.get("recipient_id", 0)))
        if user is None:
            raise ApiError(
                400, 50035, errors={"recipient_id": {"_errors": [{"code": "USER_UNKNOWN", "message": "Unknown user"}]}}
            )
        return self.dm_channel(user).payload()

    @route("GET", "/oauth2/applications/@me")
    async def _application(self, req: Request) -> Any:
        return {
            "id": str(APP_ID),
            "name": self.bot.username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "hook": True,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": hashlib.sha256(self.token.encode()).hexdigest(),
            "owner": self.owner.payload(),
            "team": None,
            "flags": self._application_flags(),
            "rpc_origins": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "tags": [],
            "integration_types_config": {"0": {}},
            "approximate_guild_count": len(self.guilds),
            "bot": self.bot.payload(),
        }

    @route("GET", "/gateway", auth=False)
    async def _get_gateway(self, req: Request) -> Any:
        return {"url": self.gateway_url}

    @route("GET", "/gateway/bot")
    async def _get_gateway_bot(self, req: Request) -> Any:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        return {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}

    # -- REST: channels and messages -------------------------------------------------
    @route("GET", "/channels/{channel_id}")
    async def _get_channel(self, req: Request) -> Any:
        return self._channel(req).payload()

    @route("GET", "/channels/{channel_id}/messages")
    async def _history(self, req: Request) -> Any:
        channel = self._channel(req)
        limit = int(req.query.get("limit", 50))
        found = self.channel_messages(channel)
        if "before" in req.query:
            found = [m for m in found if m.id < int(req.query["before"])]
        if "after" in req.query:
            found = [m for m in found if m.id > int(req.query["after"])]
        return [self._rest_message(m) for m in reversed(found[-limit:])]

    @route("POST", "/channels/{channel_id}/messages")
    async def _send(self, req: Request) -> Any:
        channel = self._channel(req)
        if channel.type in (ChannelType.FORUM, ChannelType.CATEGORY):
            raise ApiError(400, 50024)
        body = req.json
        self._validate(body, req.uploads)
        ref = body.get("message_reference") or None
        replied = None
        if ref and ref.get("message_id"):
            replied = self._find_message(int(ref["message_id"]))
            if replied is None and ref.get("fail_if_not_exists", True):
                raise form_error("message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
        message = self._bot_message(channel, body, req.uploads, type=19 if replied else 0)
        message.reference = replied
        if replied is not None and (body.get("allowed_mentions") or {}).get("replied_user", True):
            message.mentions.append(replied.author)
        self._store(message)
        self._echo("MESSAGE_CREATE", message)
        return self._rest_message(message)

    @route("GET", "/channels/{channel_id}/messages/{message_id}")
    async def _get_message(self, req: Request) -> Any:
        return self._rest_message(self._message_in(req))

    @route("PATCH", "/channels/{channel_id}/messages/{message_id}")
    async def _edit(self, req: Request) -> Any:
        message = self._message_in(req)
        if not message.from_bot:
            raise ApiError(403, 50005)
        self._apply_edit(message, req.json, req.uploads)
        return self._rest_message(message)

    @route("DELETE", "/channels/{channel_id}/messages/{message_id}")
    async def _delete(self, req: Request) -> Any:
        message = self._message_in(req)
        self._delete_message(message)
        return None

    @route("POST", "/channels/{channel_id}/typing")
    async def _typing(self, req: Request) -> Any:
        channel = self._channel(req)
        self.typing.append((channel.id, time.monotonic()))
        return None

    @route("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me")
    async def _react(self, req: Request) -> Any:
        message = self._message_in(req)
        message.reactions.setdefault(req.path["emoji"], set()).add(BOT_ID)
        return None

    @route("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me")
    async def _unreact(self, req: Request) -> Any:
        message = self._message_in(req)
        message.reactions.get(req.path["emoji"], set()).discard(BOT_ID)
        return None

    @route("PUT", "/channels/{channel_id}/thread-members/@me")
    async def _join_thread(self, req: Request) -> Any:
        if not self._channel(req).is_thread:
            raise ApiError(400, 50024)
        return None

    # -- REST: threads -----------------------------------------------------------------
    @route("POST", "/channels/{channel_id}/messages/{message_id}/threads")
    async def _thread_from_message(self, req: Request) -> Any:
        channel = self._channel(req)
        message = self._message_in(req)
        if channel.is_thread or channel.is_dm or channel.type == ChannelType.FORUM:
            raise ApiError(400, 50024)
        if message.thread_id is not None:
            raise ApiError(400, 160004)
        name = self._thread_name(req.json)
        thread = Channel(
            message.id,  # a thread started from a message shares the message's id
            ChannelType.PUBLIC_THREAD,
            name,
            guild_id=channel.guild_id,
            parent_id=channel.id,
            owner_id=BOT_ID,
            starter_message_id=message.id,
            auto_archive_duration=int(req.json.get("auto_archive_duration") or 1440),
        )
        self._add_channel(thread)
        message.thread_id = thread.id
        self._emit_thread_create(thread)
        return thread.payload()

    @route("POST", "/channels/{channel_id}/threads")
    async def _thread_without_message(self, req: Request) -> Any:
        channel = self._channel(req)
        body = req.json
        name = self._thread_name(body)
        if channel.type == ChannelType.FORUM:
            post = body.get("message")
            if not isinstance(post, dict):
                raise form_error("message", "BASE_TYPE_REQUIRED", "This field is required")
            self._validate(post, req.uploads)
            thread = Channel(
                self.ids.next(), ChannelType.PUBLIC_THREAD, name, guild_id=channel.guild_id, parent_id=channel.id,
                owner_id=BOT_ID,
            )  # fmt: skip
            thread.starter_message_id = thread.id
            self._add_channel(thread)
            self._emit_thread_create(thread)
            starter = self._bot_message(thread, post, req.uploads, id=thread.id)
            self._store(starter)
            self._echo("MESSAGE_CREATE", starter)
            return {**thread.payload(), "message": self._rest_message(starter)}
        if channel.type != ChannelType.TEXT:
            raise ApiError(400, 50024)
        kind = int(body.get("type") or ChannelType.PRIVATE_THREAD)
        if kind not in ChannelType.THREADS:
            raise form_error("type", "BASE_TYPE_CHOICES", f"Value must be one of {ChannelType.THREADS}.")
        thread = Channel(
            self.ids.next(), kind, name, guild_id=channel.guild_id, parent_id=channel.id, owner_id=BOT_ID,
            auto_archive_duration=int(body.get("auto_archive_duration") or 1440),
        )  # fmt: skip
        self._add_channel(thread)
        self._emit_thread_create(thread)
        return thread.payload()

    # -- REST: guilds ------------------------------------------------------------------
    @route("GET", "/guilds/{guild_id}")
    async def _get_guild(self, req: Request) -> Any:
        guild = self._guild(req)
        out = guild.rest_payload()
        if req.query.get("with_counts") in ("1", "true", "True"):
            out.update(approximate_member_count=len(guild.members), approximate_presence_count=0)
        return out

    @route("GET", "/guilds/{guild_id}/channels")
    async def _guild_channels(self, req: Request) -> Any:
        return [c.payload() for c in self._guild(req).channels.values() if not c.is_thread]

    @route("GET", "/guilds/{guild_id}/roles")
    async def _guild_roles(self, req: Request) -> Any:
        return [r.payload() for r in self._guild(req).roles.values()]

    @route("GET", "/guilds/{guild_id}/members")
    async def _guild_members(self, req: Request) -> Any:
        members = sorted(self._guild(req).members.values(), key=lambda m: m.id)
        after = int(req.query.get("after", 0))
        limit = int(req.query.get("limit", 1))
        return [m.payload() for m in members if m.id > after][:limit]

    @route("GET", "/guilds/{guild_id}/members/{user_id}")
    async def _guild_member(self, req: Request) -> Any:
        member = self._guild(req).members.get(req.snowflake("user_id", 10013))
        if member is None:
            raise ApiError(404, 10007)
        return member.payload()

    # -- REST: application commands ----------------------------------------------------
    @route("GET", "/applications/{application_id}/commands")
    async def _global_commands(self, req: Request) -> Any:
        self._app(req)
        return self.commands.get(None, [])

    @route("PUT", "/applications/{application_id}/commands")
    async def _sync_global(self, req: Request) -> Any:
        self._app(req)
        return self._overwrite_commands(None, req.body)

    @route("POST", "/applications/{application_id}/commands")
    async def _upsert_global(self, req: Request) -> Any:
        self._app(req)
        return self._upsert_command(None, req.json)

    @route("GET", "/applications/{application_id}/guilds/{guild_id}/commands")
    async def _guild_commands(self, req: Request) -> Any:
        self._app(req)
        return self.commands.get(self._guild(req).id, [])

    @route("PUT", "/applications/{application_id}/guilds/{guild_id}/commands")
    async def _sync_guild(self, req: Request) -> Any:
        self._app(req)
        return self._overwrite_commands(self._guild(req).id, req.body)

    @route("POST", "/applications/{application_id}/guilds/{guild_id}/commands")
    async def _upsert_guild(self, req: Request) -> Any:
        self._app(req)
        return self._upsert_command(self._guild(req).id, req.json)

    # -- REST: interactions and their webhooks -----------------------------------------
    @route("POST", "/interactions/{webhook_id}/{webhook_token}/callback", auth=False)
    async def _callback(self, req: Request) -> Any:
        it = self.interactions.get(req.snowflake("webhook_id", 10062))
        if it is None or it.token != req.path["webhook_token"]:
            raise ApiError(404, 10062)
        if it.acknowledged:
            raise ApiError(400, 40060)
        if time.monotonic() - it.created > self.interaction_response_window:
            raise ApiError(404, 10062)
        body = req.json
        kind = int(body.get("type", 0))
        data = body.get("data") or {}
        if kind in (6, 7) and it.type != 3:
            raise form_error("type", "INTERACTION_CALLBACK_TYPE_INVALID", "Invalid interaction callback type")
        if kind not in (4, 5, 6, 7, 8, 9):
            raise form_error("type", "BASE_TYPE_CHOICES", "Value must be one of (4, 5, 6, 7, 8, 9).")
        channel = self.channels[it.channel_id]
        message: Message | None = None
        if kind == 4:
            self._validate(data, req.uploads)
            message = self._interaction_message(it, channel, data, req.uploads)
        elif kind == 5:
            flags = MessageFlag.LOADING | (int(data.get("flags") or 0) & MessageFlag.EPHEMERAL)
            message = self._interaction_message(it, channel, {"flags": flags}, [], validate=False)
        elif kind in (6, 7) and it.message_id is not None:
            message = self._message_of(it.message_id)
            if kind == 7:
                self._apply_edit(message, data, req.uploads)
        it.callbacks.append(body)
        it.response_type = kind
        it.original = message
        self._poke()
        if req.query.get("with_response") not in ("1", "true", "True"):
            return None
        out: dict[str, Any] = {
            "interaction": {
                "id": str(it.id),
                "type": it.type,
                "response_message_id": _sid(message.id if message else None),
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(message and message.ephemeral),
            },
        }
        if message is not None and kind != 6:
            out["resource"] = {"type": kind, "message": self._rest_message(message)}
        return out

    @route("POST", "/webhooks/{webhook_id}/{webhook_token}", auth=False)
    async def _followup(self, req: Request) -> Any:
        it = self._interaction_by_token(req)
        if not it.acknowledged:
            raise ApiError(404, 10015)
        body = req.json
        self._validate(body, req.uploads)
        original = it.original
        if it.response_type == 5 and original is not None and original.loading and not it.followups:
            # Discord: right after a deferred response a followup *is* the edit of the original.
            self._apply_edit(original, {k: v for k, v in body.items() if k != "flags"}, req.uploads)
            original.flags &= ~MessageFlag.LOADING
            message = original
        else:
            message = self._interaction_message(it, self.channels[it.channel_id], body, req.uploads)
        it.followups.append(message)
        self._poke()
        return self._rest_message(message) if req.query.get("wait") in ("1", "true", "True") else None

    @route("GET", "/webhooks/{webhook_id}/{webhook_token}/messages/@original", auth=False)
    async def _get_original(self, req: Request) -> Any:
        return self._rest_message(self._original(req))

    @route("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/@original", auth=False)
    async def _edit_original(self, req: Request) -> Any:
        message = self._original(req)
        self._apply_edit(message, req.json, req.uploads)
        message.flags &= ~MessageFlag.LOADING
        return self._rest_message(message)

    @route("DELETE", "/webhooks/{webhook_id}/{webhook_token}/messages/@original", auth=False)
    async def _delete_original(self, req: Request) -> Any:
        self._delete_message(self._original(req))
        return None

    @route("GET", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}", auth=False)
    async def _get_followup(self, req: Request) -> Any:
        return self._rest_message(self._webhook_message(req))

    @route("PATCH", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}", auth=False)
    async def _edit_followup(self, req: Request) -> Any:
        message = self._webhook_message(req)
        self._apply_edit(message, req.json, req.uploads)
        return self._rest_message(message)

    @route("DELETE", "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}", auth=False)
    async def _delete_followup(self, req: Request) -> Any:
        self._delete_message(self._webhook_message(req))
        return None

    # -- CDN -----------------------------------------------------------------------------
    async def _cdn(self, http: web.Request) -> web.Response:
        info = http.match_info
        params = {"channel_id": int(info["channel_id"]), "attachment_id": int(info["attachment_id"])}
        call = DiscordCall("GET /attachments/{channel_id}/{attachment_id}/{filename}", {**params, **info})
        self.calls.append(call)
        hosted = self.hosted.get(params["attachment_id"]) if info["attachment_id"].isdigit() else None
        if hosted is None or hosted[0] != info["filename"]:
            call.status = 404
            self._poke()
            return web.Response(status=404, text="Not Found")
        call.status = 200
        self._poke()
        return web.Response(body=hosted[1], content_type=hosted[2])

    # -- gateway -----------------------------------------------------------------------
    async def _gateway(self, http: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoclose=True)
        await ws.prepare(http)
        conn = GatewayConnection(
            ws, path=http.path, query=dict(http.query), compress=self.transport_compression, transport=http.transport
        )
        self.connections.append(conn)
        self._poke()
        try:
            if http.query.get("encoding", "json") != "json":
                await conn.close(4002, "Error while decoding payload.")
                return ws
            await self._gateway_open.wait()
            if ws.closed or self.closing:
                return ws
            await conn.send(
                {"op": 10, "s": None, "t": None, "d": {"heartbeat_interval": int(self.heartbeat_interval * 1000)}}
            )
            async for frame in ws:
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    await conn.close(4002, "Error while decoding payload.")
                    break
                try:
                    payload = json.loads(frame.data)
                except ValueError:
                    await conn.close(4002, "Error while decoding payload.")
                    break
                conn.received.append(payload)
                self._poke()
                await self._on_op(conn, payload)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        finally:
            if conn.close_code is None:
                conn.close_code = ws.close_code
            if conn.pump is not None:
                conn.pump.cancel()
            session = conn.session
            if session is not None:
                if session.connection is conn:
                    session.connection = None
                if conn.close_code in (1000, 1001) and not conn.closed_by_fake:
                    session.resumable = False  # a client closing with 1000/1001 ends its session, as on Discord
            self._poke()
        return ws

    async def _on_op(self, conn: GatewayConnection, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == 1:
            self.heartbeats += 1
            await conn.send({"op": 11, "s": None, "t": None, "d": None})
        elif op == 2:
            await self._identify(conn, data or {})
        elif op == 6:
            await self._resume(conn, data or {})
        elif conn.session is None and op in (3, 4, 8):
            await conn.close(4003, "Not authenticated.")
        elif op == 3:
            self.presence_updates.append(data or {})
        elif op == 4:
            pass  # voice state update: the fake has no voice
        elif op == 8:
            self._chunk_members(conn.session, data or {})  # type: ignore[arg-type]
        else:
            await conn.close(4001, "Unknown opcode.")

    async def _identify(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        if conn.session is not None:
            await conn.close(4005, "Already authenticated.")
            return
        if data.get("token") != self.token:
            await conn.close(4004, "Authentication failed.")
            return
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0:
            await conn.close(4013, "Invalid intent(s).")
            return
        if intents & Intents.PRIVILEGED & ~self.enabled_privileged_intents:
            await conn.close(4014, "Disallowed intent(s).")
            return
        shard = data.get("shard")
        session = GatewaySession(
            secrets.token_hex(16), intents, (int(shard[0]), int(shard[1])) if shard else None, dict(data)
        )
        self.sessions[session.id] = session
        self._attach(conn, session, cursor=0)
        guilds = [g for g in self.guilds.values() if session.covers(g.id)]
        ready: dict[str, Any] = {
            "v": 10,
            "user": {**self.bot.payload(), "verified": True, "mfa_enabled": False, "flags": 0},
            "user_settings": {},
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_url,
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "auth": {},
            "application": {"id": str(APP_ID), "flags": self._application_flags()},
            "_trace": ["fake-discord"],
        }
        if session.shard is not None:
            ready["shard"] = list(session.shard)
        session.append("READY", ready)
        if session.has(Intents.GUILDS):
            for guild in guilds:
                session.append("GUILD_CREATE", self._guild_create(guild, session))

    async def _resume(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        seq = data.get("seq")
        usable = session is not None and session.resumable and data.get("token") == self.token
        if not usable or not isinstance(seq, int) or seq > session.seq:  # type: ignore[union-attr]
            await conn.send({"op": 9, "s": None, "t": None, "d": False})
            return
        assert session is not None
        old = session.connection
        if old is not None and old is not conn and old.open:
            await old.close(4000, "session resumed elsewhere")
        session.resumes += 1
        session.append("RESUMED", {"_trace": ["fake-discord"]})  # after every missed dispatch in the log
        self._attach(conn, session, cursor=seq)

    def _attach(self, conn: GatewayConnection, session: GatewaySession, *, cursor: int) -> None:
        conn.session = session
        conn.cursor = cursor
        session.connection = conn
        conn.pump = asyncio.get_running_loop().create_task(self._pump(conn, session))

    async def _pump(self, conn: GatewayConnection, session: GatewaySession) -> None:
        """Write the session's log to the connection from its cursor on (that is what makes a replay)."""
        with contextlib.suppress(ConnectionResetError, aiohttp.ClientConnectionResetError, RuntimeError):
            while conn.open and session.connection is conn:
                while conn.cursor < len(session.log) and conn.open:
                    await conn.send(session.log[conn.cursor])
                    conn.cursor += 1
                    self._poke()
                session.wake.clear()
                await session.wake.wait()

    def _chunk_members(self, session: GatewaySession, data: dict[str, Any]) -> None:
        guild_ids = data.get("guild_id")
        for gid in guild_ids if isinstance(guild_ids, list) else [guild_ids]:
            guild = self.guilds.get(int(gid or 0))
            if guild is None:
                continue
            members = list(guild.members.values())
            wanted = [int(u) for u in data.get("user_ids") or []]
            query = str(data.get("query") or "").lower()
            if wanted:
                members = [m for m in members if m.id in wanted]
            elif query:
                members = [m for m in members if m.user.username.lower().startswith(query)]
            elif not session.has(Intents.GUILD_MEMBERS):
                members = [m for m in members if m.id == BOT_ID]
            limit = int(data.get("limit") or 0)
            if limit:
                members = members[:limit]
            chunk: dict[str, Any] = {
                "guild_id": str(guild.id),
                "members": [m.payload() for m in members],
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [str(u) for u in wanted if u not in guild.members],
            }
            if data.get("nonce"):
                chunk["nonce"] = data["nonce"]
            session.append("GUILD_MEMBERS_CHUNK", chunk)

    def _guild_create(self, guild: Guild, session: GatewaySession) -> dict[str, Any]:
        """Without GUILD_PRESENCES Discord lists only the bot among GUILD_CREATE's members."""
        if session.has(Intents.GUILD_PRESENCES):
            members: Iterable[Member] = guild.members.values()
        else:
            members = [m for m in guild.members.values() if m.id == BOT_ID]
        large = int(session.identify.get("large_threshold") or 250)
        return guild.payload(members, large_threshold=large)

    def _application_flags(self) -> int:
        flags = 0
        if self.enabled_privileged_intents & Intents.GUILD_PRESENCES:
            flags |= 1 << 13  # GATEWAY_PRESENCE_LIMITED
        if self.enabled_privileged_intents & Intents.GUILD_MEMBERS:
            flags |= 1 << 15  # GATEWAY_GUILD_MEMBERS_LIMITED
        if self.enabled_privileged_intents & Intents.MESSAGE_CONTENT:
            flags |= 1 << 19  # GATEWAY_MESSAGE_CONTENT_LIMITED
        return flags

    # -- dispatching ---------------------------------------------------------------------
    def _emit(
        self,
        event: str,
        data: dict[str, Any] | Callable[[GatewaySession], dict[str, Any] | None],
        *,
        guild_id: int | None,
        intent: int | None = None,
    ) -> list[tuple[GatewaySession, int]]:
        """Append a dispatch to every session that would receive it; returns (session, seq) pairs."""
        out = []
        for session in self.sessions.values():
            if not session.resumable or not session.covers(guild_id):
                continue
            if intent is not None and not session.has(intent):
                continue
            payload = data(session) if callable(data) else data
            if payload is not None:
                out.append((session, session.append(event, json.loads(json.dumps(payload)))))
        return out

    async def _deliver(self, targets: list[tuple[GatewaySession, int]], timeout: float = 10.0) -> None:
        """Wait until each dispatch was written to its session's live connection (if it has one)."""

        def done() -> bool:
            return all(s.connection is None or s.connection.cursor >= seq for s, seq in targets)

        await self.wait_until(done, timeout, "the dispatch to be written to the gateway")

    def _emit_guild_event(self, event: str, guild: Guild) -> None:
        self._emit(event, lambda s: self._guild_create(guild, s), guild_id=guild.id, intent=Intents.GUILDS)

    def _emit_thread_create(self, thread: Channel) -> None:
        data = {
            **thread.payload(),
            "newly_created": True,
            "member": {"id": str(thread.id), "user_id": str(BOT_ID), "join_timestamp": iso(time.time()), "flags": 0},
        }
        self._emit("THREAD_CREATE", data, guild_id=thread.guild_id, intent=Intents.GUILDS)

    def _emit_message(self, event: str, message: Message) -> list[tuple[GatewaySession, int]]:
        guild = self.guilds.get(message.guild_id) if message.guild_id is not None else None
        member = guild.members.get(message.author.id) if guild else None
        full = self._rest_message(message, gateway_member=member.payload(with_user=False) if member else None)
        if guild is not None:
            for mention, user in zip(full["mentions"], message.mentions, strict=True):
                if user.id in guild.members:
                    mention["member"] = guild.members[user.id].payload(with_user=False)

        def for_session(session: GatewaySession) -> dict[str, Any]:
            privileged = guild is None or message.from_bot or any(u.id == BOT_ID for u in message.mentions)
            if privileged or session.has(Intents.MESSAGE_CONTENT):
                return full
            return {**full, "content": "", "embeds": [], "attachments": [], "components": []}

        intent = Intents.GUILD_MESSAGES if guild is not None else Intents.DIRECT_MESSAGES
        return self._emit(event, for_session, guild_id=message.guild_id, intent=intent)

    def _echo(self, event: str, message: Message) -> None:
        """The bot's own messages come back over the gateway (ephemeral ones do not)."""
        if self.echo_bot_messages and not message.ephemeral:
            self._emit_message(event, message)

    async def _interact(
        self, kind: int, data: dict[str, Any], user: User, channel: Channel, *, message: Message | None = None
    ) -> Interaction:
        guild = self.guilds.get(channel.guild_id) if channel.guild_id is not None else None
        it = Interaction(
            self.ids.next(),
            "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(48),
            kind,
            channel.id,
            guild.id if guild else None,
            user,
            data,
            {},
            message_id=message.id if message else None,
        )
        payload: dict[str, Any] = {
            "id": str(it.id),
            "application_id": str(APP_ID),
            "type": kind,
            "data": data,
            "token": it.token,
            "version": 1,
            "channel_id": str(channel.id),
            "channel": channel.payload(),
            "locale": "en-US",
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": self.file_size_limit,
            "authorizing_integration_owners": {"0": str(guild.id)} if guild else {"1": str(user.id)},
        }
        if guild is not None:
            member = guild.members.get(user.id)
            if member is None:
                raise AssertionError(f"{user.username} is not a member of the guild: add_member() first")
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": "en-US", "features": []},
                guild_locale="en-US",
                member=member.payload(permissions=guild.permissions_of(member)),
                app_permissions=str(guild.permissions_of(guild.members[BOT_ID])),
                context=0,
            )
        else:
            payload.update(user=user.payload(), app_permissions=str(Perm.MEMBER_DEFAULT), context=1)
        if message is not None:
            payload["message"] = self._rest_message(message)
        it.payload = payload
        self.interactions[it.id] = it
        it.created = time.monotonic()
        await self._deliver(self._emit("INTERACTION_CREATE", payload, guild_id=it.guild_id))
        return it

    # -- helpers: messages -------------------------------------------------------------
    def _validate(self, body: dict[str, Any], uploads: Sequence[Upload], *, partial: bool = False) -> None:
        """What Discord checks on a message body: lengths, counts, and that something is there."""
        content = body.get("content")
        if content is not None and not isinstance(content, str):
            raise form_error("content", "BASE_TYPE_STRING", "Must be a string.")
        if content and len(content) > 2000:
            raise form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        embeds = body.get("embeds") or []
        if len(embeds) > 10:
            raise form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        if sum(_embed_size(e) for e in embeds) > 6000:
            raise form_error("embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
        components = body.get("components") or []
        if len(components) > 5 and not int(body.get("flags") or 0) & (1 << 15):
            raise form_error("components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        for i, row in enumerate(components):
            if row.get("type") == 1 and len(row.get("components") or []) > 5:
                raise form_error(f"components.{i}.components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
            for j, item in enumerate(row.get("components") or []):
                if len(str(item.get("custom_id") or "")) > 100:
                    path = f"components.{i}.components.{j}.custom_id"
                    raise form_error(path, "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
                if len(str(item.get("label") or "")) > 80:
                    path = f"components.{i}.components.{j}.label"
                    raise form_error(path, "BASE_TYPE_MAX_LENGTH", "Must be 80 or fewer in length.")
        for upload in uploads:
            if len(upload.data) > self.file_size_limit:
                raise ApiError(413, 40005)
        has_something = content or embeds or components or uploads or body.get("sticker_ids") or body.get("poll")
        if not partial and not has_something:
            raise ApiError(400, 50006)

    def _attachments(
        self, channel_id: int, body: dict[str, Any], uploads: Sequence[Upload]
    ) -> tuple[list[dict[str, Any]], dict[int, bytes]]:
        """New uploads (``files[n]`` described by ``attachments[].id == n``) as attachment objects."""
        described = {str(a.get("id")): a for a in body.get("attachments") or [] if isinstance(a, dict)}
        out, data = [], {}
        for upload in uploads:
            meta = described.get(str(upload.index), {})
            filename = str(meta.get("filename") or upload.filename)
            attachment_id = self.ids.next()
            self.hosted[attachment_id] = (filename, upload.data, upload.content_type)
            item = self._attachment_payload(attachment_id, channel_id, filename, len(upload.data), upload.content_type)
            if meta.get("description"):
                item["description"] = meta["description"]
            out.append(item)
            data[attachment_id] = upload.data
        return out, data

    def _attachment_payload(
        self, attachment_id: int, channel_id: int, filename: str, size: int, ctype: str
    ) -> dict[str, Any]:
        path = f"attachments/{channel_id}/{attachment_id}/{quote(filename, safe='')}"
        expires = int(time.time()) + 86400
        sig = f"?ex={expires:x}&is={int(time.time()):x}&hm={hashlib.sha256(path.encode()).hexdigest()}&"
        return {
            "id": str(attachment_id),
            "filename": filename,
            "size": size,
            "url": f"{self.url}/{path}{sig}",
            "proxy_url": f"{self.url}/media/{path}{sig}",
            "content_type": ctype,
        }

    def _bot_message(
        self, channel: Channel, body: dict[str, Any], uploads: Sequence[Upload], *, type: int = 0, id: int | None = None
    ) -> Message:
        attachments, data = self._attachments(channel.id, body, uploads)
        message = Message(
            id or self.ids.next(),
            channel.id,
            self.bot,
            str(body.get("content") or ""),
            guild_id=channel.guild_id,
            type=type,
            flags=int(body.get("flags") or 0),
            embeds=list(body.get("embeds") or []),
            components=list(body.get("components") or []),
            attachments=attachments,
            files=data,
            nonce=body.get("nonce"),
        )
        message.history.append(message.content)
        message.remember_components()
        self._resolve_mentions(message, channel)
        return message

    def _interaction_message(
        self,
        it: Interaction,
        channel: Channel,
        body: dict[str, Any],
        uploads: Sequence[Upload],
        *,
        validate: bool = True,
    ) -> Message:
        if validate:
            self._validate(body, uploads)
        message = self._bot_message(channel, body, uploads, type=20 if it.type == 2 else 0)
        message.webhook_id = APP_ID
        message.interaction_id = it.id
        self._store(message)
        self._echo("MESSAGE_CREATE", message)
        return message

    def _apply_edit(self, message: Message, body: dict[str, Any], uploads: Sequence[Upload]) -> None:
        if message.deleted:
            raise ApiError(404, 10008)
        self._validate(body, uploads, partial=True)
        if "content" in body:
            message.content = str(body["content"] or "")
        if "embeds" in body:
            message.embeds = list(body["embeds"] or [])
        if "components" in body:
            message.components = list(body["components"] or [])
            message.remember_components()
        if "flags" in body and body["flags"] is not None:
            keep = message.flags & (MessageFlag.EPHEMERAL | MessageFlag.LOADING)
            message.flags = int(body["flags"]) | keep
        if "attachments" in body or uploads:
            kept_ids = {str(a.get("id")) for a in body.get("attachments") or [] if isinstance(a, dict)}
            kept = (
                [a for a in message.attachments if a["id"] in kept_ids]
                if "attachments" in body
                else message.attachments
            )
            added, data = self._attachments(message.channel_id, body, uploads)
            message.attachments = kept + added
            message.files.update(data)
        if not (message.content or message.embeds or message.components or message.attachments or message.loading):
            raise ApiError(400, 50006)
        message.edits.append(dict(body))
        message.history.append(message.content)
        message.edited_at = time.time()
        self._resolve_mentions(message, self.channels[message.channel_id])
        self._echo("MESSAGE_UPDATE", message)
        self._poke()

    def _delete_message(self, message: Message) -> None:
        if message.deleted:
            raise ApiError(404, 10008)
        message.deleted = True
        data: dict[str, Any] = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        intent = Intents.GUILD_MESSAGES if message.guild_id is not None else Intents.DIRECT_MESSAGES
        if not message.ephemeral:
            self._emit("MESSAGE_DELETE", data, guild_id=message.guild_id, intent=intent)
        self._poke()

    def _resolve_mentions(self, message: Message, channel: Channel, *, extra: Sequence[User] = ()) -> None:
        """Mentions as Discord derives them from the text (plus a replied-to author)."""
        users = [self.users[int(u)] for u in _MENTION.findall(message.content) if int(u) in self.users]
        for user in extra:
            if user not in users:
                users.append(user)
        message.mentions = users
        guild = self.guilds.get(channel.guild_id) if channel.guild_id is not None else None
        roles = [int(r) for r in _ROLE_MENTION.findall(message.content)]
        message.mention_roles = [r for r in roles if guild and r in guild.roles]
        message.mention_everyone = "@everyone" in message.content or "@here" in message.content

    def _store(self, message: Message) -> None:
        self.messages.setdefault(message.channel_id, []).append(message)
        channel = self.channels[message.channel_id]
        channel.last_message_id = message.id
        if channel.is_thread:
            channel.message_count += 1
        self._poke()

    def _rest_message(self, message: Message, *, gateway_member: dict[str, Any] | None = None) -> dict[str, Any]:
        out = message.payload(gateway_member=gateway_member)
        for shown, msg in ((out, message), (out.get("referenced_message"), message.reference)):
            if shown is None or msg is None or msg.thread_id is None:
                continue
            if msg.thread_id in self.channels:  # the full thread object, as Discord sends it
                shown["thread"] = self.channels[msg.thread_id].payload()
            else:
                shown.pop("thread", None)
        return out

    # -- helpers: lookups ----------------------------------------------------------------
    def _add_channel(self, channel: Channel) -> None:
        self.channels[channel.id] = channel
        if channel.guild_id is not None:
            self.guilds[channel.guild_id].channels[channel.id] = channel
        self.messages.setdefault(channel.id, [])

    def _channel(self, req: Request) -> Channel:
        channel = self.channels.get(req.snowflake("channel_id", 10003))
        if channel is None:
            raise ApiError(404, 10003)
        return channel

    def _guild(self, req: Request) -> Guild:
        guild = self.guilds.get(req.snowflake("guild_id", 10004))
        if guild is None:
            raise ApiError(404, 10004)
        return guild

    def _app(self, req: Request) -> None:
        if req.path["application_id"] != str(APP_ID):
            raise ApiError(403, 50001, "Missing Access")

    def _message_in(self, req: Request) -> Message:
        channel = self._channel(req)
        mid = req.snowflake("message_id", 10008)
        for message in self.messages.get(channel.id, []):
            if message.id == mid and not message.deleted:
                return message
        raise ApiError(404, 10008)

    def _find_message(self, message_id: int) -> Message | None:
        for messages in self.messages.values():
            for message in messages:
                if message.id == message_id and not message.deleted:
                    return message
        return None

    def _message_of(self, message: Message | int) -> Message:
        if isinstance(message, Message):
            return message
        found = self._find_message(message)
        if found is None:
            raise KeyError(f"no message {message}")
        return found

    def _message_with(self, custom_id: str) -> Message:
        candidates = [m for m in self.bot_messages() if m.component(custom_id) is not None]
        if not candidates:
            raise AssertionError(f"no bot message has a component {custom_id!r}")
        return max(candidates, key=lambda m: m.id)

    def _channel_of(self, channel: Channel | int) -> Channel:
        cid = channel.id if isinstance(channel, Channel) else channel
        if cid not in self.channels:
            raise KeyError(f"no channel {cid}")
        return self.channels[cid]

    def _role_id(self, guild: Guild, role: Role | str | int) -> int:
        if isinstance(role, Role):
            return role.id
        if isinstance(role, int):
            return role
        return guild.role(role).id

    def _live(self, session: GatewaySession | None) -> list[GatewayConnection]:
        return [c for c in self.connections if c.open and (session is None or c.session is session)]

    def _thread_name(self, body: dict[str, Any]) -> str:
        name = str(body.get("name") or "")
        if not 1 <= len(name) <= 100:
            raise form_error("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        return name

    def _interaction_by_token(self, req: Request) -> Interaction:
        token = req.path["webhook_token"]
        if req.path["webhook_id"] != str(APP_ID):
            raise ApiError(404, 10015)
        for it in self.interactions.values():
            if it.token == token:
                if time.monotonic() - it.created > self.interaction_token_ttl:
                    raise ApiError(401, 50027)
                return it
        raise ApiError(404, 10015)

    def _original(self, req: Request) -> Message:
        it = self._interaction_by_token(req)
        if it.original is None or it.original.deleted:
            raise ApiError(404, 10008)
        return it.original

    def _webhook_message(self, req: Request) -> Message:
        it = self._interaction_by_token(req)
        mid = req.snowflake("message_id", 10008)
        for message in [*it.followups, *([it.original] if it.original else [])]:
            if message.id == mid and not message.deleted:
                return message
        raise ApiError(404, 10008)

    # -- helpers: application commands ---------------------------------------------------
    def _command_id(self, scope: int | None, name: str, kind: int) -> int:
        return self._command_ids.setdefault((scope, name, kind), self.ids.next())

    def _check_command(self, index: int, command: Any) -> dict[str, Any]:
        if not isinstance(command, dict):
            raise form_error(str(index), "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        kind = int(command.get("type") or 1)
        name = str(command.get("name") or "")
        if not _COMMAND_NAME.match(name) or (kind == 1 and name != name.lower()):
            raise form_error(f"{index}.name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        if kind == 1 and not 1 <= len(str(command.get("description") or "")) <= 100:
            raise form_error(f"{index}.description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        if len(command.get("options") or []) > 25:
            raise form_error(f"{index}.options", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        return command

    def _registered_form(self, scope: int | None, command: dict[str, Any]) -> dict[str, Any]:
        kind = int(command.get("type") or 1)
        out = {
            "default_member_permissions": None,
            "contexts": None,
            "integration_types": [0],
            "nsfw": False,
            "description": "",
            **command,
            "type": kind,
            "id": str(self._command_id(scope, command["name"], kind)),
            "application_id": str(APP_ID),
            "version": str(self.ids.next()),
        }
        if scope is not None:
            out["guild_id"] = str(scope)
        return out

    def _overwrite_commands(self, scope: int | None, body: Any) -> list[dict[str, Any]]:
        if not isinstance(body, list):
            raise ApiError(
                400, 50035, errors={"_errors": [{"code": "LIST_TYPE_CONVERT", "message": "Must be an array"}]}
            )
        if len(body) > 100:
            raise ApiError(400, 30032, "Maximum number of application commands reached (100)")
        checked = [self._check_command(i, c) for i, c in enumerate(body)]
        previous = self.commands.get(scope, [])
        changed = _command_shape(previous) != _command_shape(checked)
        registered = [self._registered_form(scope, c) for c in checked]
        if not changed:  # an identical overwrite keeps the versions too
            registered = previous
        self.commands[scope] = registered
        self.command_syncs.append(CommandSync(scope, [dict(c) for c in checked], changed))
        self._poke()
        return registered

    def _upsert_command(self, scope: int | None, body: dict[str, Any]) -> dict[str, Any]:
        command = self._registered_form(scope, self._check_command(0, body))
        commands = [c for c in self.commands.get(scope, []) if c["name"] != command["name"]]
        self.commands[scope] = [*commands, command]
        return command

    def _registered(self, name: str, guild_id: int | None) -> tuple[dict[str, Any] | None, int | None]:
        for scope in ([guild_id] if guild_id is not None else []) + [None]:
            for command in self.commands.get(scope, []):
                if command["name"] == name and command.get("type", 1) == 1:
                    return command, scope
        return None, None

    def _build_options(
        self,
        definition: dict[str, Any],
        path: list[str],
        values: dict[str, Any],
        channel: Channel,
        resolved: dict[str, dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Interaction ``data.options`` for ``values``, typed by the registered definition."""
        declared = {o["name"]: o for o in definition.get("options") or []}
        if path:
            sub = declared.get(path[0])
            if sub is None and self.require_registered_commands:
                raise AssertionError(f"/{definition['name']} has no subcommand {path[0]!r}")
            sub = sub or {"name": path[0], "type": 1, "options": []}
            inner = self._build_options(sub, path[1:], values, channel, resolved)
            return [{"name": path[0], "type": sub.get("type", 1), "options": inner}]
        out = []
        for name, value in values.items():
            spec = declared.get(name)
            if spec is None and definition.get("id"):
                raise AssertionError(f"/{definition['name']} has no option {name!r}")
            kind = int(spec["type"]) if spec else _option_type(value)
            out.append({"name": name, "type": kind, "value": self._option_value(kind, value, channel, resolved)})
        missing = [
            n for n, o in declared.items() if o.get("required") and n not in values and o.get("type") not in (1, 2)
        ]
        if missing and definition.get("id"):
            raise AssertionError(f"/{definition['name']} needs option(s) {missing}")
        return out

    def _option_value(self, kind: int, value: Any, channel: Channel, resolved: dict[str, dict[str, Any]]) -> Any:
        guild = self.guilds.get(channel.guild_id) if channel.guild_id is not None else None
        if kind == 6:  # USER
            user = value.user if isinstance(value, Member) else value
            user = user if isinstance(user, User) else self.users[int(user)]
            resolved.setdefault("users", {})[str(user.id)] = user.payload()
            if guild is not None and user.id in guild.members:
                member = guild.members[user.id]
                resolved.setdefault("members", {})[str(user.id)] = member.payload(
                    with_user=False, permissions=guild.permissions_of(member)
                )
            return str(user.id)
        if kind == 7:  # CHANNEL
            target = value if isinstance(value, Channel) else self.channels[int(value)]
            resolved.setdefault("channels", {})[str(target.id)] = {**target.payload(), "permissions": str(Perm.ALL)}
            return str(target.id)
        if kind == 8:  # ROLE
            role = value if isinstance(value, Role) else (guild.roles[int(value)] if guild else None)
            if role is None:
                raise AssertionError("role options need a guild channel")
            resolved.setdefault("roles", {})[str(role.id)] = role.payload()
            return str(role.id)
        return value


# -- small helpers ---------------------------------------------------------------------


def _json(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer with ``Content-Type: application/json`` exactly (what discord.py requires)."""
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return web.Response(body=data, status=status, headers={**(headers or {}), "Content-Type": "application/json"})


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise ApiError(400, 50109) from None


def _embed_size(embed: dict[str, Any]) -> int:
    size = len(str(embed.get("title") or "")) + len(str(embed.get("description") or ""))
    size += len(str((embed.get("footer") or {}).get("text") or "")) + len(
        str((embed.get("author") or {}).get("name") or "")
    )
    for item in embed.get("fields") or []:
        size += len(str(item.get("name") or "")) + len(str(item.get("value") or ""))
    return size


def _option_type(value: Any) -> int:
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    if isinstance(value, User | Member):
        return 6
    if isinstance(value, Channel):
        return 7
    if isinstance(value, Role):
        return 8
    return 3


def _command_shape(commands: Iterable[dict[str, Any]]) -> list[str]:
    """What makes two command sets the same, ignoring ids, versions and key order."""
    ignored = {"id", "application_id", "version", "guild_id"}
    shapes = []
    for command in commands:
        defaults = {"default_member_permissions": None, "contexts": None, "integration_types": [0], "nsfw": False}
        shape = {**defaults, **{k: v for k, v in command.items() if k not in ignored}}
        shape["type"] = int(shape.get("type") or 1)
        shapes.append(json.dumps(shape, sort_keys=True))
    return sorted(shapes)
