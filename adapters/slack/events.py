"""Slack message events -> who is talking, where, and whether the bot is addressed.

Pure functions over the event payloads. Which conversation a message belongs
to (and whether it is answered at all) is the bot's policy, passed in as a
``route`` (see ``bots/slack.py``): this module only reads the event into a
:class:`SlackPlace`. Messages from bots (this one included) and edits /
deletions / joins are always ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core import ConversationKey

from .formatting import from_slack
from .sink import SlackTarget

PLATFORM = "slack"
# Message subtypes that are people talking; everything else (edits, joins, bot posts...) is skipped.
_PEOPLE_SUBTYPES = {None, "file_share", "thread_broadcast", "me_message"}


@dataclass
class SlackInbound:
    """One message addressed to the bot, normalized."""

    key: ConversationKey
    user_id: str
    text: str
    target: SlackTarget
    mentioned: bool
    ts: str
    files: list[dict[str, Any]] = field(default_factory=list)
    direct: bool = False  # written in a DM with the bot
    mentions: list[str] = field(default_factory=list)  # other people it mentions (<@U...>)


@dataclass(frozen=True)
class SlackPlace:
    """Where a message was written, as a bot's routing policy sees it."""

    direct: bool  # a DM with the bot
    user_id: str
    channel: str
    thread_ts: str | None  # the thread it was written in; None at the top level
    ts: str
    mentioned: bool  # an app_mention, or <@bot> in the text (always True in DMs)


Router = Callable[[SlackPlace], ConversationKey | None]


@dataclass(frozen=True)
class BotIdentity:
    user_id: str  # the bot's user id (U...), as mentioned: <@U...>
    bot_id: str | None = None  # B...
    team_id: str | None = None


def is_direct(event: dict[str, Any]) -> bool:
    channel_type = event.get("channel_type")
    if channel_type is not None:
        return channel_type == "im"
    return str(event.get("channel", "")).startswith("D")


def mentions(text: str, bot_user_id: str) -> bool:
    return f"<@{bot_user_id}>" in text or f"<@{bot_user_id}|" in text


_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


def mentioned_people(text: str, bot_user_id: str) -> list[str]:
    """The user ids of ``<@U...>`` mentions in ``text``, the bot's own left out."""
    return list(dict.fromkeys(u for u in _USER_MENTION.findall(text) if u != bot_user_id))


def strip_mentions(text: str, bot_user_id: str) -> str:
    return re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text).strip()


def from_bot(event: dict[str, Any], bot: BotIdentity) -> bool:
    return bool(
        event.get("bot_id")
        or event.get("bot_profile")
        or event.get("subtype") == "bot_message"
        or (event.get("user") and event.get("user") == bot.user_id)
    )


def translate_message(
    event: dict[str, Any],
    bot: BotIdentity,
    route: Router,
    *,
    team_id: str | None = None,
    dm_threads: bool = False,
) -> SlackInbound | None:
    """A ``message`` / ``app_mention`` event -> :class:`SlackInbound`, or None when not for us."""
    kind = event.get("type")
    if kind not in ("message", "app_mention"):
        return None
    if from_bot(event, bot) or event.get("subtype") not in _PEOPLE_SUBTYPES or event.get("hidden"):
        return None
    user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    if not (isinstance(user, str) and isinstance(channel, str) and isinstance(ts, str)):
        return None
    raw = event.get("text") or ""
    if not isinstance(raw, str):
        raw = ""
    thread_ts = event.get("thread_ts") if isinstance(event.get("thread_ts"), str) else None
    team = event.get("team") or event.get("user_team") or team_id or bot.team_id
    direct = kind == "message" and is_direct(event)
    mentioned = direct or kind == "app_mention" or mentions(raw, bot.user_id)
    key = route(SlackPlace(direct, user, channel, thread_ts, ts, mentioned))
    if key is None:
        return None
    if direct:
        reply_thread = thread_ts or (ts if dm_threads else None)
    else:
        reply_thread = thread_ts or ts  # channels: always answer in a thread
    return SlackInbound(
        key=key,
        user_id=user,
        text=from_slack(strip_mentions(raw, bot.user_id)),
        target=SlackTarget(channel, reply_thread, user, team, ts),
        mentioned=mentioned,
        ts=ts,
        files=[f for f in event.get("files") or [] if isinstance(f, dict)],
        direct=direct,
        mentions=mentioned_people(raw, bot.user_id),
    )
