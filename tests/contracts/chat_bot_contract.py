"""The chat-bot contract: what every chat platform's bot must do, run against each one.

A platform's test module subclasses :class:`ChatBotContract` and provides a
``harness`` fixture: a :class:`ChatHarness` driving the real platform SDK against
that platform's fake server, with the real Claude Code CLI and the fake model.
The people are named, not numbered: ``alice`` and ``bob`` are on the allowlist,
``boss`` is an admin, ``eve`` is nobody the bot knows. Each harness maps them to
its platform's user ids.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core import Agent, ConfigError, ConversationKey, Decision
from tests.fakes.anthropic_api import FakeAnthropicAPI, Hang, Text, ToolCall
from tests.fakes.platform_server import PlatformServer
from tests.helpers import eventually


def calls_since(server: PlatformServer, method: str) -> Callable[[], list[float]]:
    """A function giving the times (``time.monotonic()``) of the calls of ``method`` made from now on."""
    before = len(server.called(method))
    return lambda: [call.at for call in server.called(method)[before:]]


ALLOWED = ("alice", "bob")
ADMIN = "boss"
OUTSIDER = "eve"


class ChatHarness(ABC):
    """One platform, as a person in its chat would use it."""

    platform: str
    fake_api: FakeAnthropicAPI
    bot: Any  # the running ChatBot (its adapter and dispatcher), None when stopped
    #: the bot's reply sinks have an address another instance rebuilds them from (so the instance
    #: running a conversation posts its replies itself); False: the receiving instance shows them
    replies_elsewhere: bool = True

    @abstractmethod
    async def start(self, **sections: Any) -> Agent:
        """Start (or restart, on the same store) the bot; alice and bob allowed, boss an admin. Returns its agent."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop the bot (its agent too); the store and the fake platform stay."""

    @abstractmethod
    def key(self, user: str) -> ConversationKey:
        """The conversation of ``user``'s direct chat with the bot."""

    @abstractmethod
    async def say(self, user: str, text: str, *, files: dict[str, bytes] | None = None) -> Any:
        """``user`` writes to the bot directly (with files); returns the delivery, for :meth:`redeliver`."""

    @abstractmethod
    async def redeliver(self, delivery: Any) -> None:
        """The platform delivers the same event again (a retry, a replay after a reconnect)."""

    @abstractmethod
    def replies(self, user: str) -> list[str]:
        """What the bot shows in ``user``'s direct chat (final texts and notices), oldest first."""

    @abstractmethod
    async def approval(self, user: str) -> Any:
        """Wait for a pending approval prompt in ``user``'s direct chat; returns it."""

    @abstractmethod
    async def press(self, prompt: Any, user: str, decision: Decision) -> str | None:
        """``user`` presses a button of ``prompt``; returns what they are told privately (None: nothing)."""

    @abstractmethod
    def prompt_text(self, prompt: Any) -> str:
        """The prompt as shown now (after a decision: with the decision)."""

    @abstractmethod
    def rate_limit_final(self, retry_after: float) -> Callable[[], list[float]]:
        """The platform answers the next final message of a reply with a rate limit; returns what
        :func:`calls_since` returns for the platform method refused."""

    @abstractmethod
    def downloads(self) -> int:
        """How many files the bot fetched from the platform so far (its download calls)."""

    @abstractmethod
    async def start_with_bad_token(self) -> None:
        """Start a bot whose token the platform rejects (expected to raise ConfigError)."""

    @abstractmethod
    def token_key(self) -> str:
        """The config key a rejected token error must name (``bots.<name>.token``)."""

    # -- derived ---------------------------------------------------------------
    def user_id(self, who: str) -> str:
        """``who``'s id on the platform (what an admin types after /allow)."""
        return self.key(who).owner

    def command(self, name: str, args: str = "") -> str:
        """How a person types a command on this platform."""
        return f"/{name} {args}".strip()

    async def reply_containing(self, user: str, needle: str) -> str:
        found = await eventually(
            lambda: [r for r in self.replies(user) if needle in r], what=f"a reply with {needle!r}"
        )
        return found[-1]

    def asked(self) -> list[str]:
        """What the model was asked, oldest first."""
        return [r.last_user_text() for r in self.fake_api.requests if not r.tool_results()]


