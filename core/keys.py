"""Conversation keys: who a conversation belongs to, turned into store keys in one place."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """Identifies one conversation (one Claude Code session at a time).

    ``platform`` names the adapter ("telegram", "slack", "console", "api", ...).
    ``owner`` is whose workspace the conversation uses: the user for a direct
    chat, the chat/channel for a shared one. ``thread`` narrows a shared chat
    to one thread or forum topic (or names one of several API sessions).
    ``bot`` scopes the key to one configured bot, so two bots of one platform
    on one store never share a conversation, a workspace or a lock. The bot
    named after its platform (the usual single ``telegram`` bot, the ``api``
    HTTP API bot) and the library use no scope (``None``).

    As text (:meth:`__str__`, the store's key): ``platform:owner[:thread]``,
    prefixed by ``bot@`` when scoped; every part is percent-quoted, so neither
    ``:`` nor ``@`` can appear inside one.
    """

    platform: str
    owner: str
    thread: str | None = None
    bot: str | None = None

    def __post_init__(self) -> None:
        if not self.platform or not self.owner:
            raise ValueError("ConversationKey needs a platform and an owner")
        if self.bot == "":
            raise ValueError("a ConversationKey's bot scope is a name or None")

    def __str__(self) -> str:
        parts = [self.platform, self.owner] + ([self.thread] if self.thread is not None else [])
        text = ":".join(quote(p, safe="") for p in parts)
        return f"{quote(self.bot, safe='')}@{text}" if self.bot else text

    def scoped(self, bot: str | None) -> ConversationKey:
        """The same conversation place, scoped to ``bot`` (None: unscoped)."""
        return self if self.bot == bot else replace(self, bot=bot)

    @property
    def place(self) -> str:
        """``platform:owner`` without the thread or bot, e.g. for project bindings (``slack:C0123``)."""
        return f"{self.platform}:{self.owner}"

    @classmethod
    def parse(cls, text: str) -> ConversationKey:
        bot: str | None = None
        head, at, rest = text.partition("@")
        if at:
            bot, text = unquote(head), rest
        parts = [unquote(p) for p in text.split(":")]
        if len(parts) == 2:
            return cls(parts[0], parts[1], None, bot)
        if len(parts) == 3:
            return cls(parts[0], parts[1], parts[2], bot)
        raise ValueError(f"not a conversation key: {text!r}")


@dataclass(frozen=True, slots=True)
class UserRef:
    """A chat user: the platform's id, a display name when known, and the roles they hold.

    ``roles`` are platform role / group ids (Discord roles), matched by
    ``platform:role:<id>`` entries of the allowlist and admin list.
    """

    id: str
    name: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)

    def __str__(self) -> str:
        return self.name or self.id
