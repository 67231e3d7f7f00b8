"""The reply-sink contract against the Slack sink: streaming, edits, and edits in mrkdwn."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import Capabilities, SinkOptions, SlackSink, SlackTarget
from adapters.slack.sink import TextFormat
from tests.contracts.sink_contract import SinkContract

from .fake_slack import BOT_TOKEN, TEAM, FakeSlack

CHANNEL = "C0CONTRACT"
# The Web API methods behind each sink operation (a streamed message whose text is
# replaced rather than extended is finished with chat.update, hence two for "edit").
_METHODS = {
    True: {"post": ["chat.startStream"], "edit": ["chat.appendStream", "chat.update"], "finalize": ["chat.stopStream"]},
    False: {"post": ["chat.postMessage"], "edit": ["chat.update"], "finalize": ["chat.update"]},
}


@dataclass
class SlackHarness:
    fake: FakeSlack
    streaming: bool
    text_format: TextFormat = "markdown"
    root: str = ""
    clients: list[AsyncWebClient] = field(default_factory=list)

    async def new_sink(self) -> SlackSink:
        self.root = self.fake.user_message(CHANNEL, "U1", "please answer").ts
        client = AsyncWebClient(token=BOT_TOKEN, base_url=self.fake.api_url)
        options = SinkOptions(streaming=self.streaming, text_format=self.text_format, edit_interval=0.05, max_len=2000)
        target = SlackTarget(CHANNEL, self.root, "U1", TEAM, self.root)
        return SlackSink(client, target, options, Capabilities(streaming=self.streaming))

    async def messages(self) -> list[str]:
        return self.fake.replies(CHANNEL, self.root)

    async def rate_limit_next(self, op: str, retry_after: float) -> None:
        for method in _METHODS[self.streaming][op]:
            self.fake.fail_next(method, retry_after=retry_after)

    async def api_calls(self) -> int:
        return len([c for c in self.fake.calls if c.method.startswith(("chat.", "files."))])

    async def gone_next(self, op: str) -> None:
        for method in _METHODS[self.streaming][op]:
            self.fake.fail_next(method, "message_not_found")

    async def approvals(self) -> list[str]:
        return [m.rendered() for m in self.fake.approvals(CHANNEL, self.root)]

    async def files(self) -> list[str]:
        return [f["filename"] for f in self.fake.files_in(CHANNEL, self.root)]


class TestStreamingSink(SinkContract):
    @pytest.fixture
    def harness(self, slack: FakeSlack) -> SlackHarness:
        return SlackHarness(slack, streaming=True)


class TestEditingSink(SinkContract):
    @pytest.fixture
    def harness(self, slack: FakeSlack) -> SlackHarness:
        return SlackHarness(slack, streaming=False)


class TestEditingSinkMrkdwn(SinkContract):
    @pytest.fixture
    def harness(self, slack: FakeSlack) -> SlackHarness:
        return SlackHarness(slack, streaming=False, text_format="mrkdwn")
