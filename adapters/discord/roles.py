"""The roles of someone writing in a DM: their roles in the servers the bot shares with them.

A DM carries no roles, but ``discord:role:<id>`` entries of the allowlist are
how Discord admins grant access; so, when the access lists name roles at all,
the DM's author is looked up in the bot's servers (``GET
/guilds/{id}/members/{user}``, once per person per few minutes). Role ids are
unique across Discord, so the union of all servers' roles is safe to match.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

import discord

from .errors import NETWORK_ERRORS

log = logging.getLogger(__name__)

TTL = 300.0  # seconds a lookup is trusted
MAX_GUILDS = 25  # servers asked per lookup (a bot in more should restrict itself with `guilds`)
LOOKUP_TIMEOUT = 2.0


class RoleBook:
    def __init__(
        self,
        guilds: Callable[[], Iterable[discord.Guild]],
        wanted: Callable[[], bool],
        *,
        size: int = 5000,
    ) -> None:
        self._guilds = guilds
        self._wanted = wanted  # whether any access entry names a role (else no lookups at all)
        self._cache: OrderedDict[int, tuple[float, frozenset[str]]] = OrderedDict()
        self._size = size

    async def roles(self, user_id: int, *, timeout: float = LOOKUP_TIMEOUT) -> frozenset[str]:
        """Their role ids in the bot's servers (cached); what is known so far when the servers are slow."""
        if not self._wanted():
            return frozenset()
        hit = self._cache.get(user_id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < TTL:
            return hit[1]
        guilds = list(self._guilds())[:MAX_GUILDS]
        try:
            found = await asyncio.wait_for(asyncio.gather(*(self._in(g, user_id) for g in guilds)), timeout)
        except TimeoutError:
            log.warning("Discord: looking up the roles of %s timed out; none used this time", user_id)
            return hit[1] if hit is not None else frozenset()
        roles = frozenset().union(*found) if found else frozenset()
        self._cache[user_id] = (now, roles)
        self._cache.move_to_end(user_id)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return roles

    @staticmethod
    async def _in(guild: discord.Guild, user_id: int) -> frozenset[str]:
        member = guild.get_member(user_id)
        if member is None:
            try:
                member = await guild.fetch_member(user_id)
            except discord.NotFound:
                return frozenset()
            except (discord.DiscordException, *NETWORK_ERRORS) as exc:
                log.info("Discord: could not look up %s in %s: %r", user_id, guild.id, exc)
                return frozenset()
        return frozenset(str(r.id) for r in member.roles)
