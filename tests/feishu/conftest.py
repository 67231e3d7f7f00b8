"""Fixtures for the Feishu bot tests: the fake Open Platform and a running bot (real lark-oapi), in both modes.

``make_bot(mode=...)`` starts a :class:`~bots.feishu.FeishuBot` against the fake, over
the long connection (``lark.ws.Client`` in its own thread) or HTTP callbacks (signed and
AES-encrypted, as Feishu sends them when an encrypt key is set). :class:`Running` speaks
for the people in the chat the same way in both modes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from bots.feishu import FeishuBot, FeishuSettings
from core import Agent, ConversationKey, Sections
from core.config import deep_merge
from tests.helpers import eventually

from .callbacks import CallbackResult
from .fake_feishu import FakeFeishu, Inbound
from .model import Chat, Message, Upload, User, walk_elements

MODES = ("long_connection", "callback")


@pytest.fixture
async def feishu() -> AsyncIterator[FakeFeishu]:
    async with FakeFeishu() as fake:
        yield fake


def feishu_settings(fake: FakeFeishu, mode: str = "long_connection", **overrides: Any) -> FeishuSettings:
    base: dict[str, Any] = {
        "app_id": fake.app_id,
        "app_secret": fake.app_secret,
        "domain": fake.url,
        "mode": mode,
        "host": "127.0.0.1",
        "port": 0,
        "card_update_interval": 0.15,
        "api_timeout": 10,
        "connect_timeout": 10,
    }
    if mode == "callback":
        base["encrypt_key"] = fake.encrypt_key
        base["verification_token"] = fake.verification_token
    base.update(overrides)
    return FeishuSettings.model_validate(base)


# -- what the chat shows ---------------------------------------------------------------------
def is_approval(message: Message) -> bool:
    if message.msg_type != "interactive":
        return False
    return any(e.get("element_id") == "ccb_request" for e in walk_elements(message.body.get("body", {})))


def buttons(message: Message) -> list[dict[str, Any]]:
    return [e for e in walk_elements(message.body.get("body", {})) if e.get("tag") == "button"]


def button_value(message: Message, decision: str) -> dict[str, Any]:
    for button in buttons(message):
        for behavior in button.get("behaviors") or []:
            value = behavior.get("value") or {}
            if value.get("decision") == decision:
                return dict(value)
    raise AssertionError(f"no {decision} button on the card")


def replies(fake: FakeFeishu, chat: Chat | str, *, thread: str | None = None) -> list[str]:
    """The texts the bot shows in a chat (or one thread of it), oldest first, approval cards left out."""
    messages = fake.bot_messages(chat)
    if thread is not None:
        messages = [m for m in messages if m.thread_id == thread]
    return [m.text for m in messages if not is_approval(m) and not m.deleted]


def approvals_in(fake: FakeFeishu, chat: Chat | str) -> list[Message]:
    return [m for m in fake.bot_messages(chat) if is_approval(m)]


@dataclass
class Running:
    """A Feishu bot serving the fake (either mode), its agent, and the people in its chats."""

    bot: FeishuBot
    agent: Agent
    fake: FakeFeishu
    mode: str
    people: dict[str, User] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.bot.adapter.port}{self.bot.settings.path}"

    async def deliver(self, event: dict[str, Any]) -> Any:
        """Feishu delivers ``event``: pushed over the long connection, or POSTed to the callback URL."""
        if self.mode == "long_connection":
            return await self.fake.push(event)
        result = await self.fake.post_callback(self.url, event, encrypt_key=self.fake.encrypt_key)
        assert result.status == 200, result.body
        return result

    async def send(self, sender: User, **message: Any) -> Inbound:
        """``sender`` writes a message (see :meth:`FakeFeishu.user_message`), delivered to the bot."""
        inbound = self.fake.user_message(sender, **message)
        await self.deliver(inbound.event)
        return inbound

    async def press(self, who: User, card: Message, value: dict[str, Any]) -> dict[str, Any] | None:
        """``who`` presses a button; returns the callback's answer (the toast)."""
        body = self.fake.card_action(who, card, value)
        if self.mode == "long_connection":
            delivery = await self.fake.wait_for_ack(await self.fake.push(body))
            return delivery.response
        result: CallbackResult = await self.fake.post_callback(self.url, body, encrypt_key=self.fake.encrypt_key)
        assert result.status == 200, result.body
        return result.json()

    def key(self, who: User) -> ConversationKey:
        return ConversationKey("feishu", who.open_id)


async def reply_containing(fake: FakeFeishu, chat: Chat | str, needle: str, *, thread: str | None = None) -> str:
    found = await eventually(
        lambda: [r for r in replies(fake, chat, thread=thread) if needle in r], what=f"a reply with {needle!r}"
    )
    return found[-1]


def upload_named(fake: FakeFeishu, name: str) -> Upload | None:
    return next((u for u in fake.uploads.values() if u.file_name == name), None)


def content(message: Message) -> dict[str, Any]:
    return json.loads(message.content)


BotFactory = Callable[..., Awaitable[Running]]


@pytest.fixture
async def make_bot(feishu: FakeFeishu, make_sections: Callable[..., Sections]) -> AsyncIterator[BotFactory]:
    """Start a bot; alice and bob are on the allowlist, boss is an admin, eve is nobody."""
    started: list[Running] = []
    people = {name: feishu.add_user(name.title()) for name in ("alice", "bob", "boss", "eve")}

    async def make(
        mode: str = "long_connection", *, sections: dict[str, Any] | None = None, **settings: Any
    ) -> Running:
        access = {
            "allow_all": False,
            "allowlist": [f"feishu:{people['alice'].open_id}", f"feishu:{people['bob'].open_id}"],
            "admins": [f"feishu:{people['boss'].open_id}"],
        }
        agent = await Agent(make_sections(**deep_merge({"access": access}, sections or {}))).start()
        bot = FeishuBot("feishu", agent, feishu_settings(feishu, mode, **settings))
        running = Running(bot, agent, feishu, mode, people)
        started.append(running)
        try:
            await bot.adapter.start()
        except BaseException:
            await agent.close()
            started.remove(running)
            raise
        return running

    yield make
    for running in started:
        await running.bot.adapter.stop(drain_timeout=10)
        await running.agent.close()
