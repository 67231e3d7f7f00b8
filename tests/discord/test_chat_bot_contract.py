"""The chat-bot contract on Discord: real discord.py (gateway + REST) against the fake Discord, in DMs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bots.discord import DiscordBot
from core import Agent, ConversationKey, Decision, Sections
from core.config import deep_merge
from tests.contracts.chat_bot_contract import ChatBotContract, ChatHarness, calls_since
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.fakes.platform_server import Failure

from .conftest import discord_settings
from .fake_discord import FakeDiscord, Message, User

EDIT = "PATCH /channels/{channel_id}/messages/{message_id}"
CODES = {Decision.ALLOW_ONCE: "o", Decision.ALLOW_SESSION: "s", Decision.DENY: "d"}


class DiscordHarness(ChatHarness):
    platform = "discord"

    def __init__(self, fake: FakeDiscord, fake_api: FakeAnthropicAPI, make_sections: Callable[..., Sections]) -> None:
        self.fake = fake
        self.fake_api = fake_api
        self.make_sections = make_sections
        self.people: dict[str, User] = {name: fake.add_user(name) for name in ("alice", "bob", "boss", "eve")}
        self.bot: DiscordBot | None = None

    async def start(self, **sections: Any) -> Agent:
        ids = {name: user.id for name, user in self.people.items()}
        access = {
            "allow_all": False,
            "allowlist": [f"discord:{ids['alice']}", f"discord:{ids['bob']}"],
            "admins": [f"discord:{ids['boss']}"],
        }
        agent = await Agent(self.make_sections(**deep_merge({"access": access}, sections))).start()
        self.bot = DiscordBot("discord", agent, discord_settings())
        try:
            await self.bot.adapter.start()
        except BaseException:
            await agent.close()
            raise
        return agent

    async def stop(self) -> None:
        if self.bot is not None:
            bot, self.bot = self.bot, None
            await bot.adapter.stop(drain_timeout=10)
            await bot.agent.close()

    def key(self, who: str) -> ConversationKey:
        return ConversationKey("discord", str(self.people[who].id))

    async def say(self, who: str, text: str, *, files: dict[str, bytes] | None = None) -> Message:
        person = self.people[who]
        return await self.fake.user_message(
            self.fake.dm_channel(person), person, text, attachments=list((files or {}).items())
        )

    async def redeliver(self, delivery: Message) -> None:
        await self.fake.redeliver(delivery)

    def _dm(self, who: str) -> list[Message]:
        return self.fake.bot_messages(self.fake.dm_channel(self.people[who]))

    def replies(self, who: str) -> list[str]:
        return [m.content for m in self._dm(who) if not m.shown_components and not m.ephemeral]

    async def approval(self, who: str) -> Message:
        [prompt] = await self.fake.wait_until(lambda: [m for m in self._dm(who) if m.buttons()], 30, "approval buttons")
        return prompt

    async def press(self, prompt: Message, who: str, decision: Decision) -> str | None:
        [custom_id] = [
            c["custom_id"]
            for c in prompt.shown_components
            if str(c.get("custom_id", "")).endswith(f":{CODES[decision]}")
        ]
        pending = bool(prompt.buttons())
        it = await self.fake.press(custom_id, user=self.people[who], message=prompt, stale=not pending)
        await self.fake.wait_for_interaction_response(it)

        def told() -> list[Message]:
            return [m for m in [*([it.original] if it.original else []), *it.followups] if m.ephemeral]

        if pending and who in ("alice", "boss"):
            await self.fake.wait_until(lambda: not prompt.buttons() or told(), 30, "the decision")
        else:
            await self.fake.wait_until(told, 30, "the private notice")
        notices = told()
        return notices[0].content if notices else None

    def prompt_text(self, prompt: Message) -> str:
        return prompt.content

    def rate_limit_final(self, retry_after: float) -> Callable[[], list[float]]:
        self.fake.fail(EDIT, Failure(429, retry_after=retry_after))
        return calls_since(self.fake, EDIT)

    def downloads(self) -> int:
        return len(self.fake.called("GET /attachments/{channel_id}/{attachment_id}/{filename}"))

    async def start_with_bad_token(self) -> None:
        agent = await Agent(self.make_sections()).start()
        try:
            await DiscordBot("team", agent, discord_settings(token="not-the-token")).adapter.start()
        finally:
            await agent.close()

    def token_key(self) -> str:
        return "bots.team.token"


class TestDiscordBot(ChatBotContract):
    @pytest.fixture
    async def harness(
        self, fake: FakeDiscord, fake_api: FakeAnthropicAPI, make_sections: Callable[..., Sections]
    ) -> AsyncIterator[DiscordHarness]:
        harness = DiscordHarness(fake, fake_api, make_sections)
        yield harness
        await harness.stop()
