"""The Discord bridge end to end: real discord.py (gateway + REST), the fake Discord, the real agent CLI + fake model.

People act through the fake (MESSAGE_CREATE / INTERACTION_CREATE over the gateway);
what the bot did is read back from the fake's state (messages with their edit history,
threads, interactions and their callbacks, command syncs).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bots.discord import DiscordBot
from core import ConfigError, ConversationKey
from core.commands import DIFF_INLINE_CHARS
from core.dispatcher import empty_hint
from core.text_split import open_fence
from tests.core.test_projects import repo
from tests.fakes.anthropic_api import FakeAnthropicAPI, Text, ToolCall
from tests.fakes.platform_server import Failure
from tests.helpers import eventually

from .conftest import Bots, Team
from .fake_discord import BOT_ID, Channel, FakeDiscord, Intents, Member, Message

EDIT = "PATCH /channels/{channel_id}/messages/{message_id}"
OPEN_THREAD = "POST /channels/{channel_id}/messages/{message_id}/threads"
CALLBACK = "POST /interactions/{webhook_id}/{webhook_token}/callback"

pytestmark = pytest.mark.timeout(120)


def public(fake: FakeDiscord, channel: Channel | int) -> list[Message]:
    """The bot's messages everybody sees in ``channel`` (ephemeral answers left out), oldest first."""
    return [m for m in fake.bot_messages(channel) if not m.ephemeral]


def texts(fake: FakeDiscord, channel: Channel | int) -> list[str]:
    """What the bot shows in ``channel`` (approval prompts left out), oldest first."""
    return [m.content for m in public(fake, channel) if not m.shown_components]


async def reply_in(fake: FakeDiscord, channel: Channel | int, needle: str) -> Message:
    """The bot's message in ``channel`` that (now) shows ``needle``."""
    found = await fake.wait_until(
        lambda: [m for m in fake.bot_messages(channel) if needle in m.content], 30, f"a reply with {needle!r}"
    )
    return found[-1]


def asked(fake_api: FakeAnthropicAPI) -> list[str]:
    return [r.last_user_text() for r in fake_api.requests if not r.tool_results()]


def thread_key(team: Team, thread_id: int) -> ConversationKey:
    return ConversationKey("discord", f"guild{team.guild.id}", str(thread_id))


async def idle(bot: DiscordBot, key: ConversationKey) -> None:
    """Wait until the conversation's turn is over (its reply may show complete a moment before)."""
    await eventually(lambda: not bot.agent.conversations.busy(key), what=f"{key} to be idle")


def dm_key(member: Member) -> ConversationKey:
    return ConversationKey("discord", str(member.id))


async def thread_from(fake: FakeDiscord, message: Message) -> Channel:
    """The thread the bot opened from ``message`` (a thread started from a message has its id)."""
    return await fake.wait_until(lambda: fake.channels.get(message.id) if message.thread_id else None, 30, "the thread")


# -- who it answers, and where ---------------------------------------------------------


async def test_a_mention_opens_a_thread_and_a_follow_up_there_remembers(
    bots: Bots, team: Team, fake_api: FakeAnthropicAPI
) -> None:
    bot = await bots.start(access=team.access())
    fake = team.fake
    first = await fake.user_message(team.general, team.alice, "my name is Ada", mentions=[fake.bot])
    thread = await thread_from(fake, first)
    assert thread.is_thread and thread.parent_id == team.general.id and thread.name == "my name is Ada"
    assert [f["d"]["id"] for f in await fake.wait_for_event("THREAD_CREATE")] == [str(first.id)]
    await reply_in(fake, thread, "echo: [Alice] my name is Ada")
    assert fake.typing_in(thread) >= 1
    await idle(bot, thread_key(team, first.id))

    # chatter at the channel's top level is not for the bot; the thread is followed without a mention
    await fake.user_message(team.general, team.bob, "lunch anyone?")
    await fake.user_message(thread, team.alice, "what is my name?")
    await reply_in(fake, thread, "echo: [Alice] what is my name?")
    assert any("my name is Ada" in t for t in fake_api.requests[-1].user_texts())  # the same session
    assert asked(fake_api) == ["[Alice] my name is Ada", "[Alice] what is my name?"]
    assert texts(fake, team.general) == []  # nothing at the top level
    assert len(fake.threads) == 1

    # a !command in the thread is a core command
    await idle(bot, thread_key(team, first.id))
    await fake.user_message(thread, team.alice, "!status")
    status = await reply_in(fake, thread, "**Session**")
    assert "2 message(s)" in status.content
    conv = await bot.agent.conversations.get(thread_key(team, first.id))
    assert conv is not None and conv.message_count == 2


