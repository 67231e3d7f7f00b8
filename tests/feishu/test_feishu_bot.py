"""The Feishu bot end to end: real lark-oapi against the fake Open Platform, the real Claude Code CLI, the fake model.

Group threads and p2p chats, CardKit streaming and its fallbacks, deduplication across
re-pushes and reconnects, callback verification, approval buttons, files both ways.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bots.feishu import FeishuBot, FeishuSettings, conversation_key
from core import Agent, ConfigError, ConversationKey, PlatformUnavailable
from tests.fakes.anthropic_api import FakeAnthropicAPI, Hang, Text, ToolCall
from tests.fakes.platform_server import Failure
from tests.helpers import eventually

from . import errors, events
from .conftest import (
    BotFactory,
    approvals_in,
    button_value,
    buttons,
    content,
    feishu_settings,
    replies,
    reply_containing,
    upload_named,
)
from .fake_feishu import FakeFeishu
from .model import Message

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
FIRST = "Streaming starts here."
LONG_ANSWER = FIRST + "\n\n" + " ".join(f"word{i}" for i in range(40)) + " done."


def in_two_parts(answer: str, pause: float = 1.0) -> list[Any]:
    """The model writes the first paragraph, pauses (the reply card is on screen meanwhile), then the rest."""
    first, rest = answer.split("\n\n", 1)
    return [Hang(first, seconds=pause), Text(rest, chunks=4, delay=0.1)]


def bot_card(fake: FakeFeishu, chat: Any, thread: str | None = None) -> Message:
    """The bot's first reply card in a chat (or thread)."""
    cards = [
        m for m in fake.bot_messages(chat) if m.msg_type == "interactive" and (thread is None or m.thread_id == thread)
    ]
    assert cards, "no card from the bot"
    return cards[0]


async def idle(bot: Any, key: ConversationKey) -> None:
    """Wait until the conversation's turn is over (the reply's text can be complete a little earlier)."""
    await eventually(lambda: not bot.agent.conversations.busy(key), what="the turn to end")


