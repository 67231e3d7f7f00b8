"""Who may talk to a bot, and who is an admin.

Entries are ``platform:user_id`` (``platform:*`` admits everyone on that
platform). On a chat platform an empty allowlist admits nobody unless
``allow_all`` is set: an open bot would let anyone on the server run Bash.
"""

from __future__ import annotations

from .config import AccessSettings


class AccessPolicy:
    def __init__(self, settings: AccessSettings) -> None:
        self.settings = settings
        self._allow = set(settings.allowlist)
        self._admins = set(settings.admins)

    def is_admin(self, platform: str, user_id: str) -> bool:
        return f"{platform}:{user_id}" in self._admins

    def allows(self, platform: str, user_id: str) -> bool:
        if self.settings.allow_all or self.is_admin(platform, user_id):
            return True
        return f"{platform}:{user_id}" in self._allow or f"{platform}:*" in self._allow

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