async def test_unaddressed_server_messages_are_ignored(bots: Bots, team: Team, fake_api: FakeAnthropicAPI) -> None:
    await bots.start(access=team.access())
    fake = team.fake
    other = fake.add_thread("among people", team.general, owner=team.bob.user, announce=True)
    await fake.wait_for_event("THREAD_CREATE")
    await fake.user_message(team.general, team.alice, "hello bot, are you there?")
    await fake.user_message(team.general, team.alice, "@everyone standup in 5")
    await fake.user_message(other, team.alice, "a thread the bot is not in")
    barrier = await fake.user_message(team.general, team.alice, "barrier", mentions=[fake.bot])
    await reply_in(fake, await thread_from(fake, barrier), "barrier")
    assert asked(fake_api) == ["[Alice] barrier"]
    assert fake.bot_messages(other) == [] and texts(fake, team.general) == []


async def test_a_dm_is_answered_and_access_follows_server_roles(
    bots: Bots, team: Team, fake_api: FakeAnthropicAPI
) -> None:
    bot = await bots.start(access=team.access())
    fake = team.fake
    alice_dm, bob_dm = fake.dm_channel(team.alice.user), fake.dm_channel(team.bob.user)
    await fake.user_message(alice_dm, team.alice, "hello in private")  # admitted by her role in Team
    await reply_in(fake, alice_dm, "echo: hello in private")  # a DM is the user's own: no speaker prefix
    assert await bot.agent.conversations.get(ConversationKey("discord", str(team.alice.id))) is not None

    # in a channel: a member without the role is refused, as a reply to the message, and no thread opens
    refused = await fake.user_message(team.general, team.bob, "let me in", mentions=[fake.bot])
    [refusal] = await fake.wait_until(lambda: fake.bot_messages(team.general), 30, "the refusal")
    assert "allowlist" in refusal.content and refusal.reference is refused and refused.thread_id is None
    await fake.user_message(bob_dm, team.bob, "and here?")  # refused too (told once per hour: already told)
    await fake.user_message(alice_dm, team.alice, "barrier")
    await reply_in(fake, alice_dm, "echo: barrier")
    assert asked(fake_api) == ["hello in private", "barrier"]
    assert fake.threads == [] and fake.bot_messages(bob_dm) == []


async def test_only_listed_channels_and_no_message_content_intent(
    bots: Bots, team: Team, fake_api: FakeAnthropicAPI
) -> None:
    fake = team.fake
    fake.enabled_privileged_intents = 0  # the Developer Portal has none of them on
    with pytest.raises(ConfigError) as refused:
        await bots.start(settings={"channels": [team.general.id]})
    assert str(refused.value).startswith("bots.discord.message_content:")

    await bots.start(settings={"channels": [team.general.id], "message_content": False})
    assert not fake.session.has(Intents.MESSAGE_CONTENT)
    await fake.user_message(team.random, team.alice, "not here", mentions=[fake.bot])
    first = await fake.user_message(team.general, team.alice, "here", mentions=[fake.bot])
    thread = await thread_from(fake, first)
    await reply_in(fake, thread, "echo: [Alice] here")
    await fake.user_message(thread, team.alice, "unreadable without the intent")
    await fake.user_message(thread, team.alice, "read me", mentions=[fake.bot])
    await reply_in(fake, thread, "echo: [Alice] read me")
    assert asked(fake_api) == ["[Alice] here", "[Alice] read me"]


async def test_a_forum_post_is_a_session_of_its_own(bots: Bots, team: Team, fake_api: FakeAnthropicAPI) -> None:
    await bots.start()
    fake = team.fake
    post = fake.add_thread("why is CI red?", team.forum, owner=team.alice.user, announce=True)
    await fake.wait_for_event("THREAD_CREATE")
    await fake.user_message(post, team.alice, "look at the CI log", mentions=[fake.bot])
    await reply_in(fake, post, "echo: [Alice] look at the CI log")
    await fake.user_message(post, team.bob, "and the flaky test?")
    await reply_in(fake, post, "echo: [Bob] and the flaky test?")
    assert len(fake.threads) == 1  # answered in the post itself


