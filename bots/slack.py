"""The Slack workspace bot: Claude Code in DMs and channel threads.

* DMs: one session per user. Channels: mention the bot and it answers in a
  thread; the thread is one session, followed without further mentions.
* Replies stream natively in threads (``chat.startStream``), else by edits.
* Tool approvals as buttons (the requester or an admin), files both ways,
  the core commands as ``/new`` after a mention, ``!new``, or a slash command.
* Socket Mode by default (no public URL); ``mode: http`` serves the Events API.
"""

from __future__ import annotations

from adapters.slack import SlackBridge, SlackConfig

from .base import Bot, BotSettings


class SlackSettings(SlackConfig, BotSettings):
    """``bots.<name>:`` keys of a ``kind: slack`` bot (see adapters/slack/config.py)."""


class SlackBot(Bot):
    kind = "slack"
    platform = "slack"
    Settings = SlackSettings

    def describe(self) -> str:
        s = self.settings
        assert isinstance(s, SlackSettings)
        where = "Socket Mode" if s.mode == "socket" else f"HTTP Events API on {s.host}:{s.port}{s.path}"
        return f"{self.name} (slack, {where})"

    def bridge(self) -> SlackBridge:
        assert isinstance(self.settings, SlackSettings)
        return SlackBridge(self.agent, self.settings)

    async def run(self) -> None:
        await self.bridge().run()


BOT = SlackBot
