"""Two Telegram bots on one store keep separate sessions, workspaces and delivery memories."""

from __future__ import annotations

from collections.abc import Callable

from bots.telegram import TelegramBot
from core import Agent, ConversationKey, Sections
from tests.fakes.anthropic_api import FakeAnthropicAPI

from .conftest import bot_settings
from .fake_bot_api import FakeBotAPI
from .people import ADA, ADA_DM


async def test_two_bots_of_one_platform_never_share_a_conversation(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with FakeBotAPI() as first_api, FakeBotAPI(token="654321:SECOND-token_for-the-fake") as second_api:
        # as run_bot.py does: one agent per bot, both on the same store and workspace directory
        first = TelegramBot("telegram", await Agent(make_sections()).start(), bot_settings(first_api))
        second = TelegramBot("team_tg", await Agent(make_sections()).start(), bot_settings(second_api))
        try:
            await first.adapter.start()
            await second.adapter.start()
            first_api.say(ADA_DM, ADA, "my name is Ada, remember it")
            await first_api.wait_for(lambda: first_api.texts(42), what="the first bot's answer")
            second_api.say(ADA_DM, ADA, "what is my name?")
            await second_api.wait_for(lambda: second_api.texts(42), what="the second bot's answer")

            plain, scoped = ConversationKey("telegram", "42"), ConversationKey("telegram", "42", bot="team_tg")
            one, two = await first.agent.conversations.get(plain), await second.agent.conversations.get(scoped)
            assert one is not None and two is not None and one.session_id != two.session_id
            seen_by_first = await first.agent.conversations.get(scoped)  # one store: both records are there
            assert seen_by_first is not None and seen_by_first.session_id == two.session_id
            assert first.agent.workspaces.root(plain) != second.agent.workspaces.root(scoped)
            assert one.cwd != two.cwd
            last = fake_api.requests[-1]
            assert last.last_user_text() == "what is my name?"
            assert "my name is Ada" not in str(last.messages)  # the second bot's session knows nothing of the first
            # the same update id on both bots is two different deliveries
            assert second_api.texts(42) == ["echo: what is my name?"]
        finally:
            for bot in (first, second):
                await bot.adapter.stop(drain_timeout=5)
                await bot.agent.close()