# -- slash commands ----------------------------------------------------------------------


async def test_slash_commands_are_deferred_then_followed_up(bots: Bots, team: Team, fake_api: FakeAnthropicAPI) -> None:
    bot = await bots.start(access=team.access())
    fake = team.fake
    assert [(s.guild_id, s.changed) for s in fake.command_syncs] == [(None, True)]
    assert {"claude", "new", "stop", "status", "cwd", "model", "history", "help"} <= set(fake.command_syncs[0].names)

    it = await fake.slash_command("claude", {"prompt": "explain the logs"}, user=team.alice, channel=team.general)
    await fake.wait_for_interaction_response(it)
    assert [c["type"] for c in it.callbacks] == [5]  # deferred ("thinking…") at once
    answer = await fake.wait_until(lambda: it.original if it.original and not it.original.loading else None, 30)
    assert answer.content == f"💬 <@{team.alice.id}>: explain the logs"
    thread = await thread_from(fake, answer)
    await reply_in(fake, thread, "echo: [Alice] explain the logs")

    status = await fake.slash_command("status", user=team.alice, channel=thread)
    await fake.wait_until(lambda: status.original and "**Session**" in status.original.content, 30, "the status")
    assert [c["type"] for c in status.callbacks] == [5] and status.followups == [status.original]
    assert not status.original.ephemeral

    # a reply to the bot's message at the top level continues that conversation, in its thread
    await fake.user_message(team.general, team.alice, "and the warnings?", reference=answer)
    await reply_in(fake, thread, "echo: [Alice] and the warnings?")
    assert any("explain the logs" in t for t in fake_api.requests[-1].user_texts())

    # someone not allowed: the refusal is ephemeral, and no thread is opened
    refused = await fake.slash_command("claude", {"prompt": "let me in"}, user=team.bob, channel=team.general)
    await fake.wait_until(lambda: refused.original and not refused.original.loading, 30, "the refusal")
    assert refused.original.ephemeral and "allowlist" in refused.original.content
    assert len(fake.threads) == 1 and "let me in" not in " ".join(asked(fake_api))

    # a restart does not sync the unchanged commands again (Discord caps creates per day)
    await bots.stop(bot)
    await bots.start(access=team.access())
    assert len(fake.command_syncs) == 1
    assert len(fake.called("GET /applications/{application_id}/commands")) == 2


async def test_a_claude_command_whose_question_cannot_be_shown_says_so_instead_of_thinking_forever(
    bots: Bots, team: Team, fake_api: FakeAnthropicAPI
) -> None:
    await bots.start(access=team.access())
    fake = team.fake
    fake.fail(
        "PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original", Failure(400, 50035, "Invalid Form Body")
    )
    it = await fake.slash_command("claude", {"prompt": "explain the logs"}, user=team.alice, channel=team.general)
    await fake.wait_until(lambda: it.original and not it.original.loading, 30, "the deferred answer filled in")
    assert "not answered" in it.original.content and it.followups == [it.original]
    assert asked(fake_api) == [] and fake.threads == []


@pytest.mark.parametrize("command", ["status", "help"])
async def test_a_command_at_the_top_level_of_a_channel_is_deferred_then_told_where_commands_work(
    bots: Bots, team: Team, fake_api: FakeAnthropicAPI, command: str
) -> None:
    await bots.start(access=team.access())
    fake = team.fake
    it = await fake.slash_command(command, user=team.alice, channel=team.general)
    await fake.wait_until(lambda: it.followups, 30, "the followup")
    assert it.callbacks == [{"type": 5, "data": {"flags": 64}}]  # deferred privately at once, no type-4 answer
    [told] = it.followups
    assert told is it.original and told.ephemeral and not told.loading  # the followup fills in "thinking…"
    assert "inside a thread" in told.content and f"`/{command}`" in told.content
    assert ("**Commands**" in told.content) == (command == "help")
    assert public(fake, team.general) == [] and fake.threads == [] and asked(fake_api) == []


