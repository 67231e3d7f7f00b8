"""The chat-bot contract on Feishu: real lark-oapi against the fake Open Platform, in BOTH receiving modes.

``long_connection``: events pushed over lark.ws.Client's WebSocket (protobuf frames), button
presses answered in the ack. ``callback``: signed, AES-encrypted HTTP callbacks, button presses
answered in the response body. People write to the bot in their p2p chats.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bots.feishu import FeishuBot
from core import Agent, ConversationKey, Decision, Sections
from core.config import deep_merge
from tests.contracts.chat_bot_contract import ChatBotContract, ChatHarness, calls_since
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.fakes.platform_server import Failure
from tests.helpers import eventually

from .conftest import MODES, buttons, feishu_settings, is_approval
from .errors import RATE_LIMITED
from .fake_feishu import FakeFeishu, Inbound
from .model import Message, hex_id

NAMES = ("alice", "bob", "boss", "eve")


class FeishuHarness(ChatHarness):
    platform = "feishu"

    def __init__(
        self, fake: FakeFeishu, fake_api: FakeAnthropicAPI, make_sections: Callable[..., Sections], mode: str
    ) -> None:
        self.fake = fake
        self.fake_api = fake_api
        self.make_sections = make_sections
        self.mode = mode
        self.people = {name: fake.add_user(name.title()) for name in NAMES}
        self.bot: FeishuBot | None = None
        self.url = ""
        self._values: dict[str, dict[str, dict[str, Any]]] = {}  # card message id -> decision -> button value

    async def start(self, **sections: Any) -> Agent:
        ids = {name: f"feishu:{user.open_id}" for name, user in self.people.items()}
        access = {"allow_all": False, "allowlist": [ids["alice"], ids["bob"]], "admins": [ids["boss"]]}
        agent = await Agent(self.make_sections(**deep_merge({"access": access}, sections))).start()
        self.bot = FeishuBot("feishu", agent, feishu_settings(self.fake, self.mode))
        try:
            await self.bot.adapter.start()
        except BaseException:
            await agent.close()
            self.bot = None
            raise
        if self.mode == "callback":
            self.url = f"http://127.0.0.1:{self.bot.adapter.port}/feishu/events"
        return agent

    async def stop(self) -> None:
        if self.bot is not None:
            bot, self.bot = self.bot, None
            await bot.adapter.stop(drain_timeout=10)
            await bot.agent.close()

    def key(self, who: str) -> ConversationKey:
        return ConversationKey("feishu", self.people[who].open_id)

    async def _deliver(self, body: dict[str, Any]) -> Any:
        if self.mode == "long_connection":
            return await self.fake.wait_for_ack(await self.fake.push(body))
        result = await self.fake.post_callback(self.url, body, encrypt_key=self.fake.encrypt_key)
        assert result.status == 200, result.body
        return result

    async def say(self, who: str, text: str, *, files: dict[str, bytes] | None = None) -> Inbound:
        person = self.people[who]
        if not files:
            inbound = self.fake.user_message(person, text=text)
        else:  # text and files in one message: a rich-text post with the files as images in it
            keys = {hex_id("img_v3_", 24): data for data in files.values()}
            paragraphs = [[{"tag": "text", "text": text}]] + [[{"tag": "img", "image_key": key}] for key in keys]
            inbound = self.fake.user_message(person, post=paragraphs)
            for key, data in keys.items():
                self.fake.host_resource(inbound.message.message_id, key, data, kind="image")
        await self._deliver(inbound.event)
        return inbound

    async def redeliver(self, delivery: Inbound) -> None:
        await self._deliver(delivery.event)  # the same body: the same header.event_id

    def replies(self, who: str) -> list[str]:
        chat = self.fake.p2p_chat(self.people[who])
        return [m.text for m in self.fake.bot_messages(chat) if not is_approval(m)]

    async def approval(self, who: str) -> Message:
        chat = self.fake.p2p_chat(self.people[who])
        [prompt] = await eventually(
            lambda: [m for m in self.fake.bot_messages(chat) if is_approval(m) and buttons(m)], what="approval buttons"
        )
        self._values[prompt.message_id] = {
            b["behaviors"][0]["value"]["decision"]: b["behaviors"][0]["value"] for b in buttons(prompt)
        }
        return prompt

    async def press(self, prompt: Message, who: str, decision: Decision) -> str | None:
        value = self._values[prompt.message_id][decision.value]  # a stale client still shows the buttons
        body = self.fake.card_action(self.people[who], prompt, value)
        if self.mode == "long_connection":
            answer = (await self._deliver(body)).response
        else:
            answer = (await self._deliver(body)).json()
        toast = (answer or {}).get("toast") or {}
        if toast.get("type") in ("error", "warning"):
            return str(toast.get("content"))  # only the presser sees a toast
        return None

    def prompt_text(self, prompt: Message) -> str:
        return self.fake.message(prompt.message_id).text

    def rate_limit_final(self, retry_after: float) -> Callable[[], list[float]]:
        # the final step of a streamed reply: streaming turned off on its card
        self.fake.fail("cardkit.v1.card.settings", Failure(429, code=RATE_LIMITED, retry_after=retry_after))
        return calls_since(self.fake, "cardkit.v1.card.settings")

    def downloads(self) -> int:
        return len(self.fake.called("im.v1.message_resource.get"))

    async def start_with_bad_token(self) -> None:
        agent = await Agent(self.make_sections()).start()
        try:
            settings = feishu_settings(self.fake, self.mode, app_secret="not-the-secret")
            await FeishuBot("team", agent, settings).adapter.start()
        finally:
            await agent.close()

    def token_key(self) -> str:
        return "bots.team.app_secret"


class TestFeishuBot(ChatBotContract):
    @pytest.fixture(params=MODES)
    async def harness(
        self,
        request: pytest.FixtureRequest,
        feishu: FakeFeishu,
        fake_api: FakeAnthropicAPI,
        make_sections: Callable[..., Sections],
    ) -> AsyncIterator[FeishuHarness]:
        harness = FeishuHarness(feishu, fake_api, make_sections, request.param)
        yield harness
        await harness.stop()
