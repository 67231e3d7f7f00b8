"""``im.message.receive_v1`` events -> who is talking, where, what they said, whether the bot is addressed.

Pure functions over the event body (the v2 ``event`` object, as a dict: the same
for the long connection and HTTP callbacks). Which conversation a message belongs
to is the bot's policy, passed in as ``route`` (see ``bots/feishu.py``); this module
only reads the event into a :class:`FeishuPlace`. Messages sent by apps (this bot
included) are ignored.

* The bot is addressed in a group when its own open_id is among ``mentions``
  (``@_all`` has no ``mentions`` entry and does not count); in a p2p chat always.
* Mentions are placeholders in the text (``@_user_1``, described by
  ``mentions[].key``): the bot's are removed, other people's become ``@Name``.
* Rich-text (``post``) messages are read as text; their images are files.
* Images, files, audio and video become :class:`Resource` s, downloaded later
  through ``im.v1.message_resource.get`` (only once the dispatcher admits them).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core import ConversationKey

log = logging.getLogger(__name__)

PLATFORM = "feishu"


@dataclass(frozen=True)
class FeishuPlace:
    """Where a message was written, as a bot's routing policy sees it."""

    chat_type: str  # "p2p" | "group"
    chat_id: str
    sender: str  # the writer's open_id
    message_id: str
    thread_id: str | None = None  # the thread it was written in (omt_...), None outside threads
    root_id: str | None = None  # the thread's (or quote chain's) first message
    mentioned: bool = False  # the bot's own open_id is among its mentions (always True in p2p)

    @property
    def p2p(self) -> bool:
        return self.chat_type == "p2p"


Router = Callable[[FeishuPlace], ConversationKey | None]


@dataclass(frozen=True)
class Resource:
    """A file of a message: ``GET /im/v1/messages/{message_id}/resources/{key}?type={kind}``."""

    message_id: str
    key: str
    kind: str  # "image" | "file"
    name: str


@dataclass(frozen=True)
class FeishuTarget:
    """Where a reply goes: under the message answered (in its thread), or into the chat."""

    chat_id: str
    reply_to: str | None = None  # reply to this message (None: a new message in the chat)
    in_thread: bool = False  # reply_in_thread: open (or stay in) the message's thread
    answering: str | None = None  # the message being answered (gets the working reaction)


@dataclass
class FeishuInbound:
    """One message for the bot, read."""

    key: ConversationKey
    place: FeishuPlace
    text: str
    target: FeishuTarget
    files: list[Resource] = field(default_factory=list)
    mentions: list[str] = field(default_factory=list)  # open_ids of the people it mentions (not the bot)


def _image_name(key: str) -> str:
    """An image's name: no extension (the core reads the real type from the bytes; a guessed ``.png`` on
    a JPEG, or on bytes that are no image at all, would make Claude Code misread it)."""
    return f"image_{key[-12:]}"


def _loads(content: Any) -> dict[str, Any]:
    if not isinstance(content, str):
        return {}
    try:
        value = json.loads(content)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _mention_map(mentions: list[dict[str, Any]], bot_open_id: str) -> tuple[dict[str, str], bool, list[str]]:
    """placeholder -> replacement ('' for the bot), whether the bot is mentioned, the others' open_ids."""
    replacements: dict[str, str] = {}
    mentioned = False
    others: list[str] = []
    for mention in mentions:
        if not isinstance(mention, dict):
            continue
        key = _str(mention.get("key"))
        ident = mention.get("id")
        open_id = _str(ident.get("open_id")) if isinstance(ident, dict) else _str(ident)
        if key is None:
            continue
        if open_id == bot_open_id:
            mentioned = True
            replacements[key] = ""
        else:
            replacements[key] = "@" + (_str(mention.get("name")) or open_id or "someone")
            if open_id and open_id not in others:
                others.append(open_id)
    return replacements, mentioned, others


def _replace_mentions(text: str, replacements: dict[str, str]) -> str:
    for key in sorted(replacements, key=len, reverse=True):  # @_user_10 before @_user_1
        text = text.replace(key, replacements[key])
    return text.replace("@_all", "@all")


def _post_body(content: dict[str, Any]) -> dict[str, Any]:
    """A post's ``{"title", "content"}``: received posts have no locale wrapper, sent ones do."""
    if isinstance(content.get("content"), list):
        return content
    for value in content.values():
        if isinstance(value, dict) and isinstance(value.get("content"), list):
            return value
    return {}