async def test_an_admin_grants_a_person_by_mention_and_a_role_by_slash_command_and_revokes(
    bots: Bots, team: Team, fake_api: FakeAnthropicAPI
) -> None:
    fake = team.fake
    ops = fake.add_role("ops", guild=team.guild)  # a role nobody has granted access to yet
    carol = fake.add_member("carol", roles=[ops], guild=team.guild)
    # no role in the config: the first role granted in the chat makes DMs look roles up
    await bots.start(access={"allow_all": False, "allowlist": [], "admins": [f"discord:{team.boss.id}"]})
    boss_dm, bob_dm, carol_dm = (fake.dm_channel(m.user) for m in (team.boss, team.bob, carol))

    await fake.user_message(boss_dm, team.boss, f"!allow {team.bob.user.mention}", mentions=[team.bob])
    granted = await reply_in(fake, boss_dm, "may use the bot now")
    assert str(team.bob.id) in granted.content
    it = await fake.slash_command("allow", {"user": ops.mention}, user=team.boss, channel=boss_dm)
    await fake.wait_until(lambda: it.original and "may use the bot now" in it.original.content, 30, "the grant")
    assert f"role:{ops.id}" in it.original.content
    await fake.user_message(carol_dm, carol, "carol here")  # admitted by the role she holds, at once
    await reply_in(fake, carol_dm, "echo: carol here")
    await fake.user_message(bob_dm, team.bob, "bob here")
    await reply_in(fake, bob_dm, "echo: bob here")

    await fake.user_message(boss_dm, team.boss, f"!revoke {team.bob.user.mention}", mentions=[team.bob])
    await reply_in(fake, boss_dm, "no longer")
    await fake.user_message(bob_dm, team.bob, "and now?")
    await fake.user_message(carol_dm, carol, "barrier")
    await reply_in(fake, carol_dm, "echo: barrier")
    assert "and now?" not in asked(fake_api) and asked(fake_api)[-1] == "barrier"


# -- streaming ---------------------------------------------------------------------------


async def test_a_long_reply_splits_under_2000_and_a_429_on_edit_still_ends_complete(
    bots: Bots, team: Team, fake_api: FakeAnthropicAPI
) -> None:
    bot = await bots.start()
    fake = team.fake
    dm = fake.dm_channel(team.alice.user)
    code = "\n".join(f"print('line {i}')  # {'x' * 20}" for i in range(150))
    fake_api.rules["the long script"] = [Text(f"Here it is:\n\n```python\n{code}\n```\n\nThat's all.", chunks=8)]
    await fake.user_message(dm, team.alice, "the long script please")
    await reply_in(fake, dm, "That's all.")
    shown = texts(fake, dm)
    assert len(shown) >= 3
    assert all(len(m) <= 2000 and open_fence(m) is None for m in shown)
    assert all(m.startswith("```python") for m in shown[1:-1])  # continuations reopen the fence
    joined = "".join(shown)
    assert all(f"print('line {i}')" in joined for i in range(150))
    for message in fake.bot_messages(dm):
        assert all(len(version) <= 2000 for version in message.history)  # live updates too

    # Discord answers edits with 429s: the reply waits them out and still ends complete, in one message
    await idle(bot, dm_key(team.alice))
    before = len(shown)
    words = " ".join(f"word{i}" for i in range(40))
    fake_api.rules["slowly"] = [Text(words, chunks=8, delay=0.05)]
    fake.fail(EDIT, Failure(429, retry_after=0.4), times=3)
    edits = len(fake.called(EDIT))
    await fake.user_message(dm, team.alice, "answer slowly")
    await reply_in(fake, dm, "word39")
    assert texts(fake, dm)[before:] == [words]
    statuses = [c.status for c in fake.called(EDIT)[edits:]]
    assert statuses.count(429) == 3 and statuses[-1] == 200


# -- approvals ---------------------------------------------------------------------------


