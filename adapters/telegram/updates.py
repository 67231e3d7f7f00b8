"""Reading Telegram updates: what a message means for the bot.

:func:`inspect_message` turns a PTB ``Message`` into a :class:`MessageView`,
the few facts a bot's policy needs (who, where, addressed to the bot or not,
the text without the bot's @mention); policies never read raw payloads.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from telegram import Message, MessageEntity, User
from telegram.constants import ChatType

from core import UserRef
from core.commands import COMMANDS

log = logging.getLogger(__name__)

OWN_COMMANDS = frozenset(COMMANDS) | {"start"}  # start: what Telegram sends when someone opens the bot


@dataclass(frozen=True)
class MessageView:
    """What a message means for the bot."""

    chat_id: int
    chat_type: str  # private | group | supergroup | channel
    user: UserRef
    text: str  # the bot's @mention removed
    message_id: int
    thread_id: int | None  # forum topic, if the message is in one
    mentioned: bool  # @bot or a text mention of the bot
    replied_to_bot: bool  # a reply to one of the bot's messages
    command: str | None  # "/new" for a command to this bot (or to every bot), else None
    command_to_bot: bool = False  # the command named the bot ("/new@this_bot")
    mentions: tuple[str, ...] = ()  # ids of people it mentions by name, or whose message it replies to

    @property
    def private(self) -> bool:
        return self.chat_type == ChatType.PRIVATE

    @property
    def addressed(self) -> bool:
        """For the bot: a private chat, a mention, a reply to the bot, or one of its commands.

        A bare command counts only when it is one of ours: in a group with several
        bots, "/roll" is for some other bot.
        """
        if self.private or self.mentioned or self.replied_to_bot or self.command_to_bot:
            return True
        return self.command is not None and self.command[1:] in OWN_COMMANDS


def display_name(user: User) -> str:
    return user.full_name or (f"@{user.username}" if user.username else str(user.id))


def inspect_message(message: Message, me: User) -> MessageView | None:
    """The view of ``message``, or None for messages a bot never answers (from bots, channels, anonymous)."""
    sender = message.from_user
    if sender is None or sender.is_bot or message.sender_chat is not None:
        log.debug("skipping message %s in %s: not from a person", message.message_id, message.chat_id)
        return None
    if message.chat.type == ChatType.CHANNEL:
        return None
    raw = message.text if message.text is not None else (message.caption or "")
    entities = message.parse_entities() if message.text is not None else message.parse_caption_entities()
    username = (me.username or "").lower()
    mentioned = False
    command: str | None = None
    command_to_bot = False
    others: list[str] = []
    for entity, fragment in entities.items():
        if entity.type == MessageEntity.MENTION and username and fragment[1:].lower() == username:
            mentioned = True
        elif entity.type == MessageEntity.TEXT_MENTION and entity.user is not None and entity.user.id == me.id:
            mentioned = True
        elif entity.type == MessageEntity.TEXT_MENTION and entity.user is not None and not entity.user.is_bot:
            others.append(str(entity.user.id))
        elif entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
            name, _, target = fragment.partition("@")
            if not target or target.lower() == username:
                command, command_to_bot = name.lower(), bool(target)
    reply = message.reply_to_message
    replied_to_bot = bool(
        reply is not None
        and reply.from_user is not None
        and reply.from_user.id == me.id
        and reply.forum_topic_created is None  # in forums every message "replies" to its topic's first message
    )
    # A bare command in reply to someone's message names that person ("/allow" answering their message);
    # a command that names someone itself ("/allow 123") is about them, not whoever it replies to.
    said = raw.split(maxsplit=1)[1].strip() if command is not None and len(raw.split(maxsplit=1)) > 1 else ""
    if reply is not None and reply.from_user is not None and not reply.from_user.is_bot and not replied_to_bot:
        if reply.forum_topic_created is None and reply.from_user.id != sender.id and not said:
            others.append(str(reply.from_user.id))
    return MessageView(
        chat_id=message.chat_id,
        chat_type=message.chat.type,
        user=UserRef(str(sender.id), display_name(sender)),
        text=strip_mention(raw, me.username),
        message_id=message.message_id,
        thread_id=message.message_thread_id if message.is_topic_message else None,
        mentioned=mentioned,
        replied_to_bot=replied_to_bot,
        command=command,
        command_to_bot=command_to_bot,
        mentions=tuple(dict.fromkeys(others)),
    )


def strip_mention(text: str, username: str | None) -> str:
    """``text`` without ``@username`` (also as a ``/command@username`` suffix)."""
    if not username:
        return text.strip()
    stripped = re.sub(rf"@{re.escape(username)}\b", "", text, flags=re.IGNORECASE)
    return re.sub(r"[ \t]{2,}", " ", stripped).strip()
