"""Discord adapter: discord.py 2.x over the gateway, replies by REST.

* :class:`DiscordAdapter` — the client (:mod:`.adapter`): messages, slash commands and
  approval buttons -> the core dispatcher.
* :class:`DiscordSink` / :class:`InteractionSink` — replies (:mod:`.sink`): post once, then
  edit; 2,000-character messages; threads opened on the first reply.
* :mod:`.places` — messages read into :class:`DiscordPlace` (the bot's ``route`` picks the
  conversation); :mod:`.approvals` — restart-proof buttons; :mod:`.commands` — the slash
  commands, synced only when changed; :mod:`.ratelimits` / :mod:`.errors` — 429s and
  failures as the core's errors.
"""

from .adapter import BridgeClient, DiscordAdapter, client_options, intents_for
from .config import DiscordConfig
from .places import PLATFORM, DiscordPlace, Router
from .sink import Destination, DiscordSink, InteractionSink, Posted, ThreadOpener, discord_len, discord_limits

__all__ = [
    "PLATFORM",
    "BridgeClient",
    "Destination",
    "DiscordAdapter",
    "DiscordConfig",
    "DiscordPlace",
    "DiscordSink",
    "InteractionSink",
    "Posted",
    "Router",
    "ThreadOpener",
    "client_options",
    "discord_len",
    "discord_limits",
    "intents_for",
]
