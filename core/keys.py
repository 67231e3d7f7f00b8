"""Conversation keys: who a conversation belongs to, turned into store keys in one place."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """Identifies one conversation (one Claude Code session at a time).

    ``platform`` names the adapter ("telegram", "slack", "console", "api", ...).
    ``owner`` is whose workspace the conversation uses: the user for a direct
    chat, the chat/channel for a shared one. ``thread`` narrows a shared chat
    to one thread or forum topic (or names one of several API sessions).
    """

    platform: str
    owner: str
    thread: str | None = None

    def __post_init__(self) -> None:
        if not self.platform or not self.owner:
            raise ValueError("ConversationKey needs a platform and an owner")

    def __str__(self) -> str:
        parts = [self.platform, self.owner] + ([self.thread] if self.thread is not None else [])
        return ":".join(quote(p, safe="") for p in parts)

    @classmethod
    def parse(cls, text: str) -> ConversationKey:
        parts = [unquote(p) for p in text.split(":")]
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        if len(parts) == 3:
            return cls(parts[0], parts[1], parts[2])
        raise ValueError(f"not a conversation key: {text!r}")


@dataclass(frozen=True, slots=True)
class UserRef:
    """A chat user: the platform's id, and a display name when known."""

    id: str
    name: str | None = None

    def __str__(self) -> str:
        return self.name or self.id
