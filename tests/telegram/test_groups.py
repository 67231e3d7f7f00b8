"""Groups, supergroups and forum topics end to end."""

from __future__ import annotations

import logging

import pytest

from core import ConversationKey
from tests.fakes.anthropic_api import FakeAnthropicAPI, Text

from .conftest import BotFactory
from .fake_bot_api import FakeBotAPI
from .people import ADA, BOB, EVE, FORUM, MENTION, TEAM

TEAM_KEY = ConversationKey("telegram", f"chat{TEAM['id']}")


def replies(api: FakeBotAPI, chat_id: int, needle: str):
    return lambda: [m for m in api.bot_messages(chat_id) if needle in m.text]


def model_saw(fake: FakeAnthropicAPI, needle: str) -> bool:
    return any(needle in str(r.messages) for r in fake.requests)


async def test_group_message_without_mention_is_ignored_with_mention_answered(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    await make_bot()
    bot_api.say(TEAM, ADA, "just chatting among ourselves")
    asked = bot_api.say(TEAM, ADA, f"{MENTION} what is two plus two?")
    [reply] = await bot_api.wait_for(replies(bot_api, TEAM["id"], "what is two plus two?"), what="the reply")
    assert reply.text == "echo: [Ada] what is two plus two?"  # mention stripped, speaker named
    assert reply.reply_to == asked["message"]["message_id"]  # answers the message that asked
    assert not model_saw(fake_api, "just chatting")
    assert len(bot_api.bot_messages(TEAM["id"])) == 1


async def test_group_replies_to_the_bot_and_commands_are_answered_others_are_not(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot()
    bot_api.say(TEAM, ADA, f"{MENTION} remember the word pineapple")
    [first] = await bot_api.wait_for(replies(bot_api, TEAM["id"], "pineapple"))
    bot_api.say(TEAM, BOB, "which word?", reply_to=first)  # a reply to the bot: no mention needed
    await bot_api.wait_for(replies(bot_api, TEAM["id"], "[Bob] which word?"))
    assert "pineapple" in str(fake_api.requests[-1].messages)  # one session for the whole chat
    bot_api.say(TEAM, BOB, "/status@some_other_bot")  # for another bot
    bot_api.say(TEAM, BOB, "/roll 2d6")  # not one of ours: some other bot's
    bot_api.say(TEAM, BOB, "/status")  # for every bot, ours included
    await bot_api.wait_for(replies(bot_api, TEAM["id"], "Session"), what="the /status answer")
    bot_api.say(TEAM, ADA, f"thanks {MENTION}")
    await bot_api.wait_for(replies(bot_api, TEAM["id"], "[Ada] thanks"))
    assert len(replies(bot_api, TEAM["id"], "Session")()) == 1
    assert not model_saw(fake_api, "roll 2d6")
    assert await bot.agent.store.get(TEAM_KEY) is not None
    assert await bot.agent.store.get(ConversationKey("telegram", "43")) is None  # not Bob's private session


async def test_forum_topics_have_a_session_each(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot()
    bot_api.say(FORUM, ADA, f"{MENTION} topic five here", thread_id=5)
    bot_api.say(FORUM, BOB, f"{MENTION} topic nine here", thread_id=9)
    [five] = await bot_api.wait_for(replies(bot_api, FORUM["id"], "topic five here"))
    [nine] = await bot_api.wait_for(replies(bot_api, FORUM["id"], "topic nine here"))
    assert (five.thread_id, nine.thread_id) == (5, 9)  # each answer lands in its topic
    a = await bot.agent.store.get(ConversationKey("telegram", f"chat{FORUM['id']}", "5"))
    b = await bot.agent.store.get(ConversationKey("telegram", f"chat{FORUM['id']}", "9"))
    assert a and b and a.session_id != b.session_id
    assert a.cwd == b.cwd  # one workspace for the chat
    assert not [r for r in fake_api.requests if "topic five" in str(r.messages) and "topic nine" in str(r.messages)]


async def test_a_429_on_edit_still_ends_with_the_full_final_text(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    full = " ".join(f"word{i}" for i in range(60))
    fake_api.enqueue(Text(full, chunks=5, delay=0.25))
    bot_api.fail("editMessageText", 429, retry_after=1)
    bot_api.flood_control = True
    await make_bot()  # with PTB's AIORateLimiter on, as in production
    bot_api.say(TEAM, ADA, f"{MENTION} talk to me")
    await bot_api.wait_for(lambda: full in bot_api.texts(TEAM["id"]), what="the complete final text")
    assert bot_api.pending_failures("editMessageText") == 0  # the 429 was served and waited out
    [message] = bot_api.bot_messages(TEAM["id"])
    assert message.text == full and len(message.history) >= 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # a handled 429 is no error
    assert bot_api.early_calls == []  # nothing was sent to the chat before retry_after had passed


async def test_a_429_on_the_final_edit_is_waited_out_and_the_full_text_arrives(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    full = " ".join(f"part{i}" for i in range(40))
    fake_api.enqueue(Text(full, chunks=4, delay=0.25))
    # the edit that brings the message to its final text is refused
    bot_api.fail("editMessageText", 429, retry_after=1, when=lambda p: p.get("text") == full)
    bot_api.flood_control = True
    await make_bot()
    bot_api.say(TEAM, ADA, f"{MENTION} say it all")
    await bot_api.wait_for(lambda: full in bot_api.texts(TEAM["id"]), what="the complete final text")
    assert bot_api.pending_failures("editMessageText") == 0
    [message] = bot_api.bot_messages(TEAM["id"])
    assert message.text == full
    assert bot_api.early_calls == []


async def test_groups_can_be_switched_off(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    await make_bot(settings={"groups": False})
    bot_api.say(TEAM, ADA, f"{MENTION} are you there?")
    bot_api.say({"id": 42, "type": "private", "first_name": "Ada"}, ADA, "and here?")
    await bot_api.wait_for(lambda: bot_api.texts(42), what="the private reply")
    assert not bot_api.bot_messages(TEAM["id"])
    assert not model_saw(fake_api, "are you there?")


async def test_allow_names_the_person_replied_to_mentioned_or_typed_and_never_a_guess(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot(access={"allow_all": False, "allowlist": ["telegram:42"], "admins": ["telegram:42"]})
    grants = bot.dispatcher.grants

    async def granted() -> list[str]:
        await grants.refresh(force=True)
        return sorted(grants.entries)

    said_by_bob = bot_api.say(TEAM, BOB, "hello all")["message"]
    bot_api.say(TEAM, ADA, "/allow", reply_to=said_by_bob)  # a bare /allow answering Bob's message: Bob
    await bot_api.wait_for(replies(bot_api, TEAM["id"], "telegram:43"), what="Bob allowed")
    assert await granted() == ["telegram:43"]
    bot_api.say(TEAM, ADA, "/allow 555", reply_to=said_by_bob)  # an id typed in a reply: that id, not Bob again
    await bot_api.wait_for(replies(bot_api, TEAM["id"], "telegram:555"), what="555 allowed")
    assert await granted() == ["telegram:43", "telegram:555"]
    eve_mention = [{"type": "text_mention", "offset": 7, "length": 3, "user": EVE}]
    bot_api.say(TEAM, ADA, "/allow Eve", entities=eve_mention)  # picked from the mention list: linked to her id
    await bot_api.wait_for(replies(bot_api, TEAM["id"], "telegram:66"), what="Eve allowed")
    bot_api.say(TEAM, ADA, "/allow @carol")  # a username Telegram did not link: nobody the bot can name
    [answer] = await bot_api.wait_for(replies(bot_api, TEAM["id"], "can't tell who"), what="the refusal")
    assert "@carol" in answer.text
    assert await granted() == ["telegram:43", "telegram:555", "telegram:66"]
    assert not fake_api.requests  # commands only: nothing reached Claude
