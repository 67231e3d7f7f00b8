"""Who may talk to a bot, and who is an admin.

Entries are ``platform:user_id``; ``platform:*`` admits everyone on that
platform; ``platform:role:<role id>`` admits members holding that role (Discord
roles, the way server admins grant access). An entry matches only its own
platform, and only the whole id. On a chat platform an empty allowlist admits
nobody unless ``allow_all`` is set: an open bot would let anyone on the server
run Bash. Admins are always admitted. Entries admins grant in the chat
(:mod:`core.grants`) add to the allowlist (``granted``).
"""

from __future__ import annotations

from collections.abc import Iterable

from .config import AccessSettings

ROLE = "role:"


def _entries(platform: str, user_id: str, roles: Iterable[str]) -> list[str]:
    return [f"{platform}:{user_id}", *(f"{platform}:{ROLE}{r}" for r in roles)]


class AccessPolicy:
    def __init__(self, settings: AccessSettings) -> None:
        self.granted: frozenset[str] = frozenset()  # entries granted in the chat (kept fresh by the dispatcher)
        self.update(settings)

    def update(self, settings: AccessSettings) -> None:
        """Use new settings (a config reload); the chat grants stay."""
        self.settings = settings
        self._allow = frozenset(settings.allowlist)
        self._admins = frozenset(settings.admins)

    def is_admin(self, platform: str, user_id: str, roles: Iterable[str] = ()) -> bool:
        return any(entry in self._admins for entry in _entries(platform, user_id, roles))

    def allows(self, platform: str, user_id: str, roles: Iterable[str] = ()) -> bool:
        roles = tuple(roles)
        if self.settings.allow_all or self.is_admin(platform, user_id, roles):
            return True
        allowed = self._allow | self.granted
        if f"{platform}:*" in allowed:
            return True
        return any(entry in allowed for entry in _entries(platform, user_id, roles))

    def in_config(self, entry: str) -> bool:
        """``entry`` is admitted by the config file itself (not by a chat grant)."""
        return entry in self._allow or entry in self._admins

    def startup_warnings(self, platform: str) -> list[str]:
        """Plain-language warnings about this policy for a bot on ``platform``."""
        if self.settings.allow_all:
            return [
                f"access.allow_all is set: every {platform} user who can reach this bot may use it "
                "(tools outside the workspace still need approval)."
            ]
        prefix = f"{platform}:"
        if not any(e.startswith(prefix) for e in self._allow | self._admins):
            return [
                f"nobody may use this {platform} bot: access.allowlist has no '{platform}:<user id>' entries "
                "and access.allow_all is false. Add users to access.allowlist (or access.admins)."
            ]
        return []
