"""The reply-sink contract, and Telegram-specific sink behaviour, against the fake Bot API.

The harness runs twice: a group chat (post + edit) and a private chat (drafts,
then one final message).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from telegram import Bot

from adapters.telegram import ChatPacer, ChatTarget, DraftSupport, TelegramSink, telegram_limits
from adapters.telegram.sink import Handle
from core import MessageGone, RateLimited, SinkError
from tests.contracts.sink_contract import SinkContract

from .fake_bot_api import FakeBotAPI

GROUP = -100500
PRIVATE = 4242

# op -> Bot API method, per kind of chat
_METHODS = {
    "group": {"post": "sendMessage", "edit": "editMessageText", "finalize": "editMessageText"},
    "private": {"post": "sendMessageDraft", "edit": "sendMessageDraft", "finalize": "sendMessage"},
}


@dataclass
class TelegramHarness:
    api: FakeBotAPI
    bot: Bot
    kind: str
    chat_id: int
    sinks: list[TelegramSink] = field(default_factory=list)

    async def new_sink(self) -> TelegramSink:
        target = ChatTarget(self.chat_id, private=self.kind == "private")
        sink = TelegramSink(
            self.bot,
            target,
            limits=telegram_limits(edit_interval=0.01, typing_interval=0.5),
            pacer=ChatPacer(0),
            drafts=DraftSupport(True),
        )
        self.sinks.append(sink)
        return sink

    async def messages(self) -> list[str]:
        return [
            m.text for m in self.api.bot_messages(self.chat_id) if m.document is None and not _is_approval(m.history)
        ]

    async def rate_limit_next(self, op: str, retry_after: float) -> None:
        self.api.fail(_METHODS[self.kind][op], 429, retry_after=max(1, round(retry_after)))

    async def api_calls(self) -> int:
        changing = {"sendMessage", "editMessageText", "sendMessageDraft", "sendDocument"}
        return len([c for c in self.api.calls if c.method in changing])

    @property
    def drafts(self) -> bool:
        return self.kind == "private"

    async def gone_next(self, op: str) -> None:
        self.api.fail(_METHODS[self.kind][op], 400, "Bad Request: message to edit not found")

    async def approvals(self) -> list[str]:
        return [m.text for m in self.api.bot_messages(self.chat_id) if _is_approval(m.history)]

    async def files(self) -> list[str]:
        return [d.filename for d in self.api.documents if d.chat_id == self.chat_id]


def _is_approval(history: list[str]) -> bool:
    return bool(history) and history[0].startswith("🔐")


@pytest.fixture
async def ptb_bot(bot_api: FakeBotAPI) -> AsyncIterator[Bot]:
    bot = Bot(bot_api.token, base_url=bot_api.base_url, base_file_url=bot_api.base_file_url)
    async with bot:
        yield bot


class TestTelegramSinkContract(SinkContract):
    @pytest.fixture(params=["group", "private"])
    def harness(self, request: pytest.FixtureRequest, bot_api: FakeBotAPI, ptb_bot: Bot) -> TelegramHarness:
        chat_id = GROUP if request.param == "group" else PRIVATE
        return TelegramHarness(bot_api, ptb_bot, request.param, chat_id)


# -- Telegram specifics --------------------------------------------------------------


def group_sink(bot: Bot, **kw: object) -> TelegramSink:
    return TelegramSink(
        bot,
        ChatTarget(GROUP, reply_to=kw.pop("reply_to", None)),  # type: ignore[arg-type]
        limits=telegram_limits(edit_interval=0.01),
        pacer=ChatPacer(0),
    )


async def test_not_modified_from_telegram_is_a_noop(bot_api: FakeBotAPI, ptb_bot: Bot) -> None:
    sink = group_sink(ptb_bot)
    handle = await sink.post("same")
    # handles that don't know what is shown: Telegram answers "message is not modified"
    await sink.edit(Handle("message", handle.id), "same")
    await sink.finalize(Handle("message", handle.id), "same")
    edits = bot_api.calls_of("editMessageText")
    assert len(edits) == 2  # both reached Telegram, both answered "message is not modified", neither raised
    assert bot_api.texts(GROUP) == ["same"]


async def test_edit_of_a_deleted_message_is_MessageGone(bot_api: FakeBotAPI, ptb_bot: Bot) -> None:
    sink = group_sink(ptb_bot)
    with pytest.raises(MessageGone):
        await sink.edit(Handle("message", 987654), "new text")


async def test_other_errors_are_SinkError_with_the_code(bot_api: FakeBotAPI, ptb_bot: Bot) -> None:
    sink = group_sink(ptb_bot)
    bot_api.fail("sendMessage", 403, "Forbidden: bot was kicked from the supergroup chat")
    with pytest.raises(SinkError) as info:
        await sink.post("hello")
    assert info.value.code == 403 and "kicked" in str(info.value)


async def test_markdown_is_sent_as_text_plus_entities(bot_api: FakeBotAPI, ptb_bot: Bot) -> None:
    sink = group_sink(ptb_bot)
    handle = await sink.post("Use **bold** and `code` and [a link](https://example.com)")
    await sink.finalize(handle, "Use **bold** and `code` and [a link](https://example.com)\n\n```python\nhalf a fence")
    [message] = bot_api.bot_messages(GROUP)
    assert message.text.startswith("Use bold and code and a link")
    types = {e["type"] for e in message.entities}
    assert {"bold", "code", "text_link", "pre"} <= types
    for call in bot_api.calls_of("sendMessage") + bot_api.calls_of("editMessageText"):
        assert "parse_mode" not in call.params  # never a parse mode: nothing can fail to parse


async def test_group_replies_answer_the_users_message(bot_api: FakeBotAPI, ptb_bot: Bot) -> None:
    sink = group_sink(ptb_bot, reply_to=77)
    await sink.finalize(None, "the answer")
    [call] = bot_api.calls_of("sendMessage")
    assert call.params["reply_parameters"]["message_id"] == 77


async def test_drafts_fall_back_to_post_and_edit(bot_api: FakeBotAPI, ptb_bot: Bot) -> None:
    bot_api.unsupported.add("sendMessageDraft")
    drafts = DraftSupport(True)
    sink = TelegramSink(
        ptb_bot,
        ChatTarget(PRIVATE, private=True),
        limits=telegram_limits(edit_interval=0.01),
        pacer=ChatPacer(0),
        drafts=drafts,
    )
    handle = await sink.post("first words")
    await sink.edit(handle, "first words, more")
    await sink.finalize(handle, "first words, more, done")
    assert not drafts.enabled
    assert bot_api.texts(PRIVATE) == ["first words, more, done"]
    assert bot_api.calls_of("editMessageText")


async def test_send_file_uploads_a_document_with_caption(bot_api: FakeBotAPI, ptb_bot: Bot, tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"a,b\n1,2\n")
    await group_sink(ptb_bot).send_file(path, "the **numbers**")
    [doc] = bot_api.documents
    assert (doc.filename, doc.data, doc.caption) == ("data.csv", b"a,b\n1,2\n", "the numbers")


async def test_the_pacer_spaces_messages_per_chat() -> None:
    now = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = ChatPacer(1.0, clock=lambda: now[0], sleep=sleep)
    await pacer.wait(GROUP)  # first message: at once
    await pacer.wait(GROUP)  # second in the same chat: a second later
    await pacer.wait(PRIVATE)  # another chat: not held back
    now[0] += 5
    await pacer.wait(GROUP)  # after a pause: at once
    assert slept == [1.0]


async def test_typing_keeps_a_long_lived_draft_on_screen(
    bot_api: FakeBotAPI, ptb_bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    import adapters.telegram.sink as sink_module

    sink = TelegramSink(ptb_bot, ChatTarget(PRIVATE, private=True), limits=telegram_limits(), pacer=ChatPacer(0))
    await sink.post("thinking about it")
    await sink.typing()
    assert len(bot_api.drafts) == 1  # fresh: no refresh needed
    monkeypatch.setattr(sink_module, "DRAFT_REFRESH", 0.0)  # as if 20 s had passed (drafts last ~30 s)
    await sink.typing()
    assert [d.text for d in bot_api.drafts] == ["thinking about it"] * 2
    assert (PRIVATE, "typing") in bot_api.chat_actions


async def test_flood_control_or_a_server_error_on_a_draft_keeps_drafts_on(bot_api: FakeBotAPI, ptb_bot: Bot) -> None:
    drafts = DraftSupport(True)
    sink = TelegramSink(
        ptb_bot, ChatTarget(PRIVATE, private=True), limits=telegram_limits(), pacer=ChatPacer(0), drafts=drafts
    )
    bot_api.fail("sendMessageDraft", 429, retry_after=3)
    bot_api.fail("sendMessageDraft", 502, "Bad Gateway")
    with pytest.raises(RateLimited) as info:
        await sink.post("hello")
    assert info.value.retry_after == 3
    with pytest.raises(SinkError):
        await sink.post("hello")
    assert drafts.enabled
    await sink.post("hello")
    assert [d.text for d in bot_api.drafts] == ["hello"]


def private_sink(bot: Bot, chat_id: int, drafts: DraftSupport) -> TelegramSink:
    return TelegramSink(
        bot, ChatTarget(chat_id, private=True), limits=telegram_limits(), pacer=ChatPacer(0), drafts=drafts
    )


async def test_a_draft_refused_in_one_chat_falls_back_for_that_reply_only(bot_api: FakeBotAPI, ptb_bot: Bot) -> None:
    other = PRIVATE + 1
    drafts = DraftSupport(True)
    bot_api.fail(
        "sendMessageDraft", 400, "Bad Request: TEXTDRAFT_PEER_INVALID", when=lambda p: p.get("chat_id") == PRIVATE
    )
    refused = private_sink(ptb_bot, PRIVATE, drafts)
    handle = await refused.post("first words")
    await refused.edit(handle, "first words, more")
    await refused.finalize(handle, "first words, more, done")
    assert bot_api.texts(PRIVATE) == ["first words, more, done"]
    assert [c.params["chat_id"] for c in bot_api.calls_of("editMessageText")] == [PRIVATE] * 2  # posted, edited
    assert drafts.enabled  # one chat's refusal says nothing about the others
    for chat_id in (other, PRIVATE):  # another chat, and the next reply in the same chat, stream as drafts
        sink = private_sink(ptb_bot, chat_id, drafts)
        handle = await sink.post("hello")
        await sink.finalize(handle, "hello there")
        assert [d.text for d in bot_api.drafts if d.chat_id == chat_id] == ["hello"]
    assert bot_api.texts(other) == ["hello there"]


@pytest.mark.parametrize(
    ("code", "description"), [(404, "Not Found"), (400, "Bad Request: method not found")], ids=["404", "400"]
)
async def test_a_server_without_the_draft_method_turns_drafts_off_everywhere(
    bot_api: FakeBotAPI, ptb_bot: Bot, code: int, description: str
) -> None:
    drafts = DraftSupport(True)
    bot_api.fail("sendMessageDraft", code, description)
    first = private_sink(ptb_bot, PRIVATE, drafts)
    await first.finalize(await first.post("hi"), "hi all")
    assert not drafts.enabled
    second = private_sink(ptb_bot, PRIVATE + 1, drafts)
    await second.finalize(await second.post("hey"), "hey you")
    assert len(bot_api.calls_of("sendMessageDraft")) == 1  # never tried again
    assert (bot_api.texts(PRIVATE), bot_api.texts(PRIVATE + 1)) == (["hi all"], ["hey you"])


async def test_the_fake_flags_a_message_sent_inside_a_flood_wait(bot_api: FakeBotAPI, ptb_bot: Bot) -> None:
    """The early-call check other tests rely on (``early_calls == []``) does catch an early call."""
    bot_api.flood_control = True
    bot_api.fail("sendMessage", 429, retry_after=5)
    sink = group_sink(ptb_bot)
    for _ in range(2):  # the second call comes at once, not 5 s later
        with pytest.raises(RateLimited):
            await sink.post("too soon")
    assert [c.method for c in bot_api.early_calls] == ["sendMessage"]
    assert bot_api.texts(GROUP) == []