async def test_an_approval_pressed_by_someone_else_is_refused(
    bots: Bots, team: Team, fake_api: FakeAnthropicAPI
) -> None:
    bot = await bots.start(access=team.access(f"discord:{team.bob.id}"))
    fake = team.fake
    fake_api.rules["run the tool"] = [ToolCall("Bash", {"command": "echo approved-run", "description": "print"})]
    first = await fake.user_message(team.general, team.alice, "run the tool", mentions=[fake.bot])
    thread = await thread_from(fake, first)
    [prompt] = await fake.wait_until(lambda: [m for m in fake.bot_messages(thread) if m.buttons()], 30, "the prompt")
    assert "Approval needed" in prompt.content and "Bash" in prompt.content and f"<@{team.alice.id}>" in prompt.content
    assert [b["label"] for b in prompt.buttons()] == ["Allow once", "Allow for this session", "Deny"]
    once = next(b["custom_id"] for b in prompt.buttons() if b["custom_id"].endswith(":o"))

    pressed = await fake.press(once, user=team.bob, message=prompt)
    [notice] = await fake.wait_until(lambda: [m for m in pressed.followups if m.ephemeral], 30, "the refusal")
    assert "only the person who asked" in notice.content.lower()
    assert prompt.buttons() and "Allowed" not in prompt.content  # still waiting

    await fake.press(once, user=team.alice, message=prompt)
    await reply_in(fake, thread, "tool result: approved-run")
    assert not prompt.buttons() and f"Allowed once by <@{team.alice.id}>" in prompt.content
    before, shown_prompt, after = public(fake, thread)  # the reply goes on below the prompt
    assert shown_prompt is prompt and "🔧 Bash" in before.content and "tool result" in after.content
    workspace = bot.agent.workspaces.root(thread_key(team, first.id))
    assert workspace.exists()


async def test_a_button_pressed_after_a_restart_is_answered_as_expired(
    bots: Bots, team: Team, fake_api: FakeAnthropicAPI
) -> None:
    bot = await bots.start()
    fake = team.fake
    fake_api.rules["run the tool"] = [ToolCall("Bash", {"command": "echo never", "description": "print"})]
    dm = fake.dm_channel(team.alice.user)
    await fake.user_message(dm, team.alice, "run the tool")
    [prompt] = await fake.wait_until(lambda: [m for m in fake.bot_messages(dm) if m.buttons()], 30, "the prompt")
    once = next(b["custom_id"] for b in prompt.buttons() if b["custom_id"].endswith(":o"))
    await bots.stop(bot, drain_timeout=0.5)  # the turn waiting for the answer dies with the process

    await bots.start()  # a new process: the request is gone, the button stays on screen
    pressed = await fake.press(once, user=team.alice, message=prompt, stale=not prompt.buttons())
    [notice] = await fake.wait_until(lambda: [m for m in pressed.followups if m.ephemeral], 30, "the notice")
    assert "already answered or has expired" in notice.content
    await fake.wait_until(lambda: not prompt.buttons(), 30, "the stale buttons to go")
    assert "No longer waiting" in prompt.content
    assert [c["type"] for c in pressed.callbacks] == [6]


