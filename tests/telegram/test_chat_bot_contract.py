"""The chat-bot contract on Telegram: real python-telegram-bot against the fake Bot API."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from adapters.telegram.approvals import parse_press
from bots.telegram import TelegramBot
from core import Agent, ConversationKey, Decision, Sections
from core.config import deep_merge
from tests.contracts.chat_bot_contract import ChatBotContract, ChatHarness, calls_since
from tests.fakes.anthropic_api import FakeAnthropicAPI

from .conftest import bot_settings
from .fake_bot_api import ChatMessage, FakeBotAPI, private_chat, user

PEOPLE = {
    "alice": user(42, "Alice", "alice"),
    "bob": user(43, "Bob", "bob"),
    "boss": user(7, "Boss", "boss"),
    "eve": user(66, "Eve", "eve"),
}
_CODES = {Decision.ALLOW_ONCE: "o", Decision.ALLOW_SESSION: "s", Decision.DENY: "d"}


class TelegramHarness(ChatHarness):
    platform = "telegram"

    def __init__(self, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, make_sections: Callable[..., Sections]) -> None:
        self.bot_api = bot_api
        self.fake_api = fake_api
        self.make_sections = make_sections
        self.bot: TelegramBot | None = None
        self._files = itertools.count(1)

    async def start(self, **sections: Any) -> Agent:
        access = {"allow_all": False, "allowlist": ["telegram:42", "telegram:43"], "admins": ["telegram:7"]}
        agent = await Agent(self.make_sections(**deep_merge({"access": access}, sections))).start()
        self.bot = TelegramBot("telegram", agent, bot_settings(self.bot_api))
        await self.bot.adapter.start()
        return agent

    async def stop(self) -> None:
        if self.bot is not None:
            bot, self.bot = self.bot, None
            await bot.adapter.stop(drain_timeout=10)
            await bot.agent.close()

    def key(self, who: str) -> ConversationKey:
        return ConversationKey("telegram", str(PEOPLE[who]["id"]))

    async def say(self, who: str, text: str, *, files: dict[str, bytes] | None = None) -> Any:
        person = PEOPLE[who]
        if not files:
            return self.bot_api.say(private_chat(person), person, text)
        [(name, data)] = files.items()
        file_id = self.bot_api.add_file(data, f"documents/file_{next(self._files)}.bin")
        document = {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_name": name, "file_size": len(data)}
        return self.bot_api.say(private_chat(person), person, None, caption=text, document=document)

    async def redeliver(self, delivery: Any) -> None:
        self.bot_api.redeliver(delivery)

    def replies(self, who: str) -> list[str]:
        return self.bot_api.texts(PEOPLE[who]["id"])

    async def approval(self, who: str) -> ChatMessage:
        chat = PEOPLE[who]["id"]
        [prompt] = await self.bot_api.wait_for(
            lambda: [m for m in self.bot_api.bot_messages(chat) if m.buttons()], what="approval buttons"
        )
        return prompt

    async def press(self, prompt: ChatMessage, who: str, decision: Decision) -> str | None:
        data = next(
            (b["callback_data"] for b in prompt.buttons() if b["callback_data"].endswith(f":{_CODES[decision]}")),
            None,
        )
        if data is None:  # the buttons are gone (decided): press the one the user saw
            request_id = getattr(prompt, "_ccbridge_request_id", "gone")
            data = f"ap:{request_id}:{_CODES[decision]}"
        else:
            press = parse_press(data)
            prompt._ccbridge_request_id = press.request_id if press else "gone"  # type: ignore[attr-defined]
        update = self.bot_api.press(PEOPLE[who], prompt, data)
        [answer] = await self.bot_api.wait_for(lambda: self.bot_api.answers_for(update), what="the button's answer")
        return answer.get("text") if answer.get("show_alert") else None

    def prompt_text(self, prompt: ChatMessage) -> str:
        return prompt.text

    def rate_limit_final(self, retry_after: float) -> Callable[[], list[float]]:
        self.bot_api.fail("sendMessage", 429, retry_after=int(retry_after))
        return calls_since(self.bot_api, "sendMessage")

    def downloads(self) -> int:
        return len(self.bot_api.calls_of("getFile"))

    async def start_with_bad_token(self) -> None:
        agent = await Agent(self.make_sections()).start()
        try:
            bot = TelegramBot("team", agent, bot_settings(self.bot_api, token="123456:WRONG-token-for-the-fake00"))
            await bot.adapter.start()
        finally:
            await agent.close()

    def token_key(self) -> str:
        return "bots.team.token"


class TestTelegramBot(ChatBotContract):
    @pytest.fixture
    async def harness(
        self, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, make_sections: Callable[..., Sections]
    ) -> AsyncIterator[TelegramHarness]:
        harness = TelegramHarness(bot_api, fake_api, make_sections)
        yield harness
        await harness.stop()
