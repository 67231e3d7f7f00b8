"""What the fake Feishu keeps: people, chats, messages, card entities, uploads, event deliveries.

Ids look like Feishu's (a test that checks a prefix sees a real-looking value):
``cli_`` app ids, ``ou_`` open ids, ``on_`` union ids, ``oc_`` chats, ``om_``
messages, ``omt_`` threads, ``img_v3_`` / ``file_v3_`` keys, 19-digit CardKit card ids.
Times are milliseconds since the epoch, as strings on the wire (``create_time``).
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

_counter = itertools.count(1)


def hex_id(prefix: str, length: int = 32) -> str:
    """``prefix`` + random lowercase hex (Feishu's ``ou_…``, ``oc_…``, ``om_…`` shapes)."""
    return prefix + secrets.token_hex(length // 2)


def card_id() -> str:
    """A CardKit card id: a 19-digit decimal string."""
    return str(7_300_000_000_000_000_000 + next(_counter) * 1_000 + secrets.randbelow(1_000))


def now_ms() -> int:
    return int(time.time() * 1000)


# -- people and chats ------------------------------------------------------------
@dataclass
class User:
    """A person in the tenant, with the three ids Feishu gives everyone."""

    name: str
    open_id: str = field(default_factory=lambda: hex_id("ou_"))
    union_id: str = field(default_factory=lambda: hex_id("on_"))
    user_id: str = field(default_factory=lambda: secrets.token_hex(4))
    email: str = ""

    def ids(self) -> dict[str, str]:
        """The ``UserId`` object of events (``sender_id``, ``mentions[].id``)."""
        return {"union_id": self.union_id, "user_id": self.user_id, "open_id": self.open_id}


@dataclass
class Chat:
    """A group (``chat_type: group``) or the bot's one-to-one chat with a user (``p2p``)."""

    chat_id: str
    chat_type: str = "group"  # "group" | "p2p"
    name: str = ""
    peer: User | None = None  # p2p only


# -- messages ----------------------------------------------------------------------
@dataclass
class Revision:
    """One version of a message: how it came to be (create / patch / update) and its content."""

    op: str
    msg_type: str
    content: str
    at: int = field(default_factory=now_ms)


@dataclass
class Message:
    """A message in a chat, sent by the bot (``sender`` None) or by a person."""

    message_id: str
    chat_id: str
    msg_type: str
    content: str  # the JSON string, as on the wire
    sender: User | None = None
    root_id: str | None = None
    parent_id: str | None = None
    thread_id: str | None = None
    mentions: list[dict[str, Any]] = field(default_factory=list)
    create_time: int = field(default_factory=now_ms)
    update_time: int = field(default_factory=now_ms)
    updated: bool = False  # edited with PUT (Feishu shows an "edited" badge)
    deleted: bool = False
    uuid: str | None = None
    card: CardEntity | None = None  # the entity of a {"type":"card","data":{"card_id"}} message
    history: list[Revision] = field(default_factory=list)
    reactions: dict[str, str] = field(default_factory=dict)  # reaction_id -> emoji_type

    @property
    def from_bot(self) -> bool:
        return self.sender is None

    @property
    def body(self) -> Any:
        """The content, decoded (a card entity message decodes to its current card)."""
        if self.card is not None:
            return self.card.card
        return json.loads(self.content)

    @property
    def edits(self) -> int:
        return sum(1 for r in self.history if r.op == "update")

    @property
    def patches(self) -> int:
        return sum(1 for r in self.history if r.op == "patch")

    @property
    def text(self) -> str:
        """What a person reads: text, post texts, or the card's text elements (live for entities)."""
        body = self.body
        if self.msg_type == "text":
            return str(body.get("text", ""))
        if self.msg_type == "post":
            return post_text(body)
        if self.msg_type == "interactive":
            return "\n".join(card_texts(body))
        return ""

    def payload(self, app_id: str, tenant_key: str) -> dict[str, Any]:
        """The ``Message`` object of REST answers (create, reply, update, get)."""
        sender = (
            {"id": app_id, "id_type": "app_id", "sender_type": "app", "tenant_key": tenant_key}
            if self.sender is None
            else {"id": self.sender.open_id, "id_type": "open_id", "sender_type": "user", "tenant_key": tenant_key}
        )
        out: dict[str, Any] = {
            "message_id": self.message_id,
            "msg_type": self.msg_type,
            "create_time": str(self.create_time),
            "update_time": str(self.update_time),
            "deleted": self.deleted,
            "updated": self.updated,
            "chat_id": self.chat_id,
            "sender": sender,
            "body": {"content": self.content},
        }
        for key in ("root_id", "parent_id", "thread_id"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.mentions:
            out["mentions"] = [
                {
                    "key": m["key"],
                    "id": m["id"]["open_id"],
                    "id_type": "open_id",
                    "name": m["name"],
                    "tenant_key": tenant_key,
                }
                for m in self.mentions
            ]
        return out


def post_text(body: dict[str, Any]) -> str:
    """The text of a post, with or without the locale wrapper (``{"zh_cn": {...}}``)."""
    if "content" not in body:
        body = next((v for v in body.values() if isinstance(v, dict) and "content" in v), {})
    lines = []
    title = body.get("title")
    if title:
        lines.append(str(title))
    for paragraph in body.get("content") or []:
        parts = []
        for node in paragraph:
            tag = node.get("tag")
            if tag in ("text", "md", "a"):
                parts.append(str(node.get("text", "")))
            elif tag == "at":
                parts.append("@" + str(node.get("user_name") or node.get("user_id", "")))
            elif tag == "code_block":
                parts.append(str(node.get("text", "")))
        lines.append("".join(parts))
    return "\n".join(lines)


def walk_elements(node: Any) -> list[dict[str, Any]]:
    """Every element of a card, depth first (columns, panels and forms nest theirs)."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "tag" in node:
            found.append(node)
        for key in ("elements", "columns", "body"):
            if key in node:
                found.extend(walk_elements(node[key]))
    elif isinstance(node, list):
        for item in node:
            found.extend(walk_elements(item))
    return found


def card_texts(card: dict[str, Any]) -> list[str]:
    """The readable texts of a card (JSON 1.0 or 2.0): markdown, plain_text, div texts, title."""
    out: list[str] = []
    title = ((card.get("header") or {}).get("title") or {}).get("content")
    if title:
        out.append(str(title))
    for element in walk_elements(card.get("body", card)):
        tag = element.get("tag")
        if tag in ("markdown", "lark_md", "plain_text") and "content" in element:
            out.append(str(element["content"]))
        elif tag == "div" and isinstance(element.get("text"), dict):
            out.append(str(element["text"].get("content", "")))
    return out


# -- CardKit -----------------------------------------------------------------------
@dataclass
class ContentUpdate:
    """One ``card_element.content`` call that was applied: full text so far and its sequence."""

    element_id: str
    content: str
    sequence: int
    at: float = field(default_factory=time.monotonic)


@dataclass
class SettingsChange:
    """One applied ``card.settings`` call (``settings`` decoded) and the streaming mode after it."""

    settings: dict[str, Any]
    sequence: int
    streaming_mode: bool


@dataclass
class CardEntity:
    """A CardKit card entity (JSON 2.0), its element contents and the sequences it accepted."""

    card_id: str
    card: dict[str, Any]
    sequence: int = 0  # the last accepted sequence (0: none yet)
    streaming_since: float | None = None  # time.monotonic() when streaming_mode was turned on
    updates: list[ContentUpdate] = field(default_factory=list)
    settings_changes: list[SettingsChange] = field(default_factory=list)
    full_updates: int = 0  # card.update (PUT) calls applied
    sequences: list[int] = field(default_factory=list)  # every accepted sequence (content, settings, update)
    message_ids: list[str] = field(default_factory=list)  # messages showing it
    recent_calls: list[float] = field(default_factory=list)  # monotonic times of its calls within the last second
    throttled: int = 0  # calls refused for going over 10 per second

    @property
    def config(self) -> dict[str, Any]:
        return self.card.setdefault("config", {})

    @property
    def streaming_mode(self) -> bool:
        return bool(self.config.get("streaming_mode"))

    def elements(self) -> dict[str, dict[str, Any]]:
        return {e["element_id"]: e for e in walk_elements(self.card.get("body", {})) if "element_id" in e}

    def element_text(self, element_id: str) -> str:
        return str(self.elements()[element_id].get("content", ""))

    def history(self, element_id: str) -> list[str]:
        """The contents an element showed, update by update."""
        return [u.content for u in self.updates if u.element_id == element_id]

    @property
    def text(self) -> str:
        return "\n".join(card_texts(self.card))


# -- files -------------------------------------------------------------------------
@dataclass
class Upload:
    """An image (``image_key``) or file (``file_key``) the bot uploaded."""

    key: str
    kind: str  # "image" | "file"
    data: bytes
    file_name: str | None = None
    file_type: str | None = None  # files: opus, mp4, pdf, doc, xls, ppt, stream; images: message, avatar
    duration: int | None = None


@dataclass
class Resource:
    """A resource of a message that ``message_resource.get`` serves."""

    data: bytes
    kind: str  # "image" | "file"
    file_name: str | None = None
    content_type: str = "application/octet-stream"


# -- long connection ---------------------------------------------------------------
@dataclass
class Attempt:
    """One push of an event over the long connection."""

    message_id: str  # the frame's ``message_id`` header (fresh on every push)
    conn_id: str
    sent_at: float = field(default_factory=time.monotonic)
    acked_at: float | None = None
    ack_code: int | None = None  # the ``code`` of the SDK's response frame (200 = handled)


@dataclass
class Delivery:
    """An event (or card callback) the fake pushes until a client acks it with code 200."""

    event_id: str
    body: dict[str, Any]
    frame_type: str = "event"
    attempts: list[Attempt] = field(default_factory=list)
    response: Any = None  # the handler's answer (card callbacks), decoded from the ack's ``data``
    gave_up: bool = False

    @property
    def acked(self) -> bool:
        return any(a.ack_code == 200 for a in self.attempts)

    @property
    def pushes(self) -> int:
        return len(self.attempts)