# -- who it answers, where, and how the reply streams ---------------------------------------------
async def test_a_mention_quoting_someone_gets_a_thread_whose_follow_ups_continue_it(
    make_bot: BotFactory, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot()
    fake, alice, bob = bot.fake, bot.people["alice"], bot.people["bob"]
    group = fake.add_chat("Team")
    human = fake.user_message(bob, chat=group, text="the build is red").message
    asking = await bot.send(alice, reply_to=human, in_thread=False, text="why is it red?", mentions=[fake.bot])
    await reply_containing(fake, group, "why is it red?")
    card = bot_card(fake, group)
    assert card.thread_id and card.root_id == asking.message.message_id  # the thread starts under the question
    key = ConversationKey("feishu", group.chat_id, asking.message.message_id)
    await idle(bot, key)
    await bot.send(alice, reply_to=card, in_thread=True, text="and how do I fix it?")  # no mention needed
    await reply_containing(fake, group, "and how do I fix it?", thread=card.thread_id)
    assert any("why is it red?" in t for t in fake_api.requests[-1].user_texts())  # the same session
    assert [str(c.key) for c in await bot.agent.store.list()] == [str(key)]


@pytest.mark.parametrize("mode", ["long_connection", "callback"])
async def test_a_group_mention_gets_a_streamed_card_in_a_thread_that_remembers(
    make_bot: BotFactory, fake_api: FakeAnthropicAPI, mode: str
) -> None:
    bot = await make_bot(mode)
    fake, alice = bot.fake, bot.people["alice"]
    group = fake.add_chat("Team")
    fake_api.rules["explain streaming"] = in_two_parts(LONG_ANSWER)
    question = await bot.send(alice, chat=group, text="explain streaming", mentions=[fake.bot])

    final = await reply_containing(fake, group, "done.")
    assert final == LONG_ANSWER
    card = bot_card(fake, group)
    entity = card.card
    assert entity is not None and entity.message_ids == [card.message_id]  # sent as {"type":"card","data":{"card_id"}}
    assert content(card) == {"type": "card", "data": {"card_id": entity.card_id}}
    assert card.thread_id and card.root_id == question.message.message_id  # reply_in_thread under the question
    assert question.message.thread_id == card.thread_id
    await eventually(lambda: not entity.streaming_mode, what="streaming turned off")
    created = json.loads(fake.called("cardkit.v1.card.create")[0].params["data"])
    assert created["config"]["streaming_mode"] is True and created["body"]["elements"][0]["content"] == FIRST
    assert entity.sequences == sorted(set(entity.sequences)) and len(entity.updates) >= 1  # streamed, in order
    assert entity.settings_changes[-1].streaming_mode is False
    assert entity.history("answer")[-1] == LONG_ANSWER
    assert all(LONG_ANSWER.startswith(text) for text in entity.history("answer"))  # the full text so far, each time
    asked = fake_api.requests[0].last_user_text()  # a shared thread names its speakers
    assert asked == f"[{alice.open_id}] explain streaming"  # the mention is not what Claude sees

    # a follow-up in the thread, without a mention, continues the same session
    key = ConversationKey("feishu", group.chat_id, question.message.message_id)
    await idle(bot, key)
    await bot.send(alice, reply_to=card, text="and the second part?")
    await reply_containing(fake, group, "and the second part?", thread=card.thread_id)
    follow_up = fake_api.requests[-1]
    assert any("explain streaming" in t for t in follow_up.user_texts())  # the thread's history came along
    conv = await bot.agent.conversations.get(key)
    assert conv is not None and len(fake.thread(card.thread_id)) == 4
    assert all(m.thread_id == card.thread_id for m in fake.bot_messages(group))


async def test_a_fast_stream_stays_within_ten_card_updates_a_second(
    make_bot: BotFactory, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot()
    fake, alice = bot.fake, bot.people["alice"]
    answer = " ".join(f"w{i}" for i in range(300)) + " done."
    fake_api.rules["stream fast"] = [Text(answer, chunks=150, delay=0.01)]  # far more deltas than updates allowed
    await bot.send(alice, text="stream fast")
    assert await reply_containing(fake, None, "done.") == answer
    entity = bot_card(fake, None).card
    assert entity is not None
    await eventually(lambda: not entity.streaming_mode, what="streaming turned off")
    assert len(entity.updates) >= 3  # it did stream
    assert [card.throttled for card in fake.cards.values()] == [0] * len(fake.cards)  # never over 10/s (99991400)


async def test_p2p_chats_answer_every_message_and_unmentioned_group_chatter_is_ignored(
    make_bot: BotFactory, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot()
    fake, alice, bob = bot.fake, bot.people["alice"], bot.people["bob"]
    group = fake.add_chat("Team")
    await bot.send(bob, chat=group, text="just chatting")
    await bot.send(bob, chat=group, text="hello everyone", mention_all=True)  # @all is not a mention of the bot
    await bot.send(bob, chat=group, text="hey @Alice", mentions=[alice])
    human = fake.user_message(bob, chat=group, text="a thread among people").message
    await bot.send(alice, reply_to=human, in_thread=True, text="no bot in here")  # a thread it never joined
    assert bot.bot.describe() == f"feishu (feishu, long connection, 127.0.0.1:{fake.port})"
    await bot.send(alice, text="hi in private")
    dm = fake.p2p_chat(alice)
    assert await reply_containing(fake, dm, "echo: hi in private")
    assert bot_card(fake, dm).thread_id is None  # p2p: a plain message in the chat, not a thread
    await bot.send(alice, chat=group, text="barrier", mentions=[fake.bot, bob])
    await reply_containing(fake, group, "@Bob barrier")  # others' mentions read as @Name
    asked = [r.last_user_text() for r in fake_api.requests]
    assert asked == ["hi in private", f"[{alice.open_id}] @Bob barrier"]
    assert len(fake.bot_messages(group)) == 1


async def test_rich_text_posts_are_read_as_text_and_commands_work_after_a_mention(
    make_bot: BotFactory, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot()
    fake, alice = bot.fake, bot.people["alice"]
    group = fake.add_chat("Team")
    post = [
        [{"tag": "text", "text": "please read "}, {"tag": "a", "text": "the docs", "href": "https://example.com/d"}],
        [{"tag": "code_block", "language": "PYTHON", "text": "print(1)"}],
    ]
    question = await bot.send(alice, chat=group, post=post, title="Review", mentions=[fake.bot])
    await reply_containing(fake, group, "please read")
    asked = fake_api.requests[-1].last_user_text()
    assert asked.startswith(f"[{alice.open_id}] Review\nplease read [the docs](https://example.com/d)\n")
    assert "```python\nprint(1)\n```" in asked and "@_user" not in asked
    card = bot_card(fake, group)
    await bot.send(alice, reply_to=card, text="/status", mentions=[fake.bot])  # a command after a mention
    status = await reply_containing(fake, group, "Session", thread=card.thread_id)
    assert "echo" not in status and len(fake_api.requests) == 1  # commands never reach Claude
    await bot.send(alice, text="/help")  # and in p2p without one
    assert await reply_containing(fake, fake.p2p_chat(alice), "/new")
    assert question.message.thread_id == card.thread_id


async def test_an_admin_grants_and_revokes_by_mention_in_private_and_in_a_group(
    make_bot: BotFactory, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot()
    fake, boss, eve, alice = bot.fake, bot.people["boss"], bot.people["eve"], bot.people["alice"]
    await bot.send(boss, text="/allow @_user_1", mentions=[eve])  # as typed in the p2p chat: "/allow @Eve"
    granted = await reply_containing(fake, fake.p2p_chat(boss), "may use the bot now")
    assert f"feishu:{eve.open_id}" in granted
    await bot.send(eve, text="hi, it's Eve")
    assert await reply_containing(fake, fake.p2p_chat(eve), "echo: hi, it's Eve")

    group = fake.add_chat("Team")
    await bot.send(boss, chat=group, text="@_user_1 /revoke @_user_2", mentions=[fake.bot, eve])
    revoked = await reply_containing(fake, group, "no longer")
    assert f"feishu:{eve.open_id}" in revoked
    await bot.send(alice, chat=group, text="@_user_1 /allow @_user_2", mentions=[fake.bot, eve])
    assert await reply_containing(fake, group, "Only admins")
    await bot.send(eve, text="and now?")
    await bot.send(alice, text="barrier")
    assert await reply_containing(fake, fake.p2p_chat(alice), "echo: barrier")
    asked = [r.last_user_text() for r in fake_api.requests]
    assert asked == ["hi, it's Eve", "barrier"]


async def test_a_message_refused_for_a_spent_budget_leaves_no_working_reaction(
    make_bot: BotFactory, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot(sections={"budgets": {"daily_usd": 0.00001}})
    fake, alice = bot.fake, bot.people["alice"]
    await bot.send(alice, text="first")
    dm = fake.p2p_chat(alice)
    assert await reply_containing(fake, dm, "echo: first")
    await eventually(lambda: not bot.agent.conversations.running(), what="the first turn to end (its cost counted)")
    second = await bot.send(alice, text="second")  # shows the working reaction at once, then is refused
    assert await reply_containing(fake, dm, "used your daily budget")
    await eventually(lambda: not second.message.reactions, what="the working reaction removed")
    assert [r.last_user_text() for r in fake_api.requests] == ["first"]


# -- deliveries: acked at once, handled once ---------------------------------------------------------
async def test_events_are_acked_at_once_and_replays_after_a_reconnect_answer_once(
    make_bot: BotFactory, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot()
    fake, alice = bot.fake, bot.people["alice"]
    dm = fake.p2p_chat(alice)
    fake_api.rules["think long"] = [Hang("thinking", seconds=60)]
    inbound = fake.user_message(alice, text="think long")
    delivery = await fake.push(inbound.event)
    await reply_containing(fake, dm, "thinking")  # the turn is still running…
    assert delivery.acked and delivery.pushes == 1  # …and the event was acked long before it ends
    await bot.send(alice, text="/stop")
    await reply_containing(fake, dm, "Stopped")

    conn = await fake.wait_for_connection()
    await fake.drop_connection(conn, abrupt=True)
    await fake.wait_for_connection(total=2)  # lark-oapi reconnects
    again = await fake.wait_for_ack(await fake.push(inbound.event))  # Feishu replays the event
    assert again.acked
    twin = fake.user_message(alice, text="think long")  # the same message under another event id
    twin.event["event"]["message"]["message_id"] = inbound.message.message_id
    await fake.wait_for_ack(await fake.push(twin.event))
    await bot.send(alice, text="barrier")
    await reply_containing(fake, dm, "echo: barrier")
    assert [r.last_user_text() for r in fake_api.requests].count("think long") == 1
    unknown = events.envelope(fake.app, "im.chat.updated_v1", {"chat_id": dm.chat_id})
    assert (await fake.wait_for_ack(await fake.push(unknown))).pushes == 1  # unknown types are acked, not re-pushed


# -- HTTP callbacks ----------------------------------------------------------------------------------
async def test_forged_stale_or_unsigned_callbacks_are_refused_and_run_nothing(
    make_bot: BotFactory, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot("callback")
    fake, alice = bot.fake, bot.people["alice"]
    key = fake.encrypt_key
    event = fake.user_message(alice, text="should not run").event
    forged = await fake.post_callback(bot.url, event, encrypt_key=key, forge=True)
    stale = await fake.post_callback(bot.url, event, encrypt_key=key, stale=True)
    wrong_token = await fake.post_callback(bot.url, event, encrypt_key=key, verification_token="not-it")
    plain = await fake.post_callback(bot.url, event)  # unencrypted and unsigned, though a key is set
    assert (forged.status, stale.status, wrong_token.status, plain.status) == (401, 401, 401, 400)
    challenge = await fake.post_callback(bot.url, fake.url_verification("c-42"), encrypt_key=key)
    assert challenge.status == 200 and challenge.json() == {"challenge": "c-42"}
    lowered = await fake.post_callback(
        bot.url, fake.user_message(alice, text="lower-case headers").event, encrypt_key=key, lowercase_headers=True
    )
    assert lowered.status == 200  # HTTP/2 proxies lower-case X-Lark-*: still verified
    await reply_containing(fake, fake.p2p_chat(alice), "echo: lower-case headers")
    assert [r.last_user_text() for r in fake_api.requests] == ["lower-case headers"]


async def test_without_an_encrypt_key_the_verification_token_guards_the_endpoint(
    make_bot: BotFactory, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot("callback", encrypt_key="")
    fake, alice = bot.fake, bot.people["alice"]
    event = fake.user_message(alice, text="plain callback").event
    assert (await fake.post_callback(bot.url, event, forge=True)).status == 401  # another token
    assert (await fake.post_callback(bot.url, event, stale=True)).status == 401
    encrypted = await fake.post_callback(bot.url, event, encrypt_key=fake.encrypt_key)
    assert encrypted.status == 400  # no key to read it with
    assert (await fake.post_callback(bot.url, fake.url_verification("c-1"))).json() == {"challenge": "c-1"}
    assert (await fake.post_callback(bot.url, event)).status == 200
    await reply_containing(fake, fake.p2p_chat(alice), "echo: plain callback")


# -- CardKit fallbacks -------------------------------------------------------------------------------
TABLE_ANSWER = (
    "Here are the numbers you asked for, in a table:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nAnd a closing line."
)


async def test_content_a_card_cannot_hold_is_sent_as_rich_text(
    make_bot: BotFactory, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot()
    fake, alice = bot.fake, bot.people["alice"]
    dm = fake.p2p_chat(alice)
    fake_api.rules["numbers"] = in_two_parts(TABLE_ANSWER)
    has_table = Failure(400, code=errors.CARD_CONTENT_FAILED, when=lambda p: "| a |" in str(p.get("content")))
    fake.fail("cardkit.v1.card_element.content", has_table, times=10)  # "card table number over limit"
    await bot.send(alice, text="numbers")
    await eventually(lambda: "closing line." in "".join(replies(fake, dm)), what="the end of the answer")
    card, *rest = fake.bot_messages(dm)
    assert card.card is not None and "| a |" not in card.text and not card.card.streaming_mode
    assert [m.msg_type for m in rest] == ["post"]
    shown = "".join(replies(fake, dm))
    assert "".join(shown.split()) == "".join(TABLE_ANSWER.split())  # all of it, once


async def test_a_refused_card_update_falls_back_to_patching_and_the_full_text_arrives(
    make_bot: BotFactory, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot()
    fake, alice = bot.fake, bot.people["alice"]
    dm = fake.p2p_chat(alice)
    fake_api.rules["tell me everything"] = in_two_parts(LONG_ANSWER)
    fake.fail("cardkit.v1.card_element.content", Failure(400, code=errors.CARD_JSON_INVALID))
    await bot.send(alice, text="tell me everything")
    await reply_containing(fake, dm, "done.")
    [message] = fake.bot_messages(dm)
    assert message.text == LONG_ANSWER and message.card is None  # patched to a plain card
    assert message.patches >= 1
    entity = fake.card(json.loads(message.history[0].content)["data"]["card_id"])
    assert not entity.streaming_mode  # the abandoned entity does not keep saying "generating"

    # an app without the CardKit permission: every later reply is a card updated by patch
    await idle(bot, bot.key(alice))
    fake.fail("cardkit.v1.card.create", Failure(400, code=99991672, description="Access denied"))
    await bot.send(alice, text="one more")
    await reply_containing(fake, dm, "echo: one more")
    await idle(bot, bot.key(alice))  # not queued behind the turn still recording its end (a notice more)
    await bot.send(alice, text="and once more")
    await reply_containing(fake, dm, "echo: and once more")
    assert len(fake.called("cardkit.v1.card.create")) == 2  # not tried again after the refusal
    assert [m.card for m in fake.bot_messages(dm)[1:]] == [None, None]


# -- approvals ---------------------------------------------------------------------------------------
async def test_an_approval_pressed_by_someone_else_is_refused_and_the_thread_session_goes_on(
    make_bot: BotFactory, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot()
    fake, alice, bob = bot.fake, bot.people["alice"], bot.people["bob"]
    group = fake.add_chat("Team")
    fake_api.rules["write the file"] = [ToolCall("Bash", {"command": "echo ran > approved.txt", "description": "w"})]
    question = await bot.send(alice, chat=group, text="write the file", mentions=[fake.bot])
    [prompt] = await eventually(lambda: [m for m in approvals_in(fake, group) if buttons(m)], what="the prompt")
    key = ConversationKey("feishu", group.chat_id, question.message.message_id)
    value = button_value(prompt, "allow_session")
    assert value["conversation"] == str(key) and prompt.thread_id == question.message.thread_id

    told = await bot.press(bob, prompt, value)
    assert (
        told is not None
        and told["toast"]["type"] == "error"
        and "only the person who asked" in told["toast"]["content"].lower()
    )
    assert buttons(fake.message(prompt.message_id))  # still pending
    done = await bot.press(alice, prompt, value)
    assert done == {"toast": {"type": "success", "content": "Allowed for this session"}}
    await reply_containing(fake, group, "tool result:")
    decided = await eventually(lambda: "Allowed for this session" in fake.message(prompt.message_id).text, what="x")
    assert decided and not buttons(fake.message(prompt.message_id))
    workspace = bot.agent.workspaces.root(key)
    assert (workspace / "approved.txt").read_text() == "ran\n"
    assert [c.key for c in await bot.agent.store.list()] == [key]  # the press started no session of its own
    assert all(m.thread_id == question.message.thread_id for m in fake.bot_messages(group))


# -- files ---------------------------------------------------------------------------------------------
async def test_files_reach_the_workspace_and_files_come_back(make_bot: BotFactory, fake_api: FakeAnthropicAPI) -> None:
    bot = await make_bot()
    fake, alice = bot.fake, bot.people["alice"]
    dm = fake.p2p_chat(alice)
    await bot.send(alice, file=("notes é.txt", b"remember the milk\n"))
    await reply_containing(fake, dm, "echo:")
    uploads = bot.agent.workspaces.root(bot.key(alice)) / "uploads"
    [notes] = list(uploads.iterdir())
    assert notes.read_bytes() == b"remember the milk\n" and notes.suffix == ".txt"
    assert f"uploads/{notes.name}" in fake_api.requests[-1].last_user_text()
    await idle(bot, bot.key(alice))
    await bot.send(alice, image=PNG)
    await eventually(lambda: len(fake_api.requests) == 2, what="the image turn")
    await idle(bot, bot.key(alice))
    [image] = [p for p in uploads.iterdir() if p.name.startswith("image_")]
    assert image.read_bytes() == PNG and fake_api.requests[-1].images()

    root = bot.agent.workspaces.root(bot.key(alice))
    (root / "report.csv").write_text("a,b\n1,2\n")
    (root / "chart.png").write_bytes(PNG)
    fake_api.rules["send the report"] = [
        ToolCall("mcp__ccbridge__send_file", {"path": "report.csv", "caption": "the **report**"})
    ]
    fake_api.rules["send the chart"] = [ToolCall("mcp__ccbridge__send_file", {"path": "chart.png"})]
    await bot.send(alice, text="send the report")
    await reply_containing(fake, dm, "tool result")
    report = await eventually(lambda: upload_named(fake, "report.csv"), what="the upload")
    assert report.data == b"a,b\n1,2\n" and report.file_type == "stream"
    [sent] = [m for m in fake.bot_messages(dm) if m.msg_type == "file"]
    assert content(sent) == {"file_key": report.key}
    assert any("the **report**" in r for r in replies(fake, dm))
    await idle(bot, bot.key(alice))
    await bot.send(alice, text="send the chart")
    await eventually(lambda: [m for m in fake.bot_messages(dm) if m.msg_type == "image"], what="the image")
    assert fake.images[0].data == PNG


# -- configuration --------------------------------------------------------------------------------------
def test_the_same_bot_runs_on_feishu_or_lark_by_configuration() -> None:
    base = {"app_id": "cli_x", "app_secret": "s"}
    assert FeishuSettings.model_validate({**base}).domain == "https://open.feishu.cn"
    assert FeishuSettings.model_validate({**base, "domain": "lark"}).domain == "https://open.larksuite.com"
    assert FeishuSettings.model_validate({**base, "domain": "Lark"}).platform_name == "Lark"
    custom = FeishuSettings.model_validate({**base, "domain": "https://open.example.com/"})
    assert custom.domain == "https://open.example.com"
    for bad in ("http://open.feishu.cn", "ftp://x", "https://open.feishu.cn/open-apis", "larkk"):
        with pytest.raises(ValueError):
            FeishuSettings.model_validate({**base, "domain": bad})
    with pytest.raises(ValueError, match="verification_token"):
        FeishuSettings.model_validate({**base, "mode": "callback"})
    with pytest.raises(ValueError, match="App Secret"):
        FeishuSettings.model_validate({"app_id": "cli_x", "app_secret": " "})
    quiet = FeishuSettings.model_validate({**base, "encrypt_key": "", "working_reaction": ""})
    assert quiet.encrypt_key is None and quiet.working_reaction is None
    secret = {**base, "verification_token": "t"}
    spelled = FeishuSettings.model_validate(
        {**secret, "mode": "webhook", "callback_host": "127.0.0.1", "callback_port": 9100, "callback_path": "/lark"}
    )
    assert (spelled.mode, spelled.host, spelled.port, spelled.path) == ("callback", "127.0.0.1", 9100, "/lark")
    for other, meant in (
        ("websocket", "long_connection"),
        ("Long-Connection", "long_connection"),
        ("http", "callback"),
    ):
        assert FeishuSettings.model_validate({**secret, "mode": other}).mode == meant
    with pytest.raises(ValueError, match="mode"):
        FeishuSettings.model_validate({**secret, "mode": "carrier-pigeon"})


def test_routing_policy() -> None:
    from adapters.feishu import FeishuPlace

    assert conversation_key(FeishuPlace("p2p", "oc_1", "ou_a", "om_1")) == ConversationKey("feishu", "ou_a")
    assert conversation_key(FeishuPlace("group", "oc_1", "ou_a", "om_1")) is None
    top = FeishuPlace("group", "oc_1", "ou_a", "om_1", mentioned=True)
    assert conversation_key(top) == ConversationKey("feishu", "oc_1", "om_1")
    in_thread = FeishuPlace("group", "oc_1", "ou_b", "om_9", thread_id="omt_1", root_id="om_1")
    assert conversation_key(in_thread) == ConversationKey("feishu", "oc_1", "om_1")
    quoted = FeishuPlace("group", "oc_1", "ou_b", "om_9", root_id="om_1")  # a quote reply outside threads
    assert conversation_key(quoted) is None
    # mentioning the bot in a quote reply: the bot's thread starts under that message, so it names the conversation
    asking = FeishuPlace("group", "oc_1", "ou_b", "om_9", root_id="om_1", mentioned=True)
    assert conversation_key(asking) == ConversationKey("feishu", "oc_1", "om_9")


async def test_an_unreachable_platform_is_platform_unavailable(
    feishu: FakeFeishu, make_sections: Any, unused_port: int
) -> None:
    agent = await Agent(make_sections()).start()
    try:
        settings = feishu_settings(feishu, domain=f"http://127.0.0.1:{unused_port}", api_timeout=2)
        with pytest.raises(PlatformUnavailable):
            await FeishuBot("feishu", agent, settings).adapter.start()
        wrong_app = feishu_settings(feishu, app_id="cli_nobody")
        with pytest.raises(ConfigError) as info:
            await FeishuBot("team", agent, wrong_app).adapter.start()
        assert str(info.value).startswith("bots.team.app_id:")
    finally:
        await agent.close()


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