def read_post(content: dict[str, Any], message_id: str, replacements: dict[str, str]) -> tuple[str, list[Resource]]:
    """A post as text (paragraphs as lines) and its images / media as resources."""
    body = _post_body(content)
    lines: list[str] = []
    files: list[Resource] = []
    title = _str(body.get("title"))
    if title:
        lines.append(title)
    for paragraph in body.get("content") or []:
        if not isinstance(paragraph, list):
            continue
        parts: list[str] = []
        for node in paragraph:
            if not isinstance(node, dict):
                continue
            tag = node.get("tag")
            if tag in ("text", "md"):
                parts.append(str(node.get("text", "")))
            elif tag == "a":
                label, href = str(node.get("text", "")), str(node.get("href", ""))
                parts.append(f"[{label}]({href})" if href and label and label != href else (href or label))
            elif tag == "at":
                key = str(node.get("user_id", ""))
                parts.append(replacements.get(key, "@" + str(node.get("user_name") or key)))
            elif tag == "code_block":
                language = str(node.get("language", "") or "").lower()
                parts.append(f"\n```{language}\n{node.get('text', '')}\n```\n")
            elif tag == "emotion":
                parts.append(f":{node.get('emoji_type', '')}:")
            elif tag == "img" and _str(node.get("image_key")):
                key = str(node["image_key"])
                files.append(Resource(message_id, key, "image", _image_name(key)))
            elif tag == "media" and _str(node.get("file_key")):
                key = str(node["file_key"])
                files.append(Resource(message_id, key, "file", _str(node.get("file_name")) or f"video_{key[-12:]}.mp4"))
        line = "".join(parts)
        if line.strip() or not paragraph:  # a paragraph that only mentioned the bot is dropped
            lines.append(line)
    return "\n".join(lines), files


def read_content(
    msg_type: str, content: dict[str, Any], message_id: str, replacements: dict[str, str]
) -> tuple[str, list[Resource]] | None:
    """What a message says and carries; None for kinds the bot does not read (stickers, cards, shares...)."""
    if msg_type == "text":
        return str(content.get("text", "")), []
    if msg_type == "post":
        return read_post(content, message_id, replacements)
    if msg_type == "image" and _str(content.get("image_key")):
        key = str(content["image_key"])
        return "", [Resource(message_id, key, "image", _image_name(key))]
    if msg_type in ("file", "media", "audio") and _str(content.get("file_key")):
        key = str(content["file_key"])
        default = {"file": f"file_{key[-12:]}", "media": f"video_{key[-12:]}.mp4", "audio": f"audio_{key[-12:]}.opus"}
        return "", [Resource(message_id, key, "file", _str(content.get("file_name")) or default[msg_type])]
    return None


def read_message(event: dict[str, Any], bot_open_id: str, route: Router) -> FeishuInbound | None:
    """An ``im.message.receive_v1`` event -> :class:`FeishuInbound`, or None when it is not for the bot."""
    sender = event.get("sender") or {}
    message = event.get("message") or {}
    if not isinstance(sender, dict) or not isinstance(message, dict):
        return None
    if sender.get("sender_type") not in (None, "user"):  # apps and bots (this one too) are never answered
        return None
    sender_ids = sender.get("sender_id") or {}
    open_id = _str(sender_ids.get("open_id")) if isinstance(sender_ids, dict) else None
    message_id, chat_id = _str(message.get("message_id")), _str(message.get("chat_id"))
    if open_id is None or message_id is None or chat_id is None or open_id == bot_open_id:
        return None
    chat_type = "p2p" if message.get("chat_type") == "p2p" else "group"
    mentions = message.get("mentions") if isinstance(message.get("mentions"), list) else []
    replacements, mentioned, others = _mention_map(mentions, bot_open_id)
    msg_type = str(message.get("message_type") or message.get("msg_type") or "")
    read = read_content(msg_type, _loads(message.get("content")), message_id, replacements)
    if read is None:
        log.debug("Feishu: not reading a %s message", msg_type)
        return None
    raw_text, files = read
    text = _replace_mentions(raw_text, replacements).strip()
    thread_id, root_id = _str(message.get("thread_id")), _str(message.get("root_id"))
    place = FeishuPlace(chat_type, chat_id, open_id, message_id, thread_id, root_id, mentioned or chat_type == "p2p")
    key = route(place)
    if key is None:
        return None
    if chat_type == "p2p":
        target = FeishuTarget(chat_id, message_id if thread_id else None, bool(thread_id), message_id)
    else:
        target = FeishuTarget(chat_id, message_id, True, message_id)
    return FeishuInbound(key, place, text, target, files, others)