async def test_a_long_diff_asked_by_slash_command_arrives_as_a_file(
    bots: Bots, team: Team, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    payments = repo(tmp_path / "payments")
    projects = {"payments": {"path": str(payments), "places": [f"discord:{team.alice.id}"]}}
    await bots.start(projects=projects)
    fake = team.fake
    big = "".join(f"line {i}\n" for i in range(DIFF_INLINE_CHARS // 5))
    fake_api.rules["write big"] = [ToolCall("Write", {"file_path": "big.txt", "content": big})]
    dm = fake.dm_channel(team.alice.user)
    await fake.user_message(dm, team.alice, "write big")
    await reply_in(fake, dm, "tool result")
    await idle(bots.running[0], dm_key(team.alice))
    it = await fake.slash_command("diff", user=team.alice, channel=dm)
    [uploaded] = await fake.wait_until(lambda: [m for m in it.followups if m.attachments], 30, "the diff file")
    [attachment] = uploaded.attachments
    assert attachment["filename"].endswith(".diff")
    assert any("attached file" in m.content for m in it.followups)


# -- files, threads that exist, reconnects ----------------------------------------------


async def test_a_file_reaches_the_workspace_and_one_comes_back(
    bots: Bots, team: Team, fake_api: FakeAnthropicAPI
) -> None:
    bot = await bots.start(workspace={"max_upload_mb": 50})
    fake = team.fake
    first = await fake.user_message(
        team.general, team.alice, "keep these notes", mentions=[fake.bot], attachments=[("notes.md", b"# notes\n")]
    )
    thread = await thread_from(fake, first)
    await reply_in(fake, thread, "keep these notes")
    workspace = bot.agent.workspaces.root(thread_key(team, first.id))
    assert (workspace / "uploads" / "notes.md").read_bytes() == b"# notes\n"
    assert "uploads/notes.md" in fake_api.requests[-1].last_user_text()

    # over the server's upload limit (10 MiB without boosts): refused before anything is downloaded
    downloads = len(fake.called("GET /attachments/{channel_id}/{attachment_id}/{filename}"))
    big = b"\0" * (10 * 1024 * 1024 + 1)
    await fake.user_message(thread, team.alice, "and this one", attachments=[("huge.bin", big)])
    refusal = await reply_in(fake, thread, "huge.bin")
    assert "the limit is 10 MB" in refusal.content and "Nothing was sent to Claude" in refusal.content
    assert len(fake.called("GET /attachments/{channel_id}/{attachment_id}/{filename}")) == downloads

    (workspace / "report.csv").write_text("a,b\n1,2\n")
    fake_api.rules["send me the report"] = [
        ToolCall("mcp__ccbridge__send_file", {"path": "report.csv", "caption": "the **report**"})
    ]
    await fake.user_message(thread, team.alice, "send me the report")
    [upload] = await fake.wait_until(lambda: [m for m in fake.bot_messages(thread) if m.attachments], 30, "the file")
    assert upload.attachments[0]["filename"] == "report.csv" and list(upload.files.values()) == [b"a,b\n1,2\n"]
    assert upload.content == "the **report**"
    await reply_in(fake, thread, "tool result")


async def test_a_thread_that_exists_already_is_reused(bots: Bots, team: Team, fake_api: FakeAnthropicAPI) -> None:
    await bots.start()
    fake = team.fake
    bare = await fake.user_message(team.general, team.alice, "", mentions=[fake.bot])
    hint = await reply_in(fake, team.general, "Send me a question")
    assert hint.content == empty_hint("/") and hint.reference is bare and fake.threads == []
    # a reply to the hint continues at the message it answers: someone opened a thread from that one
    # earlier; it is archived, so the bot has not cached it
    old = fake.add_thread("earlier", team.general, owner=team.alice.user, archived=True, starter=bare)
    await fake.user_message(team.general, team.alice, "continue here", reference=hint)
    await reply_in(fake, old, "echo: [Alice] continue here")
    assert [c.status for c in fake.called(OPEN_THREAD)] == [400]  # 160004: found and reused
    assert fake.threads == [old]


async def test_where_no_thread_can_be_opened_a_reply_to_any_answer_continues_the_conversation(
    bots: Bots, team: Team, fake_api: FakeAnthropicAPI
) -> None:
    bot = await bots.start(access=team.access())
    fake = team.fake
    fake.fail(OPEN_THREAD, Failure(403, 50013, "Missing Permissions"), times=100)
    first = await fake.user_message(team.general, team.alice, "my name is Ada", mentions=[fake.bot])
    answer = await reply_in(fake, team.general, "echo: [Alice] my name is Ada")
    assert answer.reference is first  # in the channel, the answer says which message it answers
    await idle(bot, thread_key(team, first.id))
    second = await fake.user_message(team.general, team.alice, "and my name?", reference=answer)
    again = await reply_in(fake, team.general, "echo: [Alice] and my name?")
    assert any("my name is Ada" in t for t in fake_api.requests[-1].user_texts())  # the same session
    assert again.reference is first and second.thread_id is None
    await idle(bot, thread_key(team, first.id))
    await fake.user_message(team.general, team.alice, "still me?", reference=again)  # a reply to a later answer
    await reply_in(fake, team.general, "echo: [Alice] still me?")
    assert {"[Alice] my name is Ada", "[Alice] and my name?"} <= set(fake_api.requests[-1].user_texts())
    assert fake.threads == [] and len(fake.called(OPEN_THREAD)) == 3  # each turn tried to open the thread


async def test_server_messages_left_waiting_by_a_restart_are_answered_in_their_threads_once_it_is_back(
    bots: Bots, team: Team, fake_api: FakeAnthropicAPI
) -> None:
    bot = await bots.start(access={**team.access(), "debounce": 60.0})
    fake = team.fake
    blocked = True  # the typing indicator would open the threads at once: not before the restart here
    fake.fail(OPEN_THREAD, Failure(400, 50035, when=lambda _: blocked), times=100)
    mention = await fake.user_message(team.general, team.alice, "first thought", mentions=[fake.bot])
    bare = await fake.user_message(team.general, team.alice, "", mentions=[fake.bot])
    hint = await reply_in(fake, team.general, "Send me a question")
    assert hint.reference is bare
    answer = await fake.user_message(team.general, team.alice, "continue here", reference=hint)  # a reply to the bot
    keys = [thread_key(team, mention.id), thread_key(team, bare.id)]  # a reply to the hint: the message it answers
    for key in keys:
        await eventually(lambda key=key: _queued(bot, key), what=f"the message in {key} parked")
    await bots.stop(bot)  # inside the debounce window: nothing ran, no thread was opened
    assert asked(fake_api) == [] and fake.threads == []

    blocked = False
    bot = await bots.start(access=team.access())  # nobody writes again: the bot answers once it is back
    opened = await thread_from(fake, mention)
    assert opened.parent_id == team.general.id and opened.name == "first thought"
    await reply_in(fake, opened, "echo: [Alice] first thought")
    continued = await thread_from(fake, bare)  # the thread opens from the message the bot's hint answered
    await reply_in(fake, continued, "echo: [Alice] continue here")
    assert sorted(asked(fake_api)) == ["[Alice] continue here", "[Alice] first thought"]
    assert texts(fake, team.general) == [hint.content] and answer.thread_id is None
    assert len(fake.threads) == 2
    assert bot.adapter.sink_at({"channel": "general"}) is None  # an address naming no channel id: nowhere


async def _queued(bot: DiscordBot, key: ConversationKey) -> bool:
    return len(await bot.agent.conversations.queued(key)) == 1


async def test_reconnects_and_replays_are_answered_once(bots: Bots, team: Team, fake_api: FakeAnthropicAPI) -> None:
    await bots.start()
    fake = team.fake
    dm = fake.dm_channel(team.alice.user)
    fake.hold_gateway()
    await fake.disconnect(code=4000)  # resumable: discord.py resumes and the missed dispatch is replayed
    missed = await fake.user_message(dm, team.alice, "sent while away")
    fake.release_gateway()
    await reply_in(fake, dm, "echo: sent while away")
    assert fake.session.resumes == 1
    await fake.redeliver(missed)  # the same MESSAGE_CREATE once more
    await fake.disconnect(code=None)  # the TCP link just drops: resumed again
    await fake.user_message(dm, team.alice, "barrier")
    await reply_in(fake, dm, "echo: barrier")
    assert asked(fake_api) == ["sent while away", "barrier"]
    assert len([t for t in texts(fake, dm) if "sent while away" in t]) == 1
    assert all(m.author.id == BOT_ID for m in fake.bot_messages(dm))


async def test_a_token_revoked_while_running_ends_the_bot_with_one_clear_error(bots: Bots, team: Team) -> None:
    bot = await bots.start()
    serving = asyncio.create_task(bot.adapter.serve())
    await team.fake.disconnect(code=4004)  # "Authentication failed": not resumable, discord.py gives up
    with pytest.raises(ConfigError) as info:
        await asyncio.wait_for(serving, 15)
    assert str(info.value) == "bots.discord.token: Discord rejected the bot token"
    await bot.adapter.stop()
    await bot.adapter.stop()  # twice: harmless


async def test_a_slash_command_is_deferred_even_while_the_store_does_not_answer(
    bots: Bots, team: Team, fake_api: FakeAnthropicAPI
) -> None:
    bot = await bots.start(access=team.access())
    fake = team.fake
    dispatcher = bot.dispatcher
    checked = dispatcher.first_delivery
    stuck = asyncio.Event()

    async def hanging(event_id: str, *args: Any, **kw: Any) -> bool:
        if event_id.startswith("interaction:"):
            await stuck.wait()  # a store that never answers the replay check
        return await checked(event_id, *args, **kw)

    dispatcher.first_delivery = hanging  # type: ignore[method-assign]
    it = await fake.slash_command("claude", {"prompt": "explain the logs"}, user=team.alice, channel=team.general)
    await fake.wait_for_interaction_response(it)
    assert [c["type"] for c in it.callbacks] == [5]  # deferred although the check never came back
    answer = await fake.wait_until(lambda: it.original if it.original and not it.original.loading else None, 30)
    thread = await thread_from(fake, answer)
    await reply_in(fake, thread, "echo: [Alice] explain the logs")
