"""The fake Discord against the real discord.py: what a bot adapter will rely on.

Every test runs a real ``discord.Client`` (with an ``app_commands.CommandTree``) against
:class:`FakeDiscord` on 127.0.0.1. ``guild_ready_timeout`` is lowered because discord.py
otherwise waits 2 s after the last GUILD_CREATE before ``on_ready``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import discord
import pytest
from discord import app_commands

from tests.fakes.platform_server import Failure

from .fake_discord import BOT_ID, TOKEN, Channel, FakeDiscord, Guild, Intents, Member

SEND = "POST /channels/{channel_id}/messages"
EDIT = "PATCH /channels/{channel_id}/messages/{message_id}"
CALLBACK = "POST /interactions/{webhook_id}/{webhook_token}/callback"

pytestmark = pytest.mark.timeout(30)


def intents(*, message_content: bool = True, members: bool = True) -> discord.Intents:
    value = discord.Intents.default()
    value.message_content = message_content
    value.members = members
    return value


class Bot(discord.Client):
    """A client that queues what it receives, so tests can await it."""

    def __init__(self, **options: Any) -> None:
        super().__init__(intents=options.pop("intents", None) or intents(), guild_ready_timeout=0.05, **options)
        self.tree = app_commands.CommandTree(self)
        self.ready = asyncio.Event()
        self.resumed = asyncio.Event()
        self.inbox: asyncio.Queue[discord.Message] = asyncio.Queue()
        self.threads_created: asyncio.Queue[discord.Thread] = asyncio.Queue()

    async def on_ready(self) -> None:
        self.ready.set()

    async def on_resumed(self) -> None:
        self.resumed.set()

    async def on_message(self, message: discord.Message) -> None:
        if message.author.id != BOT_ID:
            await self.inbox.put(message)

    async def on_thread_create(self, thread: discord.Thread) -> None:
        await self.threads_created.put(thread)

    async def next_message(self, timeout: float = 10.0) -> discord.Message:
        return await asyncio.wait_for(self.inbox.get(), timeout)


@contextlib.asynccontextmanager
async def running(bot: Bot, token: str = TOKEN) -> AsyncIterator[Bot]:
    """Start ``bot``, wait for ``on_ready`` (or its start to fail), close it afterwards."""
    task = asyncio.create_task(bot.start(token))
    ready = asyncio.create_task(bot.ready.wait())
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises what start() raised
            raise AssertionError("the client stopped before it was ready")
        assert ready in done, "the client never became ready"
        yield bot
    finally:
        ready.cancel()
        await bot.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


@dataclass
class World:
    fake: FakeDiscord
    guild: Guild
    general: Channel
    forum: Channel
    alice: Member  # a developer
    bob: Member  # no roles


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        server.patch_discord(monkeypatch)
        yield server


@pytest.fixture
def world(fake: FakeDiscord) -> World:
    guild = fake.add_guild("Team", text_channels=["general"], forum_channels=["help"], roles=["dev"])
    alice = fake.add_member("alice", roles=["dev"])
    bob = fake.add_member("bob")
    return World(fake, guild, guild.channel("general"), guild.channel("help"), alice, bob)


def text_channel(bot: Bot, channel: Channel) -> discord.TextChannel:
    found = bot.get_channel(channel.id)
    assert isinstance(found, discord.TextChannel)
    return found


# -- login and gateway -------------------------------------------------------------


async def test_login_ready_and_guild_cache(world: World) -> None:
    fake = world.fake
    async with running(Bot()) as bot:
        assert bot.user is not None and bot.user.id == BOT_ID
        assert bot.application_id == BOT_ID
        guild = bot.get_guild(world.guild.id)
        assert guild is not None and guild.name == "Team"
        assert isinstance(guild.get_channel(world.general.id), discord.TextChannel)
        assert isinstance(guild.get_channel(world.forum.id), discord.ForumChannel)
        assert {r.name for r in guild.roles} == {"@everyone", "dev"}
        # Without the presences intent GUILD_CREATE lists only the bot; discord.py chunked the rest (op 8).
        alice = guild.get_member(world.alice.id)
        assert alice is not None and [r.name for r in alice.roles] == ["@everyone", "dev"]
        assert guild.chunked
        conn = fake.connections[0]
        assert conn.ops_received(8), "discord.py should have requested the guild's members"
        assert conn.dispatches_sent("GUILD_MEMBERS_CHUNK")

    assert [c.method for c in fake.calls[:2]] == ["GET /users/@me", "GET /oauth2/applications/@me"]
    assert conn.query == {"v": "10", "encoding": "json", "compress": "zlib-stream"} and conn.binary
    identify = conn.ops_received(2)[0]["d"]
    assert identify["token"] == TOKEN
    assert identify["intents"] & Intents.MESSAGE_CONTENT and identify["intents"] & Intents.GUILD_MEMBERS
    assert fake.heartbeats >= 1  # discord.py beats right after HELLO
    assert conn.sent[0]["op"] == 10 and conn.dispatches_sent()[0]["t"] == "READY"
    await fake.wait_until(lambda: conn.close_code is not None, 5, "the server side of the close")
    # Client.close() asks for 1000, but its reader wakes first and closes with 4000: the session stays resumable.
    assert conn.close_code == 4000 and fake.session.resumable


async def test_bad_token_is_a_login_failure(world: World) -> None:
    with pytest.raises(discord.LoginFailure):
        async with running(Bot(), token="not-the-token"):
            pass
    assert [(c.method, c.status) for c in world.fake.calls] == [("GET /users/@me", 401)]
    assert world.fake.connections == []


async def test_disallowed_privileged_intent_closes_with_4014(world: World) -> None:
    world.fake.enabled_privileged_intents = Intents.PRIVILEGED & ~Intents.MESSAGE_CONTENT
    with pytest.raises(discord.PrivilegedIntentsRequired):
        async with running(Bot()):
            pass
    assert world.fake.connections[0].close_code == 4014


# -- messages in ------------------------------------------------------------------


async def test_guild_message_reaches_on_message_with_mentions_and_roles(world: World) -> None:
    fake = world.fake
    async with running(Bot()) as bot:
        sent = await fake.user_message(world.general, world.alice, "please look", mentions=[fake.bot])
        message = await bot.next_message()
        assert message.id == sent.id
        assert message.content == f"<@{BOT_ID}> please look"
        assert bot.user in message.mentions
        assert isinstance(message.author, discord.Member)
        assert [r.name for r in message.author.roles] == ["@everyone", "dev"]
        assert message.guild is not None and message.guild.id == world.guild.id
        assert message.channel.id == world.general.id

        reply_to = await message.channel.send("on it")
        await fake.user_message(world.general, world.bob, "thanks", reference=reply_to.id)
        reply = await bot.next_message()
        assert reply.reference is not None and reply.reference.message_id == reply_to.id
        assert bot.user in reply.mentions, "a reply pings the replied-to author by default"


async def test_dm_has_no_guild(world: World) -> None:
    fake = world.fake
    async with running(Bot()) as bot:
        dm = fake.dm_channel(world.bob.user)
        await fake.user_message(dm, world.bob, "hello in private")
        message = await bot.next_message()
        assert message.guild is None and isinstance(message.channel, discord.DMChannel)
        assert message.content == "hello in private"
        await message.channel.send("hi bob")
    assert [m.content for m in fake.bot_messages(dm)] == ["hi bob"]


async def test_without_message_content_only_mentions_carry_text(world: World) -> None:
    fake = world.fake
    async with running(Bot(intents=intents(message_content=False))) as bot:
        await fake.user_message(world.general, world.alice, "chatter")
        assert (await bot.next_message()).content == ""
        await fake.user_message(world.general, world.alice, "for you", mentions=[fake.bot])
        assert (await bot.next_message()).content == f"<@{BOT_ID}> for you"


# -- messages out -----------------------------------------------------------------


async def test_send_edit_react_and_type(world: World) -> None:
    fake = world.fake
    async with running(Bot()) as bot:
        channel = text_channel(bot, world.general)
        async with channel.typing():
            sent = await channel.send("thinking")
        edited = await sent.edit(content="done")
        assert edited.content == "done" and edited.edited_at is not None
        await sent.add_reaction("👍")
        fetched = await channel.fetch_message(sent.id)
        assert fetched.content == "done" and fetched.reactions[0].me
    stored = fake.message(sent.id)
    assert stored.history == ["thinking", "done"]
    assert stored.reactions == {"👍": {BOT_ID}}
    assert fake.typing_in(world.general) >= 1


async def test_limits_and_unknown_messages(world: World) -> None:
    fake = world.fake
    async with running(Bot()) as bot:
        channel = text_channel(bot, world.general)
        with pytest.raises(discord.HTTPException) as too_long:
            await channel.send("x" * 2001)
        assert (too_long.value.status, too_long.value.code) == (400, 50035)
        assert "2000 or fewer" in str(too_long.value)
        with pytest.raises(discord.HTTPException) as empty:
            await channel.send("")
        assert (empty.value.status, empty.value.code) == (400, 50006)
        assert fake.bot_messages(world.general) == []

        with pytest.raises(discord.NotFound) as unknown:
            await channel.get_partial_message(1234567890123).edit(content="nope")
        assert unknown.value.code == 10008

        sent = await channel.send("x" * 2000)
        fake.fail(EDIT, Failure(400, code=30046))
        with pytest.raises(discord.HTTPException) as too_old:
            await sent.edit(content="late edit")
        assert too_old.value.code == 30046
        await sent.delete()
        with pytest.raises(discord.NotFound) as deleted:
            await sent.edit(content="after delete")
        assert deleted.value.code == 10008


async def test_rate_limited_send_is_waited_out(world: World) -> None:
    fake = world.fake
    async with running(Bot()) as bot:
        channel = text_channel(bot, world.general)
        fake.fail(SEND, Failure(429, retry_after=0.3))
        started = time.monotonic()
        sent = await channel.send("eventually")
        assert time.monotonic() - started >= 0.3
    calls = fake.called(SEND)
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 0.3
    assert [m.content for m in fake.bot_messages(world.general)] == ["eventually"]
    assert sent.id == fake.bot_messages(world.general)[0].id


async def test_exhausted_bucket_is_respected_by_discord_py(world: World) -> None:
    fake = world.fake
    fake.set_rate_limit(SEND, limit=2, per=0.5)
    async with running(Bot()) as bot:
        channel = text_channel(bot, world.general)
        for n in range(4):
            await channel.send(f"message {n}")
    calls = fake.called(SEND)
    assert [c.status for c in calls] == [200] * 4, "discord.py waits on X-RateLimit-Remaining: 0"
    assert calls[2].at - calls[0].at >= 0.4


async def test_cloudflare_style_429_is_not_retried(world: World) -> None:
    fake = world.fake
    async with running(Bot()) as bot:
        fake.fail(SEND, Failure(429, retry_after=0.1, extra={"cloudflare": True}))
        with pytest.raises(discord.HTTPException) as banned:
            await text_channel(bot, world.general).send("blocked")
        assert banned.value.status == 429
    assert len(fake.called(SEND)) == 1


async def test_threads_from_messages_and_forum_posts(world: World) -> None:
    fake = world.fake
    async with running(Bot()) as bot:
        channel = text_channel(bot, world.general)
        await fake.user_message(world.general, world.alice, "start a session", mentions=[fake.bot])
        request = await bot.next_message()
        thread = await request.create_thread(name="session 1")
        assert thread.id == request.id and thread.parent_id == channel.id
        assert (await asyncio.wait_for(bot.threads_created.get(), 10)).id == thread.id
        with pytest.raises(discord.HTTPException) as again:
            await request.create_thread(name="session 1 again")
        assert again.value.code == 160004
        await thread.send("inside the thread")

        forum = bot.get_channel(world.forum.id)
        assert isinstance(forum, discord.ForumChannel)
        post = await forum.create_thread(name="question", content="first post")
        assert post.message.content == "first post" and post.thread.parent_id == forum.id

    created = {t.name: t for t in fake.threads}
    assert created["session 1"].starter_message_id == request.id
    assert [m.content for m in fake.bot_messages(created["session 1"])] == ["inside the thread"]
    assert fake.channel_messages(created["question"])[0].id == created["question"].id


async def test_upload_and_download_files(world: World) -> None:
    fake = world.fake
    async with running(Bot()) as bot:
        channel = text_channel(bot, world.general)
        sent = await channel.send("the log", file=discord.File(__file__, filename="log.txt"))
        assert sent.attachments[0].filename == "log.txt"
        assert await sent.attachments[0].read() == open(__file__, "rb").read()

        hosted = fake.host_file("notes.md", b"# notes\n")
        await fake.user_message(world.general, world.alice, "see attached", attachments=[hosted])
        incoming = await bot.next_message()
        attachment = incoming.attachments[0]
        assert (attachment.filename, attachment.size, attachment.content_type) == ("notes.md", 8, "text/markdown")
        assert await attachment.read() == b"# notes\n"
    stored = fake.message(sent.id)
    assert list(stored.files.values()) == [open(__file__, "rb").read()]
    assert len(fake.called("GET /attachments/{channel_id}/{attachment_id}/{filename}")) == 2


# -- interactions -----------------------------------------------------------------


def add_commands(bot: Bot, seen: asyncio.Queue[str]) -> None:
    @bot.tree.command(name="ask", description="Ask Claude")
    async def ask(interaction: discord.Interaction, prompt: str) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(f"answer to {prompt}")
        await interaction.followup.send("only you see this", ephemeral=True)
        await seen.put(prompt)


async def test_slash_command_is_deferred_and_followed_up(world: World) -> None:
    fake = world.fake
    seen: asyncio.Queue[str] = asyncio.Queue()
    bot = Bot()
    add_commands(bot, seen)
    async with running(bot):
        with pytest.raises(AssertionError, match="not registered"):
            await fake.slash_command("ask", {"prompt": "x"}, user=world.alice, channel=world.general)
        await bot.tree.sync()
        await bot.tree.sync()
        assert [(s.names, s.changed) for s in fake.command_syncs] == [(["ask"], True), (["ask"], False)]

        it = await fake.slash_command("ask", {"prompt": "why"}, user=world.alice, channel=world.general)
        assert await asyncio.wait_for(seen.get(), 10) == "why"

    assert [c["type"] for c in it.callbacks] == [5]
    assert it.original is not None and it.original.content == "answer to why" and not it.original.loading
    assert it.followups[0] is it.original, "the first followup after a defer edits the thinking message"
    assert it.followups[1].ephemeral and it.followups[1].content == "only you see this"
    assert it.payload["member"]["roles"] == [str(world.guild.role("dev").id)]


async def test_a_late_first_response_is_an_unknown_interaction(world: World) -> None:
    fake = world.fake
    fake.interaction_response_window = 0.0
    errors: asyncio.Queue[BaseException] = asyncio.Queue()
    bot = Bot()

    @bot.tree.command(name="slow", description="Too slow")
    async def slow(interaction: discord.Interaction) -> None:
        try:
            await interaction.response.send_message("late")
        except discord.HTTPException as exc:
            await errors.put(exc)

    async with running(bot):
        await bot.tree.sync()
        await fake.slash_command("slow", user=world.bob, channel=world.general)
        error = await asyncio.wait_for(errors.get(), 10)
    assert isinstance(error, discord.NotFound) and error.code == 10062


class Approval(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)
        self.pressed: asyncio.Queue[int] = asyncio.Queue()

    @discord.ui.button(label="Allow", style=discord.ButtonStyle.success, custom_id="approve:42")
    async def allow(self, interaction: discord.Interaction, button: discord.ui.Button[Approval]) -> None:
        await interaction.response.edit_message(content="Allowed", view=None)
        await self.pressed.put(interaction.user.id)

    @discord.ui.button(label="Why?", style=discord.ButtonStyle.secondary, custom_id="explain:42")
    async def explain(self, interaction: discord.Interaction, button: discord.ui.Button[Approval]) -> None:
        await interaction.response.send_message("Because Bash wants to run", ephemeral=True)
        await self.pressed.put(interaction.user.id)


async def test_button_presses_are_answered(world: World) -> None:
    fake = world.fake
    async with running(Bot()) as bot:
        view = Approval()
        prompt = await text_channel(bot, world.general).send("Run `ls`?", view=view)
        stored = fake.message(prompt.id)
        assert [b["custom_id"] for b in stored.buttons()] == ["approve:42", "explain:42"]

        explained = await fake.press("explain:42", user=world.bob)
        assert await asyncio.wait_for(view.pressed.get(), 10) == world.bob.id
        allowed = await fake.press("approve:42", user=world.alice, message=prompt.id)
        assert await asyncio.wait_for(view.pressed.get(), 10) == world.alice.id

    assert [c["type"] for c in explained.callbacks] == [4]
    assert explained.original is not None and explained.original.ephemeral
    assert [c["type"] for c in allowed.callbacks] == [7]
    assert stored.history == ["Run `ls`?", "Allowed"] and stored.components == []
    with pytest.raises(AssertionError, match="no component"):
        await fake.press("approve:42", user=world.alice, message=prompt.id)


async def test_second_callback_is_already_acknowledged(world: World) -> None:
    fake = world.fake
    errors: asyncio.Queue[BaseException] = asyncio.Queue()
    bot = Bot()

    @bot.tree.command(name="twice", description="Answers twice")
    async def twice(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        interaction.response._response_type = None  # defeat discord.py's own guard to reach Discord's
        try:
            await interaction.response.defer()
        except discord.HTTPException as exc:
            await errors.put(exc)

    async with running(bot):
        await bot.tree.sync()
        it = await fake.slash_command("twice", user=world.alice, channel=world.general)
        error = await asyncio.wait_for(errors.get(), 10)
    assert isinstance(error, discord.HTTPException) and error.code == 40060
    assert [c.status for c in fake.called(CALLBACK)] == [200, 400] and len(it.callbacks) == 1


# -- reconnects ---------------------------------------------------------------------


async def test_dropped_connection_resumes_and_replays_missed_dispatches_once(world: World) -> None:
    fake = world.fake
    async with running(Bot()) as bot:
        session = fake.session
        first = fake.connections[0]
        fake.hold_gateway()  # the reconnect waits for HELLO until released
        await fake.disconnect(code=4000)
        missed = await fake.user_message(world.general, world.alice, "sent while away")
        fake.release_gateway()
        await asyncio.wait_for(bot.resumed.wait(), 10)
        await fake.user_message(world.general, world.alice, "after the resume")

        received = [await bot.next_message(), await bot.next_message()]
        assert [m.content for m in received] == ["sent while away", "after the resume"]
        assert bot.inbox.empty()

    assert session.resumes == 1 and len(fake.sessions) == 1
    second = fake.connections[1]
    assert second.path == "/resume/", "discord.py resumes at READY's resume_gateway_url"
    resume = second.ops_received(6)[0]["d"]
    assert resume["session_id"] == session.id and resume["seq"] == first.cursor
    replayed = [f for f in second.dispatches_sent("MESSAGE_CREATE") if f["d"]["id"] == str(missed.id)]
    assert len(replayed) == 1 and not first.dispatches_sent("MESSAGE_CREATE")
    assert [f["t"] for f in second.dispatches_sent()][:2] == ["MESSAGE_CREATE", "RESUMED"]


async def test_unknown_session_on_resume_is_invalidated(world: World) -> None:
    fake = world.fake
    async with running(Bot()) as bot:
        fake.hold_gateway()
        await fake.disconnect(code=4009)  # session timed out: not resumable
        fake.release_gateway()
        await fake.wait_until(lambda: len(fake.connections) >= 2 and fake.connections[1].ops_received(6), 10)
        await fake.wait_until(lambda: any(f["op"] == 9 for f in fake.connections[1].sent), 10)
        # discord.py then identifies afresh (after its 5 s pause for a non-initial IDENTIFY).
        await fake.wait_until(lambda: len(fake.sessions) == 2, 15, "a new session")
        await fake.wait_for_event("READY", count=2)
        assert not bot.resumed.is_set()
        await fake.user_message(world.general, world.alice, "back again")
        assert (await bot.next_message()).content == "back again"
    # discord.py keeps the resume URL for the new IDENTIFY (its ws_params still hold it).
    assert fake.connections[-1].ops_received(2) and not fake.connections[-1].ops_received(6)


async def test_plain_text_frames_and_a_dropped_tcp_link(world: World) -> None:
    fake = world.fake
    fake.transport_compression = False
    async with running(Bot()) as bot:
        assert not fake.connections[0].binary
        await fake.disconnect(code=None)  # no close frame: the TCP connection just goes
        await asyncio.wait_for(bot.resumed.wait(), 15)
        await fake.user_message(world.general, world.bob, "still here")
        assert (await bot.next_message()).content == "still here"
    assert fake.session.resumes == 1 and fake.connections[1].path == "/resume/"
