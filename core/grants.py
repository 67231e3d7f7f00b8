"""Access granted and revoked in the chat, by admins (``/allow``, ``/revoke``, ``/users``).

Grants are kept in the store (so they reach every instance and survive
restarts), one named value per entry: ``access:<bot>:<platform:user or role>``.
The config's ``access.allowlist`` stays the base that grants add to; a revoke
removes a grant (an entry of the config file can only be removed there).
Every change is logged with who made it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from .store import ConversationStore

log = logging.getLogger(__name__)

PREFIX = "access:"
REFRESH_AFTER = 5.0  # seconds a copy of the grants is trusted before the store is read again


@dataclass(frozen=True)
class Grant:
    entry: str  # "telegram:42", "discord:role:123"
    by: str  # who granted it ("telegram:7")
    at: float


class AccessGrants:
    def __init__(self, store: ConversationStore, scope: str) -> None:
        self.store = store
        self.scope = scope
        self.prefix = f"{PREFIX}{scope}:"
        self._grants: dict[str, Grant] = {}
        self._read_at = float("-inf")

    @property
    def entries(self) -> frozenset[str]:
        """The granted entries as last read (see :meth:`refresh`)."""
        return frozenset(self._grants)

    async def refresh(self, *, force: bool = False) -> dict[str, Grant]:
        """The grants, read from the store when the copy is older than a few seconds."""
        if force or time.monotonic() - self._read_at > REFRESH_AFTER:
            raw = await self.store.list_meta(self.prefix)
            grants: dict[str, Grant] = {}
            for name, value in raw.items():
                entry = name[len(self.prefix) :]
                try:
                    data = json.loads(value)
                    grants[entry] = Grant(entry, str(data.get("by", "?")), float(data.get("at", 0)))
                except (ValueError, AttributeError):
                    grants[entry] = Grant(entry, "?", 0.0)
            self._grants = grants
            self._read_at = time.monotonic()
        return dict(self._grants)

    async def grant(self, entry: str, by: str) -> bool:
        """Admit ``entry``; False when it was granted already."""
        await self.refresh(force=True)
        if entry in self._grants:
            return False
        grant = Grant(entry, by, time.time())
        await self.store.put_meta(self.prefix + entry, json.dumps({"by": by, "at": grant.at}))
        self._grants[entry] = grant
        log.info("access to bot %s granted to %s by %s", self.scope, entry, by)
        return True

    async def revoke(self, entry: str, by: str) -> bool:
        """Remove the grant of ``entry``; False when there was none."""
        removed = await self.store.delete_meta(self.prefix + entry)
        self._grants.pop(entry, None)
        if removed:
            log.info("access to bot %s revoked from %s by %s", self.scope, entry, by)
        return removed