class ChatBotContract:
    """Every test runs against the subclass's ``harness`` fixture (see :class:`ChatHarness`)."""

    async def test_a_redelivered_message_is_answered_once(self, harness: ChatHarness) -> None:
        await harness.start()
        delivery = await harness.say("alice", "only once please")
        await harness.reply_containing("alice", "echo: only once please")
        await harness.redeliver(delivery)
        await harness.say("alice", "barrier")
        await harness.reply_containing("alice", "echo: barrier")
        assert harness.asked().count("only once please") == 1
        assert len([r for r in harness.replies("alice") if "only once please" in r]) == 1

    async def test_a_redelivery_after_a_restart_is_answered_once(self, harness: ChatHarness) -> None:
        await harness.start()
        delivery = await harness.say("alice", "before the restart")
        await harness.reply_containing("alice", "echo: before the restart")
        await harness.stop()
        await harness.start()  # same store: the memory of deliveries survives
        await harness.redeliver(delivery)
        await harness.say("alice", "after the restart")
        await harness.reply_containing("alice", "echo: after the restart")
        assert harness.asked().count("before the restart") == 1

    async def test_outsiders_are_refused_once_and_nothing_runs(self, harness: ChatHarness) -> None:
        agent = await harness.start()
        await harness.say(OUTSIDER, "let me in")
        refusal = await harness.reply_containing(OUTSIDER, "allowlist")
        await harness.say(OUTSIDER, "please?", files={"secret.txt": b"data"})
        await harness.say("alice", "barrier")
        await harness.reply_containing("alice", "echo: barrier")
        assert harness.replies(OUTSIDER) == [refusal]  # once per cooldown, not once per message
        assert harness.asked() == ["barrier"]
        assert await agent.conversations.get(harness.key(OUTSIDER)) is None
        assert not agent.workspaces.root(harness.key(OUTSIDER)).exists()
        assert harness.downloads() == 0  # its file was never fetched: refused before anything was downloaded

    async def test_only_the_requester_or_an_admin_answers_an_approval(
        self, harness: ChatHarness, tmp_path: Path
    ) -> None:
        agent = await harness.start()
        harness.fake_api.enqueue(ToolCall("Bash", {"command": "echo ran > approved.txt", "description": "write"}))
        await harness.say("alice", "write the file")
        prompt = await harness.approval("alice")
        told = await harness.press(prompt, "bob", Decision.ALLOW_ONCE)
        assert told is not None and "only the person who asked" in told.lower()
        assert "Allowed" not in harness.prompt_text(prompt)
        assert not (agent.workspaces.root(harness.key("alice")) / "approved.txt").exists()
        await harness.press(prompt, ADMIN, Decision.ALLOW_ONCE)
        await harness.reply_containing("alice", "tool result:")
        await eventually(lambda: "Allowed once" in harness.prompt_text(prompt), what="the decision on the prompt")
        assert (agent.workspaces.root(harness.key("alice")) / "approved.txt").read_text() == "ran\n"
        late = await harness.press(prompt, "alice", Decision.DENY)  # a stale button
        assert late is not None and "already answered" in late.lower()

    async def test_upload_names_that_climb_stay_in_uploads(self, harness: ChatHarness) -> None:
        agent = await harness.start()
        await harness.say("alice", "keep this", files={"../../escape.txt": b"inside"})
        await harness.reply_containing("alice", "echo: keep this")
        uploads = agent.workspaces.root(harness.key("alice")) / "uploads"
        saved = [p for p in uploads.iterdir() if p.read_bytes() == b"inside"]
        assert len(saved) == 1 and saved[0].parent == uploads and ".." not in saved[0].name
        base = agent.workspaces.base_dir
        assert not any(p.name.endswith("escape.txt") for p in base.parent.iterdir())
        assert f"uploads/{saved[0].name}" in harness.fake_api.requests[-1].last_user_text()
        assert harness.downloads() == 1  # (what the outsider test counts)

    async def test_a_rate_limited_final_message_is_waited_out(self, harness: ChatHarness) -> None:
        await harness.start()
        calls = harness.rate_limit_final(retry_after=1)
        await harness.say("alice", "the whole answer please")
        assert await harness.reply_containing("alice", "echo: the whole answer please")
        await eventually(lambda: len(calls()) >= 2, what="the refused call and its retry")
        refused, retried, *_ = calls()
        assert retried - refused >= 0.9  # the retry came once the platform's retry_after had passed

    async def test_another_instance_rebuilds_a_reply_sink_from_its_address(self, harness: ChatHarness) -> None:
        await harness.start()
        dispatcher = harness.bot.dispatcher
        received: list[Any] = []
        submit = dispatcher.submit

        def recording(msg: Any, ticket: Any = None) -> Any:
            received.append(msg.reply)
            return submit(msg, ticket)

        dispatcher.submit = recording
        await harness.say("alice", "where do you answer?")
        await harness.reply_containing("alice", "echo: where do you answer?")
        address = received[0].address()
        assert dispatcher.adapter is harness.bot.adapter  # the adapter the owner rebuilds sinks with
        if not harness.replies_elsewhere:
            assert address is None
            return
        travelled = json.loads(json.dumps(address))  # what the coordination Redis carries
        rebuilt = harness.bot.adapter.sink_at(travelled)
        assert rebuilt is not None and rebuilt.address() == address
        await rebuilt.finalize(None, "posted by the owner")
        await harness.reply_containing("alice", "posted by the owner")
        adapter = harness.bot.adapter
        assert adapter.sink_at({"no such field": 1}) is None
        await harness.stop()
        assert adapter.sink_at(travelled) is None  # a stopped instance does not post

    async def test_messages_waiting_when_the_bot_stops_are_answered_after_it_starts(self, harness: ChatHarness) -> None:
        agent = await harness.start(access={"debounce": 60.0})
        await harness.say("alice", "first thought")
        await harness.say("alice", "second thought")
        key = harness.key("alice")
        await eventually(lambda: _count(agent.conversations.queued(key), 2), what="both messages parked")
        await harness.stop()  # inside the window: nothing ran, nothing is lost
        assert not harness.asked()
        await harness.start()  # answered without anyone writing again
        answer = await harness.reply_containing("alice", "echo: first thought")
        assert "second thought" in answer
        assert len([q for q in harness.asked() if "first thought" in q]) == 1

    async def test_stop_lets_work_finish_up_to_its_drain_then_cancels_the_rest(self, harness: ChatHarness) -> None:
        harness.fake_api.rules["a quick job"] = [Text("quick job done", chunks=3, delay=0.2)]
        harness.fake_api.rules["a long job"] = [Hang("working on it", seconds=60)]
        await harness.start()
        await harness.say("alice", "a quick job")
        await eventually(lambda: "a quick job" in " ".join(harness.asked()), what="the quick turn running")
        await harness.bot.adapter.stop(drain_timeout=30)  # finished, not stopped
        await harness.reply_containing("alice", "quick job done")
        await harness.stop()

        await harness.start()
        await harness.say("bob", "a long job")
        await eventually(lambda: "a long job" in " ".join(harness.asked()), what="the long turn running")
        bot = harness.bot
        await bot.adapter.stop(drain_timeout=0.5)
        assert [t for t in bot.dispatcher.in_flight if not t.done()] == []  # cancelled, not left running
        assert any("working on it" in r and "Stopped" in r for r in harness.replies("bob"))  # ended, not "generating"
        await bot.adapter.stop(drain_timeout=0.5)  # twice: harmless
        await harness.stop()

    async def test_a_rejected_token_is_a_config_error_naming_the_key(self, harness: ChatHarness) -> None:
        with pytest.raises(ConfigError) as info:
            await harness.start_with_bad_token()
        assert str(info.value).startswith(f"{harness.token_key()}:")

    async def test_admins_allow_and_revoke_access_from_the_chat(self, harness: ChatHarness) -> None:
        await harness.start()
        eve = harness.user_id(OUTSIDER)
        await harness.say(OUTSIDER, "let me in")
        await harness.reply_containing(OUTSIDER, "allowlist")
        await harness.say("alice", harness.command("allow", eve))
        await harness.reply_containing("alice", "Only admins")
        await harness.say(ADMIN, harness.command("allow", eve))
        await harness.reply_containing(ADMIN, "may use the bot now")
        await harness.say(OUTSIDER, "am I in?")
        await harness.reply_containing(OUTSIDER, "echo: am I in?")
        await harness.say(ADMIN, harness.command("users"))
        listing = await harness.reply_containing(ADMIN, "Who may use this bot")
        assert f"{harness.platform}:{eve}" in listing and "from the chat: granted by" in listing
        await harness.stop()
        await harness.start()  # grants live in the store: they survive a restart
        await harness.say(OUTSIDER, "still in?")
        await harness.reply_containing(OUTSIDER, "echo: still in?")
        await harness.say(ADMIN, harness.command("revoke", eve))
        await harness.reply_containing(ADMIN, "no longer")
        await harness.say(OUTSIDER, "and now?")
        await harness.say("alice", "barrier")
        await harness.reply_containing("alice", "echo: barrier")
        assert "and now?" not in harness.asked()


async def _count(records: Any, n: int) -> bool:
    return len(await records) == n
