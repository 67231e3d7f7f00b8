"""Fixtures for the Discord tests: the fake Discord (REST + gateway on 127.0.0.1) and bots on real discord.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from bots.discord import DiscordBot, DiscordSettings
from core import Agent, Sections
from core.config import deep_merge

from .fake_discord import TOKEN, Channel, FakeDiscord, Guild, Member, Role


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.patch_discord(monkeypatch)
        yield server


def discord_settings(**overrides: Any) -> DiscordSettings:
    """Settings for the fake: its token, quick start-up and pacing."""
    raw: dict[str, Any] = {
        "token": TOKEN,
        "guild_ready_timeout": 0.05,
        "ready_timeout": 15,
        "edit_interval": 0.05,
        "typing_interval": 1.0,
    }
    raw.update(overrides)
    return DiscordSettings.model_validate(raw)


@dataclass
class Team:
    """A server with text channels, a forum and people: alice (role dev), bob (no role), boss."""

    fake: FakeDiscord
    guild: Guild
    general: Channel
    random: Channel
    forum: Channel
    dev: Role
    alice: Member
    bob: Member
    boss: Member

    def access(self, *extra: str) -> dict[str, Any]:
        """Access by role: members with dev (alice), plus ``extra``; boss is an admin; bob nobody."""
        return {
            "allow_all": False,
            "allowlist": [f"discord:role:{self.dev.id}", *extra],
            "admins": [f"discord:{self.boss.id}"],
        }


@pytest.fixture
def team(fake: FakeDiscord) -> Team:
    guild = fake.add_guild("Team", text_channels=["general", "random"], forum_channels=["help"], roles=["dev"])
    return Team(
        fake,
        guild,
        guild.channel("general"),
        guild.channel("random"),
        guild.channel("help"),
        guild.role("dev"),
        fake.add_member("alice", roles=["dev"]),
        fake.add_member("bob"),
        fake.add_member("boss"),
    )


@dataclass
class Bots:
    """Starts Discord bots (real discord.py + the real agent CLI) against the fake; stops what is left."""

    make_sections: Callable[..., Sections]
    running: list[DiscordBot] = field(default_factory=list)

    async def start(
        self, *, settings: dict[str, Any] | None = None, name: str = "discord", **sections: Any
    ) -> DiscordBot:
        agent = await Agent(self.make_sections(**deep_merge({"access": {"allow_all": True}}, sections))).start()
        bot = DiscordBot(name, agent, discord_settings(**(settings or {})))
        try:
            await bot.adapter.start()
        except BaseException:
            await agent.close()
            raise
        self.running.append(bot)
        return bot

    async def stop(self, bot: DiscordBot, drain_timeout: float = 5) -> None:
        if bot in self.running:
            self.running.remove(bot)
            await bot.adapter.stop(drain_timeout=drain_timeout)
            await bot.agent.close()


@pytest.fixture
async def bots(fake: FakeDiscord, make_sections: Callable[..., Sections]) -> AsyncIterator[Bots]:
    runner = Bots(make_sections)
    yield runner
    for bot in list(runner.running):
        await runner.stop(bot)
