"""Private chats end to end: real PTB polling the fake Bot API, the real agent CLI on the fake model."""

from __future__ import annotations

import asyncio
import copy
import logging

import pytest

from bots.telegram import TelegramBot
from core import Agent, ConversationKey
from core.commands import COMMANDS
from tests.fakes.anthropic_api import FakeAnthropicAPI, Text

from .conftest import BotFactory, bot_settings
from .fake_bot_api import FakeBotAPI
from .people import ADA, ADA_DM, BOB, BOB_DM, EVE, EVE_DM


def has_text(api: FakeBotAPI, chat_id: int, needle: str):
    return lambda: [t for t in api.texts(chat_id) if needle in t]


async def test_private_chat_streams_live_then_finishes(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    fake_api.enqueue(Text("The answer is **forty-two**, as computed by the machine.", chunks=4, delay=0.3))
    await make_bot()
    bot_api.say(ADA_DM, ADA, "what is the answer?")
    final = "The answer is forty-two, as computed by the machine."
    await bot_api.wait_for(has_text(bot_api, 42, final), what="the final message")

    drafts = [d for d in bot_api.drafts if d.chat_id == 42]
    assert drafts and drafts[0].text.startswith("The")
    assert any(d.text != final for d in drafts), "the reply was shown while it was being written"
    assert len({d.draft_id for d in drafts}) == 1  # one animated draft, then the message
    methods = [c.method for c in bot_api.calls]
    last_draft = max(i for i, m in enumerate(methods) if m == "sendMessageDraft")
    assert methods.index("sendMessage") > last_draft
    [message] = bot_api.bot_messages(42)
    assert message.text == final
    bold = [e for e in message.entities if e["type"] == "bold"]
    assert bold and message.text[bold[0]["offset"] : bold[0]["offset"] + bold[0]["length"]] == "forty-two"
    assert (42, "typing") in bot_api.chat_actions


async def test_a_second_message_remembers_the_first(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot()
    bot_api.say(ADA_DM, ADA, "my name is Ada")
    await bot_api.wait_for(has_text(bot_api, 42, "echo: my name is Ada"))
    bot_api.say(ADA_DM, ADA, "what is my name?")
    await bot_api.wait_for(has_text(bot_api, 42, "echo: what is my name?"))
    last = fake_api.requests[-1]
    assert "my name is Ada" in last.user_texts()  # the model saw the earlier turn: same session
    conv = await bot.agent.store.get(ConversationKey("telegram", "42"))
    assert conv is not None  # one session per user: telegram:<user id>


async def test_each_user_has_a_session_of_their_own(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot()
    bot_api.say(ADA_DM, ADA, "I am Ada")
    bot_api.say(BOB_DM, BOB, "I am Bob")
    await bot_api.wait_for(has_text(bot_api, 42, "echo: I am Ada"))
    await bot_api.wait_for(has_text(bot_api, 43, "echo: I am Bob"))
    ada = await bot.agent.store.get(ConversationKey("telegram", "42"))
    bob = await bot.agent.store.get(ConversationKey("telegram", "43"))
    assert ada and bob and ada.session_id != bob.session_id
    assert "I am Ada" not in str([r.messages for r in fake_api.requests if "I am Bob" in r.user_texts()])


async def test_private_chat_falls_back_to_post_and_edit_without_drafts(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    bot_api.unsupported.add("sendMessageDraft")  # e.g. an older self-hosted Bot API server
    fake_api.enqueue(Text("one two three four five six", chunks=3, delay=0.3))
    bot = await make_bot()
    bot_api.say(ADA_DM, ADA, "count")
    await bot_api.wait_for(lambda: bot_api.texts(42) == ["one two three four five six"], what="the full text")
    assert not bot.adapter.drafts.enabled
    [message] = bot_api.bot_messages(42)
    assert len(message.history) >= 2  # posted, then edited in place


async def test_a_duplicated_update_is_answered_once(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.telegram")
    await make_bot()
    update = bot_api.say(ADA_DM, ADA, "only once please")
    bot_api.push(copy.deepcopy(update))  # Telegram delivers the same update_id again
    bot_api.say(ADA_DM, ADA, "and then this")
    await bot_api.wait_for(has_text(bot_api, 42, "echo: and then this"))
    assert len([t for t in bot_api.texts(42) if "only once please" in t]) == 1
    assert sum("only once please" == r.last_user_text() for r in fake_api.requests) == 1
    assert any("delivered again" in r.getMessage() for r in caplog.records)


async def test_unknown_and_edited_updates_are_ignored(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, caplog: pytest.LogCaptureFixture
) -> None:
    await make_bot()
    caplog.set_level(logging.ERROR)
    bot_api.push({"some_future_update": {"id": 1, "what": "a type this bot has never heard of"}})
    edited = bot_api.new_message(ADA_DM, ADA, "an edited text", edit_date=1)
    bot_api.push({"edited_message": edited})
    bot_api.push(
        {"message_reaction": {"chat": ADA_DM, "message_id": 1, "date": 1, "old_reaction": [], "new_reaction": []}}
    )
    bot_api.say(ADA_DM, ADA, "a normal message")
    await bot_api.wait_for(has_text(bot_api, 42, "echo: a normal message"))
    assert bot_api.texts(42) == ["echo: a normal message"]
    assert [r.last_user_text() for r in fake_api.requests] == ["a normal message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_commands_are_registered_and_answered(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    await make_bot()
    assert bot_api.commands is not None
    assert [c["command"] for c in bot_api.commands] == list(COMMANDS)
    assert all(c["description"] for c in bot_api.commands)
    bot_api.say(ADA_DM, ADA, "/status")
    await bot_api.wait_for(has_text(bot_api, 42, "No session yet"))
    bot_api.say(ADA_DM, ADA, "/start")  # what Telegram sends when a user opens the bot: the help
    await bot_api.wait_for(has_text(bot_api, 42, "/history"))
    bot_api.say(ADA_DM, ADA, "/cwd")
    await bot_api.wait_for(has_text(bot_api, 42, "Working directory"))
    assert not fake_api.requests  # commands never reach the model


async def test_users_outside_the_allowlist_get_one_polite_refusal(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    await make_bot(access={"allow_all": False, "allowlist": ["telegram:42"]})
    file_id = bot_api.add_file(b"secret plans", "documents/plans.txt")
    bot_api.say(EVE_DM, EVE, "let me in")
    bot_api.say(EVE_DM, EVE, "please?")
    bot_api.say(
        EVE_DM,
        EVE,
        None,
        caption="take this",
        document={"file_id": file_id, "file_unique_id": "u1", "file_name": "plans.txt", "file_size": 12},
    )
    bot_api.say(ADA_DM, ADA, "hi, it's Ada")
    await bot_api.wait_for(has_text(bot_api, 42, "echo: hi, it's Ada"))
    await bot_api.wait_for(lambda: bot_api.texts(66), what="the refusal")
    refusals = bot_api.texts(66)
    assert len(refusals) == 1 and "allowlist" in refusals[0]
    assert [r.last_user_text() for r in fake_api.requests] == ["hi, it's Ada"]  # nothing of Eve's ran
    assert not bot_api.calls_of("getFile")  # her file was never downloaded


async def test_run_serves_until_cancelled(bot_api: FakeBotAPI, make_sections, fake_api: FakeAnthropicAPI) -> None:
    async with Agent(make_sections()) as agent:
        bot = TelegramBot("tg", agent, bot_settings(bot_api))
        task = asyncio.create_task(bot.run())
        bot_api.say(ADA_DM, ADA, "are you there?")
        await bot_api.wait_for(has_text(bot_api, 42, "echo: are you there?"))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not bot.adapter.application.running


async def test_an_update_ptb_cannot_parse_is_skipped_and_later_ones_are_answered(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    await make_bot()
    broken = bot_api.push({"message": {"text": "x"}})  # no message_id, date or chat: PTB cannot parse it
    bot_api.say(ADA_DM, ADA, "are you still listening?")
    await bot_api.wait_for(has_text(bot_api, 42, "echo: are you still listening?"), what="the reply after it")
    assert [r.last_user_text() for r in fake_api.requests] == ["are you still listening?"]
    skipped = [r.getMessage() for r in caplog.records if "could not be parsed" in r.getMessage()]
    assert skipped and str(broken["update_id"]) in skipped[0]
    assert not [r for r in caplog.records if r.levelno >= logging.CRITICAL]  # PTB's "not processed" never fired


async def test_a_429_on_the_final_message_after_drafts_is_waited_out(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    final = "one two three four five six seven eight nine ten"
    fake_api.enqueue(Text(final, chunks=3, delay=0.25))
    bot_api.fail("sendMessage", 429, retry_after=1)  # the only sendMessage of a drafted reply: its final text
    bot_api.flood_control = True
    await make_bot()
    bot_api.say(ADA_DM, ADA, "count to ten")
    await bot_api.wait_for(lambda: bot_api.texts(42), what="the final message")
    assert bot_api.texts(42) == [final]
    assert [d for d in bot_api.drafts if d.chat_id == 42]  # it streamed as a draft first
    assert bot_api.pending_failures("sendMessage") == 0 and len(bot_api.calls_of("sendMessage")) == 2
    assert bot_api.early_calls == []  # the retry came after retry_after, and no draft slipped in before it
