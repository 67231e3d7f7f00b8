"""Event bodies exactly as Feishu pushes them (long connection payloads and HTTP callback bodies).

Every event uses the v2 schema::

    {"schema": "2.0",
     "header": {"event_id", "event_type", "create_time", "token", "app_id", "tenant_key"},
     "event": {...}}

``header.token`` is the app's verification token; ``create_time`` is milliseconds as a
string. ``im.message.receive_v1`` carries ``sender`` (``sender_id`` with open/union/user
ids, ``sender_type: user``) and ``message`` (``content`` is a JSON *string*; text
mentions are placeholders ``@_user_1`` described by ``mentions[].key``; ``@_all`` has no
``mentions`` entry). Card button presses are ``card.action.trigger`` callbacks (same
envelope) with ``operator``, ``action.value`` and ``context.open_message_id``.

The ``url_verification`` challenge is the one body in the old flat shape:
``{"challenge", "token", "type": "url_verification"}``.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from .model import Chat, Message, User, hex_id, now_ms


@dataclass(frozen=True)
class App:
    """The app identity stamped on every event header."""

    app_id: str
    tenant_key: str
    verification_token: str


def envelope(app: App, event_type: str, event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """A v2 event body around ``event``."""
    return {
        "schema": "2.0",
        "header": {
            "event_id": event_id or secrets.token_hex(16),
            "event_type": event_type,
            "create_time": str(now_ms()),
            "token": app.verification_token,
            "app_id": app.app_id,
            "tenant_key": app.tenant_key,
        },
        "event": event,
    }


def url_verification(app: App, challenge: str | None = None) -> dict[str, Any]:
    """The challenge Feishu sends when a callback URL is saved in the developer console."""
    return {
        "challenge": challenge or secrets.token_urlsafe(16),
        "token": app.verification_token,
        "type": "url_verification",
    }


def mention(user: User, index: int, tenant_key: str) -> dict[str, Any]:
    """One ``mentions[]`` entry: the ``@_user_N`` placeholder key, the ids and the display name."""
    return {"key": f"@_user_{index}", "id": user.ids(), "name": user.name, "tenant_key": tenant_key}


def text_content(text: str, mentions: list[dict[str, Any]], mention_all: bool) -> str:
    """``{"text": ...}`` with the mention placeholders first, as a client writes them (those the text
    places itself, ``/allow @_user_1``, stay where they are)."""
    prefix = " ".join(m["key"] for m in mentions if not re.search(rf"{re.escape(m['key'])}(?!\d)", text))
    if mention_all:
        prefix = ("@_all " + prefix).strip()
    return json.dumps({"text": f"{prefix} {text}".strip() if prefix else text}, ensure_ascii=False)


def post_content(title: str, paragraphs: list[list[dict[str, Any]]], mentions: list[dict[str, Any]]) -> str:
    """A received post: no locale wrapper, ``at`` nodes point at the mention keys."""
    content = [list(p) for p in paragraphs]
    if mentions:
        content.insert(0, [{"tag": "at", "user_id": m["key"], "user_name": m["name"]} for m in mentions])
    return json.dumps({"title": title, "content": content}, ensure_ascii=False)


def message_receive(
    app: App, message: Message, chat: Chat, sender: User, *, event_id: str | None = None
) -> dict[str, Any]:
    """``im.message.receive_v1`` for a message a person sent."""
    msg: dict[str, Any] = {
        "message_id": message.message_id,
        "create_time": str(message.create_time),
        "update_time": str(message.update_time),
        "chat_id": chat.chat_id,
        "chat_type": chat.chat_type,
        "message_type": message.msg_type,
        "content": message.content,
    }
    for key in ("root_id", "parent_id", "thread_id"):
        value = getattr(message, key)
        if value:
            msg[key] = value
    if message.mentions:
        msg["mentions"] = message.mentions
    event = {
        "sender": {"sender_id": sender.ids(), "sender_type": "user", "tenant_key": app.tenant_key},
        "message": msg,
    }
    return envelope(app, "im.message.receive_v1", event, event_id=event_id)


def card_action(
    app: App,
    operator: User,
    message: Message,
    value: dict[str, Any],
    *,
    tag: str = "button",
    name: str | None = None,
    form_value: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """``card.action.trigger``: a person pressed a button (or submitted a form) on ``message``."""
    action: dict[str, Any] = {"value": value, "tag": tag}
    if name is not None:
        action["name"] = name
    if form_value is not None:
        action["form_value"] = form_value
    event = {
        "operator": {
            "tenant_key": app.tenant_key,
            "user_id": operator.user_id,
            "open_id": operator.open_id,
            "union_id": operator.union_id,
        },
        "token": hex_id("c-", 40),
        "action": action,
        "host": "im_message",
        "context": {"open_message_id": message.message_id, "open_chat_id": message.chat_id},
    }
    return envelope(app, "card.action.trigger", event, event_id=event_id)
