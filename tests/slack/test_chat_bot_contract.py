"""The chat-bot contract on Slack: real bolt + slack-sdk against the fake Slack (Events API over HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bots.slack import SlackBot
from core import Agent, ConversationKey, Decision, Sections
from core.config import deep_merge
from tests.contracts.chat_bot_contract import ChatBotContract, ChatHarness, calls_since
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.helpers import eventually

from .conftest import slack_config
from .fake_slack import EventPoster, FakeSlack, Message
from .helpers import button_payload, dm

PEOPLE = {"alice": "U1", "bob": "U2", "boss": "UADMIN", "eve": "U9"}
ACTIONS = {
    Decision.ALLOW_ONCE: "ccbridge_approve_once",
    Decision.ALLOW_SESSION: "ccbridge_approve_session",
    Decision.DENY: "ccbridge_deny",
}


def dm_channel(who: str) -> str:
    return f"D0{PEOPLE[who]}"


class SlackHarness(ChatHarness):
    platform = "slack"

    def __init__(self, slack: FakeSlack, fake_api: FakeAnthropicAPI, make_sections: Callable[..., Sections]) -> None:
        self.slack = slack
        self.fake_api = fake_api
        self.make_sections = make_sections
        self.bot: SlackBot | None = None
        self.poster = EventPoster("")
        self._buttons: dict[str, dict[str, Any]] = {}

    async def start(self, **sections: Any) -> Agent:
        access = {"allow_all": False, "allowlist": ["slack:U1", "slack:U2"], "admins": ["slack:UADMIN"]}
        agent = await Agent(self.make_sections(**deep_merge({"access": access}, sections))).start()
        self.bot = SlackBot("slack", agent, slack_config(self.slack))
        await self.bot.adapter.start()
        self.poster.url = f"http://127.0.0.1:{self.bot.adapter.port}/slack/events"  # event ids keep counting
        return agent

    async def stop(self) -> None:
        if self.bot is not None:
            bot, self.bot = self.bot, None
            await bot.adapter.stop(drain_timeout=10)
            await bot.agent.close()

    def key(self, who: str) -> ConversationKey:
        return ConversationKey("slack", PEOPLE[who])

    async def say(self, who: str, text: str, *, files: dict[str, bytes] | None = None) -> Any:
        extra: dict[str, Any] = {}
        if files:
            extra["subtype"] = "file_share"
            extra["files"] = [
                {
                    "id": f"F{i}",
                    "name": name,
                    "size": len(data),
                    "url_private_download": self.slack.host_file(f"file{i}", data),
                }
                for i, (name, data) in enumerate(files.items())
            ]
        event = dm(self.slack, text, user=PEOPLE[who], channel=dm_channel(who), **extra)
        event_id = self.poster.next_event_id()
        status, _ = await self.poster.event(event, event_id=event_id)
        assert status == 200
        return event, event_id

    async def redeliver(self, delivery: Any) -> None:
        event, event_id = delivery
        status, _ = await self.poster.event(event, event_id=event_id, retry_num=1)
        assert status == 200

    def replies(self, who: str) -> list[str]:
        return [m.rendered() for m in self.slack.thread(dm_channel(who), None) if not m.is_approval]

    async def approval(self, who: str) -> Message:
        [prompt] = await eventually(
            lambda: [p for p in self.slack.approvals(dm_channel(who), None) if p.buttons()], what="approval buttons"
        )
        self._buttons = {b["action_id"]: b for b in prompt.buttons()}
        return prompt

    async def press(self, prompt: Message, who: str, decision: Decision) -> str | None:
        user = PEOPLE[who]
        before = len([e for e in self.slack.ephemerals if e["user"] == user])
        pending = bool(prompt.buttons())
        if pending:
            payload = button_payload(prompt, ACTIONS[decision], user)
        else:  # decided: a stale client still shows the buttons
            payload = button_payload(_with_buttons(prompt, self._buttons), ACTIONS[decision], user)
        status, _ = await self.poster.interaction(payload)
        assert status == 200
        if pending and user in (PEOPLE["alice"], PEOPLE["boss"]):
            await eventually(lambda: not prompt.buttons(), what="the decision")
            return None  # the requester or an admin: the prompt shows the decision, nobody is told privately
        told = await eventually(
            lambda: [e for e in self.slack.ephemerals if e["user"] == user][before:], what="the private notice"
        )
        return str(told[0]["text"])

    def prompt_text(self, prompt: Message) -> str:
        return prompt.rendered()

    def rate_limit_final(self, retry_after: float) -> Callable[[], list[float]]:
        self.slack.fail_next("chat.update", retry_after=retry_after)
        return calls_since(self.slack, "chat.update")

    def downloads(self) -> int:
        return len(self.slack.downloads)

    async def start_with_bad_token(self) -> None:
        agent = await Agent(self.make_sections()).start()
        try:
            settings = slack_config(self.slack, bot_token="xoxb-wrong")
            await SlackBot("team", agent, settings).adapter.start()
        finally:
            await agent.close()

    def token_key(self) -> str:
        return "bots.team.bot_token"

    def command(self, name: str, args: str = "") -> str:
        return f"!{name} {args}".strip()  # Slack's composer takes a leading "/" for a slash command


class _StaleButtons:
    """A prompt as a client that has not refreshed yet still shows it: with its buttons."""

    def __init__(self, prompt: Message, buttons: dict[str, dict[str, Any]]) -> None:
        self._prompt = prompt
        self._buttons = list(buttons.values())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._prompt, name)

    def buttons(self) -> list[dict[str, Any]]:
        return self._buttons


def _with_buttons(prompt: Message, buttons: dict[str, dict[str, Any]]) -> Any:
    return _StaleButtons(prompt, buttons)


class TestSlackBot(ChatBotContract):
    @pytest.fixture
    async def harness(
        self, slack: FakeSlack, fake_api: FakeAnthropicAPI, make_sections: Callable[..., Sections]
    ) -> AsyncIterator[SlackHarness]:
        harness = SlackHarness(slack, fake_api, make_sections)
        yield harness
        await harness.stop()
