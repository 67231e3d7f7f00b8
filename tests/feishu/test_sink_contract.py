"""The reply-sink contract against the Feishu sink: CardKit streaming cards, and cards updated by patch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from adapters.feishu import Capabilities, FeishuApi, FeishuSink, FeishuTarget, SinkOptions
from tests.contracts.sink_contract import SinkContract
from tests.fakes.platform_server import Failure

from .conftest import approvals_in, is_approval
from .errors import MESSAGE_RECALLED, RATE_LIMITED
from .fake_feishu import FakeFeishu
from .model import Chat, Message

# The Open Platform calls behind each sink operation.
_METHODS = {
    True: {
        "post": "cardkit.v1.card.create",
        "edit": "cardkit.v1.card_element.content",
        "finalize": "cardkit.v1.card.settings",
    },
    False: {"post": "im.v1.message.reply", "edit": "im.v1.message.patch", "finalize": "im.v1.message.patch"},
}
_CHANGES = ("im.v1.message.", "cardkit.", "im.v1.image.", "im.v1.file.")


@dataclass
class FeishuSinkHarness:
    fake: FakeFeishu
    streaming: bool
    api: FeishuApi
    chat: Chat | None = None
    root: Message | None = None
    sinks: list[FeishuSink] = field(default_factory=list)

    async def new_sink(self) -> FeishuSink:
        self.chat = self.fake.add_chat("Contract")
        alice = self.fake.add_user("Alice")
        self.root = self.fake.user_message(
            alice, chat=self.chat, text="please answer", mentions=[self.fake.bot]
        ).message
        target = FeishuTarget(self.chat.chat_id, self.root.message_id, True, self.root.message_id)
        options = SinkOptions(streaming=self.streaming, edit_interval=0.05, max_len=2000)
        sink = FeishuSink(self.api, target, options, Capabilities(cardkit=self.streaming))
        self.sinks.append(sink)
        return sink

    async def messages(self) -> list[str]:
        assert self.chat is not None
        return [m.text for m in self.fake.bot_messages(self.chat) if not is_approval(m)]

    async def rate_limit_next(self, op: str, retry_after: float) -> None:
        self.fake.fail(_METHODS[self.streaming][op], Failure(429, code=RATE_LIMITED, retry_after=retry_after))

    async def gone_next(self, op: str) -> None:
        self.fake.fail(_METHODS[self.streaming][op], Failure(400, code=MESSAGE_RECALLED))

    async def api_calls(self) -> int:
        return len([c for c in self.fake.calls if c.method.startswith(_CHANGES)])

    async def approvals(self) -> list[str]:
        assert self.chat is not None
        return [m.text for m in approvals_in(self.fake, self.chat)]

    async def files(self) -> list[str]:
        return [u.file_name or u.key for u in self.fake.uploads.values()]


@pytest.fixture
async def api(feishu: FakeFeishu) -> AsyncIterator[FeishuApi]:
    api = FeishuApi(feishu.app_id, feishu.app_secret, feishu.url, timeout=10)
    yield api
    api.close()


class TestStreamingSink(SinkContract):
    @pytest.fixture
    def harness(self, feishu: FakeFeishu, api: FeishuApi) -> FeishuSinkHarness:
        return FeishuSinkHarness(feishu, True, api)


class TestPatchingSink(SinkContract):
    @pytest.fixture
    def harness(self, feishu: FakeFeishu, api: FeishuApi) -> FeishuSinkHarness:
        return FeishuSinkHarness(feishu, False, api)
