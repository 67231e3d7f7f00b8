"""The Slack bridge end to end: real bolt + slack-sdk, the fake Slack, the real agent CLI + fake model.

Events arrive as correctly signed HTTP requests (the Events API) or over the
fake Socket Mode WebSocket; replies are read back from the fake Web API.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp

from core import UserRef
from core.dispatcher import empty_hint
from tests.fakes.anthropic_api import FakeAnthropicAPI, Text, ToolCall
from tests.helpers import eventually

from .conftest import Running
from .fake_slack import BOT_ID, BOT_USER, TEAM, event_callback
from .helpers import (
    BASH_ALLOWED,
    CHANNEL,
    DM,
    Gate,
    _key,
    asked,
    assert_gated_reply,
    button_payload,
    dm,
    finished,
    mention,
    message,
    slash,
)


async def test_mention_gets_a_threaded_streamed_answer(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge()
    fake = bot.fake
    fake_api.enqueue(Text("Hello from **Claude**, streaming in pieces.", chunks=4, delay=0.15))
    event = mention(fake, "hello there")
    status, _ = await bot.poster.event(event)
    assert status == 200
    root = event["ts"]
    await eventually(lambda: finished(fake, CHANNEL, root, "streaming in pieces."), what="the streamed reply")

    replies = fake.thread(CHANNEL, root)
    assert len(replies) == 1 and replies[0].streamed
    assert replies[0].rendered() == "Hello from **Claude**, streaming in pieces."
    start = fake.called("chat.startStream")[0].args
    assert start["thread_ts"] == root and start["recipient_user_id"] == "U1" and start["recipient_team_id"] == TEAM
    assert (
        len(fake.called("chat.stopStream")) == 1
    )  # (appends depend on how the CLI splits deltas: see the gated tests)
    assert not fake.called("chat.postMessage") and not fake.called("chat.update")
    # the working indicator: a reaction on the mention while it worked, removed at the end
    assert [c.args["name"] for c in fake.called("reactions.add")] == ["hourglass_flowing_sand"]
    await eventually(lambda: fake.called("reactions.remove"), what="the reaction's removal")
    assert not fake.reactions.get((CHANNEL, root))
    assert "hello there" in fake_api.requests[-1].last_user_text()


async def test_follow_up_in_the_thread_continues_the_session_without_a_mention(
    make_bridge: Any, fake_api: FakeAnthropicAPI
) -> None:
    bot: Running = await make_bridge()
    fake = bot.fake
    first = mention(fake, "my name is Ada")
    await bot.poster.event(first)
    root = first["ts"]
    await eventually(lambda: finished(fake, CHANNEL, root, "my name is Ada"), what="the first answer")

    # channel chatter outside the thread, without a mention: not for the bot
    await bot.poster.event(message(fake, "lunch anyone?"))
    await bot.poster.event(message(fake, "what is my name?", thread_ts=root))
    await eventually(lambda: finished(fake, CHANNEL, root, "what is my name?"), what="the follow-up answer")

    assert any("my name is Ada" in t for t in fake_api.requests[-1].user_texts())
    assert len(fake_api.requests) == 2  # the chatter never reached the model
    assert not fake.thread(CHANNEL, None)  # nothing posted at the channel's top level

    async def two_turns() -> bool:
        conv = await bot.agent.conversations.get(_key(CHANNEL, root))
        return conv is not None and conv.message_count == 2

    await eventually(two_turns, what="two turns in the thread's session")


async def test_a_message_does_not_wait_for_its_authors_name_and_the_name_is_looked_up_once(
    make_bridge: Any, fake_api: FakeAnthropicAPI
) -> None:
    bot: Running = await make_bridge()
    fake = bot.fake
    answered = asyncio.Event()
    plain = fake.m_users_info

    async def slow_users_info(args: dict[str, Any]) -> dict[str, Any]:
        await answered.wait()  # users.info is slow today
        return plain(args)

    fake.m_users_info = slow_users_info  # type: ignore[method-assign]
    await bot.poster.event(dm(fake, "hello there"))
    await eventually(lambda: any("echo: hello there" in r for r in fake.replies(DM, None)), what="the answer")
    assert fake.called("users.info") and not answered.is_set()  # answered while the lookup still waited
    answered.set()
    await bot.poster.event(dm(fake, "and again"))
    await eventually(lambda: any("echo: and again" in r for r in fake.replies(DM, None)), what="the next answer")
    assert len(fake.called("users.info")) == 1  # the lookup went on, and its answer is kept


async def test_a_thread_without_the_bot_is_ignored(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge()
    fake = bot.fake
    other_root = fake.user_message(CHANNEL, "U2", "a thread among people").ts
    await bot.poster.event(message(fake, "replying among people", thread_ts=other_root))
    barrier = mention(fake, "barrier")
    await bot.poster.event(barrier)
    await eventually(lambda: finished(fake, CHANNEL, barrier["ts"], "barrier"), what="the barrier answer")
    assert fake.thread(CHANNEL, other_root) == []
    assert asked(fake_api) == ["barrier"]


async def test_a_repeated_delivery_is_answered_once(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge()
    fake = bot.fake
    event = mention(fake, "only once please")
    root = event["ts"]
    assert (await bot.poster.event(event, event_id="Ev0001"))[0] == 200
    # Slack's retry of the same delivery, and the message.channels twin of the mention
    assert (await bot.poster.event(event, event_id="Ev0001", retry_num=1))[0] == 200
    assert (await bot.poster.event(event, event_id="Ev0001", retry_num=2))[0] == 200
    twin = {**event, "type": "message", "channel_type": "channel"}
    assert (await bot.poster.event(twin, event_id="Ev0002"))[0] == 200
    await eventually(lambda: finished(fake, CHANNEL, root, "only once please"), what="the answer")

    barrier = mention(fake, "barrier")
    await bot.poster.event(barrier)
    await eventually(lambda: finished(fake, CHANNEL, barrier["ts"], "barrier"), what="the barrier answer")
    assert len(fake.thread(CHANNEL, root)) == 1
    assert asked(fake_api).count("only once please") == 1


async def test_forged_and_stale_requests_get_401_and_nothing_runs(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge()
    fake = bot.fake
    calls_before = len(fake.calls)
    forged = mention(fake, "forged")
    assert (await bot.poster.event(forged, secret="not-the-secret"))[0] == 401
    stale = mention(fake, "stale")
    assert (await bot.poster.event(stale, timestamp=int(time.time()) - 600))[0] == 401
    body = json.dumps(event_callback(mention(fake, "tampered"))).encode()
    status, _ = await bot.poster.send(body, headers={"X-Slack-Signature": "v0=" + "0" * 64})
    assert status == 401
    assert (await bot.poster.send(body, headers={"X-Slack-Request-Timestamp": "soon"}))[0] == 401
    async with aiohttp.ClientSession() as session:  # no signature at all
        async with session.post(bot.url, data=body, headers={"Content-Type": "application/json"}) as response:
            assert response.status == 401
        # the signature is checked before the body is read: unsigned garbage is a 401 too, never a 400
        for garbage in (b"{not json", b"payload=%7Bnot+json", "caf\xe9".encode("latin-1"), b"[1]"):
            async with session.post(bot.url, data=garbage, headers={"Content-Type": "application/json"}) as response:
                assert response.status == 401
            assert (await bot.poster.send(garbage, secret="not-the-secret"))[0] == 401

    barrier = mention(fake, "barrier")
    await bot.poster.event(barrier)
    await eventually(lambda: finished(fake, CHANNEL, barrier["ts"], "barrier"), what="the barrier answer")
    assert asked(fake_api) == ["barrier"]
    for event in (forged, stale):
        assert fake.thread(CHANNEL, event["ts"]) == []
    assert all(c.args.get("thread_ts") in (None, barrier["ts"]) for c in fake.calls[calls_before:])


async def test_rate_limited_appends_and_stop_still_end_complete(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge(sections=BASH_ALLOWED)
    fake = bot.fake
    event = mention(fake, "count in greek")
    root = event["ts"]
    first, second = Gate(bot, _key(CHANNEL, root), "go1"), Gate(bot, _key(CHANNEL, root), "go2")
    fake_api.enqueue([first.call], [second.call])
    fake.fail_next("chat.appendStream", retry_after=0.2)
    fake.fail_next("chat.stopStream", retry_after=0.2)
    await bot.poster.event(event)
    await eventually(lambda: fake.called("chat.startStream"), what="the stream with the first tool line")
    first.open()
    # the second tool line is appended while that tool waits: a 429, then the same text once more
    appends = await eventually(
        lambda: fake.called("chat.appendStream")[1:] and fake.called("chat.appendStream"), what="the retried append"
    )
    assert appends[0].args == appends[1].args and "go2" in appends[0].args["markdown_text"]
    second.open()
    await eventually(lambda: finished(fake, CHANNEL, root, "released go2"), what="the complete answer")
    [reply] = fake.thread(CHANNEL, root)
    assert reply.streamed and not reply.streaming
    assert_gated_reply(reply.rendered())
    stops = fake.called("chat.stopStream")
    assert len(stops) == 2 and stops[0].args == stops[1].args  # the 429, then the same final text
    assert not fake.called("chat.update") and not fake.called("chat.postMessage")


async def test_rate_limited_edits_still_end_complete_in_a_dm(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge(sections=BASH_ALLOWED)
    fake = bot.fake
    first, second = Gate(bot, _key("U1"), "go1"), Gate(bot, _key("U1"), "go2")
    fake_api.enqueue([first.call], [second.call])
    fake.fail_next("chat.update", retry_after=0.2, times=2)
    await bot.poster.event(dm(fake, "count"))
    [message] = await eventually(lambda: fake.thread(DM, None), what="the first tool line")
    first.open()
    # the second tool line is an edit made while that tool waits: two 429s, then it lands
    await eventually(lambda: message.edits == 1, what="the edit after two 429s")
    updates = fake.called("chat.update")
    assert len(updates) == 3 and updates[0].args == updates[1].args == updates[2].args
    second.open()
    await eventually(lambda: finished(fake, DM, None, "released go2"), what="the complete answer")
    assert fake.thread(DM, None) == [message] and message.edits >= 2
    assert_gated_reply(message.rendered())
    assert not fake.called("chat.startStream")  # a top-level DM reply is edited, not streamed


async def test_without_streaming_replies_fall_back_to_edits(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge(sections=BASH_ALLOWED)
    fake = bot.fake
    fake.disable("chat.startStream", "chat.appendStream", "chat.stopStream")
    first = mention(fake, "no streams here")
    gate = Gate(bot, _key(CHANNEL, first["ts"]), "go1")
    fake_api.enqueue([gate.call])
    await bot.poster.event(first)
    [reply] = await eventually(lambda: fake.thread(CHANNEL, first["ts"]), what="the first tool line")
    assert not reply.streamed and reply.markdown.startswith("🔧 Bash")
    gate.open()
    await eventually(lambda: finished(fake, CHANNEL, first["ts"], "released go1"), what="the edited answer")
    assert fake.thread(CHANNEL, first["ts"]) == [reply] and reply.edits >= 1
    assert reply.markdown.startswith("🔧 Bash") and reply.markdown.endswith("\n\ntool result: released go1")

    second = mention(fake, "again")
    await bot.poster.event(second)
    await eventually(lambda: finished(fake, CHANNEL, second["ts"], "again"), what="the second answer")
    assert len(fake.called("chat.startStream")) == 1  # remembered: no second attempt


async def test_a_stream_that_expires_is_finished_with_an_edit(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge(sections=BASH_ALLOWED)
    fake = bot.fake
    event = mention(fake, "go")
    root = event["ts"]
    first, second = Gate(bot, _key(CHANNEL, root), "go1"), Gate(bot, _key(CHANNEL, root), "go2")
    fake_api.enqueue([first.call], [second.call])
    fake.fail_next("chat.appendStream", "message_not_in_streaming_state")  # the stream expired
    await bot.poster.event(event)
    [reply] = await eventually(lambda: fake.thread(CHANNEL, root), what="the stream with the first tool line")
    first.open()
    await eventually(lambda: fake.called("chat.update"), what="the edit replacing the dead stream")
    second.open()
    await eventually(lambda: finished(fake, CHANNEL, root, "released go2"), what="the finished answer")
    assert fake.thread(CHANNEL, root) == [reply] and not reply.streaming
    assert_gated_reply(reply.rendered())
    assert len(fake.called("chat.appendStream")) == 1 and not fake.called("chat.stopStream")


async def test_approval_buttons_only_for_the_requester_or_an_admin(
    make_bridge: Any, fake_api: FakeAnthropicAPI
) -> None:
    bot: Running = await make_bridge(sections={"access": {"admins": ["slack:UADMIN"]}})
    fake = bot.fake
    fake_api.rules["run the tool"] = [ToolCall("Bash", {"command": "echo approved-run", "description": "print"})]
    event = mention(fake, "run the tool")
    root = event["ts"]
    await bot.poster.event(event)
    [prompt] = await eventually(lambda: fake.approvals(CHANNEL, root), what="the approval prompt")
    assert "Approval needed" in prompt.rendered() and "Bash" in prompt.rendered() and "<@U1>" in prompt.rendered()
    assert [b["text"]["text"] for b in prompt.buttons()] == ["Allow once", "Allow for this session", "Deny"]

    assert (await bot.poster.interaction(button_payload(prompt, "ccbridge_approve_once", "U2")))[0] == 200
    refusal = await eventually(lambda: [e for e in fake.ephemerals if e["user"] == "U2"], what="the refusal")
    assert "only the person who asked" in refusal[0]["text"] and refusal[0]["thread_ts"] == root
    assert prompt.buttons()  # still pending

    stale_press = button_payload(prompt, "ccbridge_deny", "U1")
    assert (await bot.poster.interaction(button_payload(prompt, "ccbridge_approve_once", "U1")))[0] == 200
    await eventually(lambda: finished(fake, CHANNEL, root, "tool result: approved-run"), what="the tool's answer")
    assert not prompt.buttons() and "Allowed once by <@U1>" in prompt.rendered()
    # the reply goes on below the prompt, in reading order
    before, shown_prompt, after = fake.thread(CHANNEL, root)
    assert shown_prompt is prompt and "🔧 Bash" in before.rendered() and not before.streaming
    assert "tool result: approved-run" in after.rendered() and "Bash" not in after.rendered()

    # an admin may answer someone else's request
    fake_api.rules["once more"] = [ToolCall("Bash", {"command": "echo second", "description": "print"})]
    await bot.poster.event(message(fake, "once more", thread_ts=root))
    second = await eventually(lambda: [p for p in fake.approvals(CHANNEL, root) if p.buttons()], what="prompt 2")
    await bot.poster.interaction(button_payload(second[0], "ccbridge_deny", "UADMIN"))
    await eventually(lambda: "Denied by <@UADMIN>" in second[0].rendered(), what="the admin's decision")
    # pressing a button of a decided request: told privately, nothing changes
    await bot.poster.interaction(stale_press)
    await eventually(lambda: any("already answered" in e["text"] for e in fake.ephemerals), what="the notice")


async def test_messages_from_bots_are_ignored(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge()
    fake = bot.fake
    root = fake.user_message(CHANNEL, "U1", "thread root").ts
    ignored = [
        dm(fake, "from another bot", user="U0OTHERBOT", bot_id="B0OTHER"),
        dm(fake, "an integration post", subtype="bot_message", bot_id="B0HOOK"),
        dm(fake, "my own words", user=BOT_USER, bot_id=BOT_ID),
        message(fake, f"<@{BOT_USER}> a bot mentioning me", user="U0OTHERBOT", bot_id="B0OTHER", thread_ts=root),
        {**mention(fake, "a bot's mention"), "bot_id": "B0OTHER", "bot_profile": {"id": "B0OTHER"}},
        dm(fake, "edited", subtype="message_changed"),
        dm(fake, "someone joined", subtype="channel_join"),
    ]
    for event in ignored:
        assert (await bot.poster.event(event))[0] == 200
    barrier = dm(fake, "barrier")
    await bot.poster.event(barrier)
    await eventually(lambda: finished(fake, DM, None, "echo: barrier"), what="the barrier answer")
    assert asked(fake_api) == ["barrier"]
    assert len(fake.called("chat.postMessage")) == 1 and not fake.called("chat.startStream")


async def test_users_outside_the_allowlist_get_one_polite_refusal(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge(sections={"access": {"allow_all": False, "allowlist": ["slack:U1"]}})
    fake = bot.fake
    first = mention(fake, "let me in", user="U9")
    await bot.poster.event(first)
    await eventually(lambda: fake.replies(CHANNEL, first["ts"]), what="the refusal")
    assert "not on this bot's allowlist" in fake.replies(CHANNEL, first["ts"])[0]
    url = fake.host_file("secret.txt", b"data")
    await bot.poster.event(
        dm(
            fake,
            "please?",
            user="U9",
            channel="D0STRANGER",
            subtype="file_share",
            files=[{"id": "F1", "name": "secret.txt", "size": 4, "url_private_download": url}],
        )
    )
    barrier = mention(fake, "barrier", user="U1")
    await bot.poster.event(barrier)
    await eventually(lambda: finished(fake, CHANNEL, barrier["ts"], "barrier"), what="the allowed user's answer")
    assert asked(fake_api) == ["barrier"]
    assert fake.thread("D0STRANGER", None) == []  # one refusal per hour, not one per message
    assert fake.downloads == []  # a stranger's files are not fetched


async def test_a_dm_is_one_session_per_user_answered_with_edits(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge()
    fake = bot.fake
    first = dm(fake, "remember 42")
    await bot.poster.event(first)
    await eventually(lambda: finished(fake, DM, None, "echo: remember 42"), what="the first answer")
    await bot.poster.event(dm(fake, "what number?"))
    await eventually(lambda: finished(fake, DM, None, "echo: what number?"), what="the second answer")
    assert "remember 42" in fake_api.requests[-1].user_texts()
    assert fake.called("chat.postMessage")[0].args.get("thread_ts") is None  # top level, not a thread
    assert fake.called("chat.postMessage")[0].args["markdown_text"]  # standard Markdown

    async def two_turns() -> bool:
        conv = await bot.agent.conversations.get(_key(owner="U1"))
        return conv is not None and conv.message_count == 2

    await eventually(two_turns, what="two turns in one session")
    # the working reaction was put on the user's message and taken off again
    await eventually(lambda: fake.called("reactions.remove"), what="the reaction's removal")
    assert fake.called("reactions.add")[0].args["timestamp"] == first["ts"]

    # another user's DM is another session
    await bot.poster.event(dm(fake, "hello from bob", user="U2", channel="D0BOB"))
    await eventually(lambda: finished(fake, "D0BOB", None, "echo: hello from bob"), what="bob's answer")
    assert "remember 42" not in fake_api.requests[-1].user_texts()


async def test_dm_threads_stream_with_the_assistant_status(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge(dm_threads=True)
    fake = bot.fake
    fake.assistant_status = True
    event = dm(fake, "stream to me")
    await bot.poster.event(event)
    await eventually(lambda: finished(fake, DM, event["ts"], "echo: stream to me"), what="the threaded answer")
    assert fake.thread(DM, event["ts"])[0].streamed
    await eventually(lambda: [s["status"] for s in fake.statuses] == ["is working…", ""], what="status cleared")
    assert not fake.called("reactions.add")


async def test_commands_in_threads_and_dms(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge()
    fake = bot.fake
    first = mention(fake, "hi")
    root = first["ts"]
    await bot.poster.event(first)
    await eventually(lambda: finished(fake, CHANNEL, root, "hi"), what="the first answer")
    await bot.poster.event(mention(fake, "/status", thread_ts=root))
    status = await eventually(lambda: [r for r in fake.replies(CHANNEL, root) if "Session" in r], what="status")
    assert "**Working directory**" in status[0]
    await bot.poster.event(message(fake, "!new", thread_ts=root))  # a command without a mention, '!' style
    await eventually(lambda: any("New session" in r for r in fake.replies(CHANNEL, root)), what="/new")

    await bot.poster.event(dm(fake, "!help"))
    await eventually(lambda: any("/history" in r for r in fake.replies(DM, None)), what="the help text")
    assert len(fake_api.requests) == 1  # commands never reach the model


async def test_a_slash_command_in_a_dm_and_in_a_channel(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge(slash_command="/claude")
    fake = bot.fake
    fake.ims["U1"] = DM  # the bot's own DM with U1
    assert (await bot.poster.command(slash(fake, "what is 2+2", DM)))[0] == 200
    await eventually(lambda: finished(fake, DM, None, "echo: what is 2+2"), what="the DM answer")
    await bot.poster.command(slash(fake, "status", DM))
    await eventually(lambda: any("Session" in r for r in fake.replies(DM, None)), what="the DM status")

    await bot.poster.command(slash(fake, "explain threads", CHANNEL, channel_name="general"))
    [opened] = await eventually(lambda: fake.thread(CHANNEL, None), what="the opened thread")
    assert "<@U1> asked: explain threads" in opened.text
    await eventually(lambda: finished(fake, CHANNEL, opened.ts, "explain threads"), what="the thread answer")

    await bot.poster.command(slash(fake, "new", CHANNEL, channel_name="general"))
    [hint] = await eventually(lambda: fake.responses, what="the ephemeral hint")
    assert hint["response_type"] == "ephemeral" and "/new" in hint["text"]
    assert len(fake.called("conversations.open")) == 1  # the bot's DM is looked up once


async def test_slash_command_text_is_read_as_typed_even_when_it_says_payload(
    make_bridge: Any, fake_api: FakeAnthropicAPI
) -> None:
    bot: Running = await make_bridge(slash_command="/claude")
    bot.fake.ims["U1"] = DM
    question = slash(bot.fake, "parse this payload: a &lt; b &amp;&amp; c", DM, channel_name="payload-team")
    assert (await bot.poster.command(question))[0] == 200
    await eventually(lambda: asked(fake_api) == ["parse this payload: a < b && c"], what="the question")


async def test_an_admin_grants_access_with_a_slash_command_naming_the_person(
    make_bridge: Any, fake_api: FakeAnthropicAPI
) -> None:
    access = {"allow_all": False, "allowlist": ["slack:U1"], "admins": ["slack:U1"]}
    bot: Running = await make_bridge(slash_command="/claude", sections={"access": access})
    bot.fake.ims["U1"] = DM
    # picked from Slack's mention list, with "Escape channels, users, and links" on: <@U2|eve>
    assert (await bot.poster.command(slash(bot.fake, "allow <@U2|eve>", DM)))[0] == 200
    granted = await eventually(
        lambda: [r for r in bot.fake.replies(DM, None) if "slack:U2" in r], what="the grant's answer"
    )
    assert "may use" in granted[-1] and "tell who" not in granted[-1]
    assert await bot.bot.dispatcher.admits("slack", UserRef("U2"))
    assert fake_api.requests == []  # a command: nothing ran


async def test_slacks_ssl_check_is_answered_and_runs_nothing(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge(slash_command="/claude")
    probe = urlencode({"ssl_check": "1", "token": "legacy"}).encode()
    async with aiohttp.ClientSession() as session:  # unsigned, as Slack sends it
        async with session.post(bot.poster.url, data=probe) as response:
            assert response.status == 200
    forged = urlencode({"ssl_check": "1", "command": "/claude", "text": "hi", "user_id": "U1"}).encode()
    assert (await bot.poster.send(forged, content_type="application/x-www-form-urlencoded", secret="wrong"))[0] == 401
    assert fake_api.requests == [] and bot.fake.called("chat.postMessage") == []


async def test_a_slash_command_in_a_dm_between_people_is_answered_in_the_bots_dm(
    make_bridge: Any, fake_api: FakeAnthropicAPI
) -> None:
    bot: Running = await make_bridge(slash_command="/claude")
    fake = bot.fake
    fake.ims["U1"] = DM
    assert (await bot.poster.command(slash(fake, "what is 3+3", "D0ALICEBOB")))[0] == 200
    await eventually(lambda: finished(fake, DM, None, "echo: what is 3+3"), what="the answer in the bot's DM")
    [moved] = await eventually(lambda: fake.responses, what="the note that it moved")
    assert moved["response_type"] == "ephemeral" and "our own DM" in moved["text"]
    assert fake.called("conversations.open")[0].args["users"] == "U1"
    assert all(c.args.get("channel") != "D0ALICEBOB" for c in fake.calls)  # nothing tried where the bot can't write

    # a DM the bot can't open (e.g. the app lacks im:write): said so, nothing runs
    fake.fail_next("conversations.open", "missing_scope")
    await bot.poster.command(slash(fake, "and 4+4?", "D0BOBCAROL", user="U2"))
    await eventually(lambda: len(fake.responses) == 2, what="the refusal to answer there")
    assert "send me a direct message" in fake.responses[-1]["text"]
    assert asked(fake_api) == ["what is 3+3"]


async def test_a_slash_command_from_someone_not_allowed_gets_the_refusal(
    make_bridge: Any, fake_api: FakeAnthropicAPI
) -> None:
    bot: Running = await make_bridge(
        slash_command="/claude", sections={"access": {"allow_all": False, "allowlist": ["slack:U1"]}}
    )
    fake = bot.fake
    fake.ims["U9"] = "D0STRANGER"
    await bot.poster.command(slash(fake, "let me in", "D0STRANGER", user="U9"))
    await bot.poster.command(slash(fake, "status", CHANNEL, user="U9", channel_name="general"))
    await bot.poster.command(slash(fake, "please", CHANNEL, user="U9", channel_name="general"))
    await eventually(lambda: len(fake.responses) == 3, what="three refusals")
    for response in fake.responses:  # privately, each time (the person asked explicitly)
        assert response["response_type"] == "ephemeral" and "not on this bot's allowlist" in response["text"]
    assert fake.bot_messages() == [] and fake_api.requests == []


async def test_shared_files_land_in_the_workspace(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge(sections={"workspace": {"max_upload_mb": 0.001}})  # ~1 KB
    fake = bot.fake
    small = fake.host_file("notes.txt", b"remember the milk\n", "text/plain")
    big = fake.host_file("video.bin", b"x" * 5000)
    notes = {
        "id": "F1",
        "name": "notes.txt",
        "mimetype": "text/plain",
        "size": 18,
        "url_private": small,
        "url_private_download": small,
    }
    video = {
        "id": "F2",
        "name": "video.bin",
        "mimetype": "application/octet-stream",
        "size": 5000,
        "url_private_download": big,
    }
    await bot.poster.event(dm(fake, "read this", subtype="file_share", files=[notes]))
    await eventually(lambda: finished(fake, DM, None, "echo: read this"), what="the answer")
    saved = bot.agent.workspaces.root(_key("U1")) / "uploads" / "notes.txt"
    assert saved.read_bytes() == b"remember the milk\n"
    note = "[The user attached files, saved in the workspace: uploads/notes.txt]"
    assert note in fake_api.requests[-1].last_user_text()
    # a file over the limit refuses the message: the user is told which and why, nothing runs
    await bot.poster.event(dm(fake, "and these", subtype="file_share", files=[notes, video]))
    [notice] = await eventually(lambda: [r for r in fake.replies(DM, None) if "video.bin" in r], what="the refusal")
    assert "video.bin is 4.9 KB and the limit is 1 KB" in notice and "Nothing was sent to Claude" in notice
    assert not (saved.parent / "video.bin").exists()
    assert [r.last_user_text() for r in fake_api.requests if "and these" in r.last_user_text()] == []
    assert fake.downloads[0] == {"path": small.split("/files-pri/")[1], "authorized": True}
    assert all(d["path"] != big.split("/files-pri/")[1] for d in fake.downloads)  # refused before downloading


async def test_files_from_the_agent_are_uploaded_to_the_thread(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge()
    fake = bot.fake
    event = mention(fake, "send me the report")
    root = event["ts"]
    workspace = await bot.agent.workspaces.ensure(_key(CHANNEL, root))
    (workspace / "report.csv").write_text("a,b\n1,2\n")
    fake_api.rules["send me the report"] = [
        ToolCall("mcp__ccbridge__send_file", {"path": "report.csv", "caption": "the **report**"})
    ]
    await bot.poster.event(event)
    [upload] = await eventually(lambda: fake.files_in(CHANNEL, root), what="the upload")
    assert upload["filename"] == "report.csv" and upload["data"] == b"a,b\n1,2\n"
    assert upload["initial_comment"] == "the *report*"  # mrkdwn
    await eventually(lambda: finished(fake, CHANNEL, root, "tool result"), what="the final answer")


async def test_socket_mode_receives_events_and_acks_them(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge(mode="socket")
    fake = bot.fake
    await fake.wait_socket()
    event = mention(fake, "over the socket")
    envelope_id = await fake.socket_send(event_callback(event, event_id="EvSock1"))
    assert (await fake.wait_ack(envelope_id)) == {"envelope_id": envelope_id}
    await eventually(lambda: finished(fake, CHANNEL, event["ts"], "over the socket"), what="the answer")
    # a redelivery (retry_attempt 1) is acked but not answered again
    again = await fake.socket_send(event_callback(event, event_id="EvSock1"), retry_attempt=1)
    await fake.wait_ack(again)
    barrier = mention(fake, "barrier")
    await fake.wait_ack(await fake.socket_send(event_callback(barrier, event_id="EvSock2")))
    await eventually(lambda: finished(fake, CHANNEL, barrier["ts"], "barrier"), what="the barrier answer")
    assert len(fake.thread(CHANNEL, event["ts"])) == 1
    assert fake.called("apps.connections.open") and fake.socket_connections == 1


async def test_malformed_deliveries_are_acknowledged_and_only_their_sound_parts_run(
    make_bridge: Any, fake_api: FakeAnthropicAPI
) -> None:
    """Events without a user or ts, or with a text that is no string, run nothing; a DM whose
    ``files`` is malformed is answered for its text alone (no file is taken); bodies that are not
    JSON are refused. Every delivery is acknowledged, so Slack does not retry it."""
    bot: Running = await make_bridge()
    fake = bot.fake
    for event in (
        {"type": "message", "text": "no user", "channel": DM, "channel_type": "im", "ts": "1.0"},
        {"type": "message", "user": "U1", "text": "no ts", "channel": DM, "channel_type": "im"},
        {"type": "app_mention", "user": "U1", "text": 42, "ts": "1.2", "channel": CHANNEL},
        {"type": "reaction_added", "user": "U1", "reaction": "tada"},  # not handled: skipped
        {
            "type": "message",
            "user": "U1",
            "text": "x",
            "ts": "1.3",
            "channel": DM,
            "channel_type": "im",
            "files": "not-a-list",
        },
    ):
        status, _ = await bot.poster.event(event)
        assert status == 200
    status, _ = await bot.poster.send(b"{not json")
    assert status == 400
    url_check = await bot.poster.send(b'{"type":"url_verification","challenge":"abc","token":"t"}')
    assert url_check[0] == 200 and "abc" in url_check[1]  # bolt answers the URL check itself
    barrier = dm(fake, "barrier")
    await bot.poster.event(barrier)
    await eventually(lambda: finished(fake, DM, None, "echo: barrier"), what="the barrier answer")
    assert asked(fake_api) == ["x", "barrier"]  # the malformed ones ran nothing
    assert not fake.downloads
    uploads = bot.agent.workspaces.root(_key("U1")) / "uploads"
    assert not uploads.exists() or not list(uploads.iterdir())


async def test_oversized_and_malformed_signed_requests_are_refused_and_nothing_runs(
    make_bridge: Any, fake_api: FakeAnthropicAPI
) -> None:
    bot: Running = await make_bridge(slash_command="/claude")
    fake = bot.fake
    huge = mention(fake, "x" * (5 * 1024 * 1024))  # Slack's payloads are a few KB
    status, text = await bot.poster.event(huge)
    assert status == 413 and "too large" in text
    for body in (b"[1, 2]", b"null", b"{}", json.dumps({"type": "event_callback", "event": {"type": 5}}).encode()):
        status, text = await bot.poster.send(body)
        assert status == 400 and "malformed request body" in text
    # interactivity payloads (signed) that no Slack would send: a 4xx each, never a 500
    for payload in (
        "not json",
        "[1]",
        {"type": "block_actions", "user": {"id": "U1"}},  # no actions
        {"type": "block_actions", "actions": "ccbridge_deny", "user": "U1"},
        {"type": "block_actions", "actions": [{"value": "r1"}], "user": {"id": "U1"}},  # no action_id
        {"type": "block_actions", "actions": [{"action_id": "ccbridge_deny"}], "user": {"id": 5}},
        {"type": "block_actions", "actions": [{"action_id": "ccbridge_deny"}], "user": {"id": "U1"}, "container": "x"},
    ):
        raw = payload if isinstance(payload, str) else json.dumps(payload)
        body = urlencode({"payload": raw}).encode()
        status, text = await bot.poster.send(body, content_type="application/x-www-form-urlencoded")
        assert 400 <= status < 500, (payload, status, text)
    barrier = mention(fake, "barrier")
    await bot.poster.event(barrier)
    await eventually(lambda: finished(fake, CHANNEL, barrier["ts"], "barrier"), what="the barrier answer")
    assert asked(fake_api) == ["barrier"] and fake.thread(CHANNEL, huge["ts"]) == []
    assert fake.ephemerals == []


async def test_a_shared_file_named_to_climb_out_lands_inside_the_uploads_folder(
    make_bridge: Any, fake_api: FakeAnthropicAPI
) -> None:
    bot: Running = await make_bridge()
    fake = bot.fake
    url = fake.host_file("x", b"not for /etc\n", "text/plain")
    files = [{"id": "F1", "name": "../../etc/x", "mimetype": "text/plain", "size": 13, "url_private_download": url}]
    await bot.poster.event(dm(fake, "read this", subtype="file_share", files=files))
    await eventually(lambda: finished(fake, DM, None, "echo: read this"), what="the answer")
    uploads = bot.agent.workspaces.root(_key("U1")) / "uploads"
    [saved] = list(uploads.iterdir())
    assert saved.read_bytes() == b"not for /etc\n" and saved.parent == uploads and ".." not in saved.name
    base = bot.agent.sections.workspace.base_dir
    assert [p for p in base.rglob("*") if p.is_file() and p.name.endswith("x") and p != saved] == []
    assert f"uploads/{saved.name}" in fake_api.requests[-1].last_user_text()


async def test_a_bare_mention_gets_a_hint_instead_of_a_turn(make_bridge: Any, fake_api: FakeAnthropicAPI) -> None:
    bot: Running = await make_bridge(sections={"access": {"allow_all": False, "allowlist": ["slack:U1"]}})
    fake = bot.fake
    bare = mention(fake, "")
    await bot.poster.event(bare)
    [hint] = await eventually(lambda: fake.replies(CHANNEL, bare["ts"]), what="the hint")
    assert hint == empty_hint("!")
    # someone not allowed gets the refusal, not the hint
    stranger = mention(fake, "", user="U9")
    await bot.poster.event(stranger)
    [refusal] = await eventually(lambda: fake.replies(CHANNEL, stranger["ts"]), what="the refusal")
    assert "not on this bot's allowlist" in refusal
    barrier = mention(fake, "barrier")
    await bot.poster.event(barrier)
    await eventually(lambda: finished(fake, CHANNEL, barrier["ts"], "barrier"), what="the barrier answer")
    assert asked(fake_api) == ["barrier"]
    assert await bot.agent.conversations.get(_key(CHANNEL, bare["ts"])) is None  # no session was opened
