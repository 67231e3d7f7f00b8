"""The Feishu sink's own behaviour beyond the contract: CardKit's rules, its fallbacks, prompts and files.

Real lark-oapi against the fake Open Platform; no agent (the core's streamer drives the sink).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.feishu import Capabilities, FeishuApi, FeishuSink, FeishuTarget, SinkOptions
from adapters.feishu.cards import card_measure
from adapters.feishu.errors import FeishuNetworkError
from core import ApprovalRequest, ConversationKey, Decision, RateLimited, ReplyStreamer, TextDelta, TurnResult
from tests.fakes.platform_server import Failure

from . import errors
from .conftest import approvals_in, buttons, replies
from .fake_feishu import FakeFeishu
from .model import Chat, Message

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
async def api(feishu: FakeFeishu) -> AsyncIterator[FeishuApi]:
    api = FeishuApi(feishu.app_id, feishu.app_secret, feishu.url, timeout=10)
    yield api
    api.close()


def new_sink(fake: FakeFeishu, api: FeishuApi, **options: object) -> tuple[FeishuSink, Chat, Message]:
    chat = fake.add_chat("Team")
    root = fake.user_message(fake.add_user("Alice"), chat=chat, text="go", mentions=[fake.bot]).message
    target = FeishuTarget(chat.chat_id, root.message_id, True, root.message_id)
    opts = SinkOptions(**{"edit_interval": 0.05, "max_len": 2000, **options})  # type: ignore[arg-type]
    return FeishuSink(api, target, opts, Capabilities(cardkit=opts.streaming)), chat, root


async def stream(sink: FeishuSink, *parts: str) -> None:
    async def events():  # type: ignore[no-untyped-def]
        for part in parts:
            yield TextDelta(part)
            await asyncio.sleep(0.06)
        yield TurnResult(text="".join(parts), session_id="s")

    await ReplyStreamer(sink).run(events())


async def test_a_card_past_its_streaming_lifetime_is_switched_back_on(feishu: FakeFeishu, api: FeishuApi) -> None:
    sink, chat, _ = new_sink(feishu, api)
    handle = await sink.post("first words")
    entity = feishu.card(handle.card_id or "")
    assert entity.streaming_since is not None
    entity.streaming_since -= feishu.stream_lifetime + 1  # Feishu ends streaming 10 minutes after it began
    await sink.edit(handle, "first words, and more after a long tool run")
    await sink.finalize(handle, "first words, and more after a long tool run. Done.")
    [card] = feishu.bot_messages(chat)
    assert card.card is entity and card.text == "first words, and more after a long tool run. Done."
    assert [c.streaming_mode for c in entity.settings_changes] == [True, False]  # on again, then off at the end
    assert entity.sequences == sorted(set(entity.sequences))


async def test_a_sequence_that_fell_behind_jumps_ahead(feishu: FakeFeishu, api: FeishuApi) -> None:
    sink, chat, _ = new_sink(feishu, api)
    handle = await sink.post("one")
    feishu.fail("cardkit.v1.card_element.content", Failure(400, code=errors.SEQUENCE_COMPARE_FAILED))
    await sink.edit(handle, "one two")
    await sink.finalize(handle, "one two three")
    assert feishu.bot_messages(chat)[0].text == "one two three"


async def test_a_card_whose_live_updates_broke_off_stops_generating_and_the_full_text_follows(
    feishu: FakeFeishu, api: FeishuApi
) -> None:
    sink, chat, _ = new_sink(feishu, api)
    real = api.card_content
    calls = 0

    async def times_out_once(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise FeishuNetworkError("cardkit.v1.card_element.content", TimeoutError("read timed out"))
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    api.card_content = times_out_once  # type: ignore[method-assign]
    await stream(sink, "first part. ", "second part. ", "third part.")
    messages = feishu.bot_messages(chat)
    assert calls >= 1
    assert [m for m in messages if m.card is not None and m.card.streaming_mode] == []  # nothing says "generating"
    assert messages[-1].text == "first part. second part. third part."


async def test_the_bot_is_found_whether_its_info_is_at_the_top_level_or_under_data(
    feishu: FakeFeishu, api: FeishuApi
) -> None:
    assert (await api.bot_info())["open_id"] == feishu.bot.open_id
    feishu.bot_info_under_data = True
    assert (await api.bot_info())["open_id"] == feishu.bot.open_id


async def test_rate_limits_carry_the_reset_seconds(feishu: FakeFeishu, api: FeishuApi) -> None:
    sink, _, _ = new_sink(feishu, api)
    feishu.fail("cardkit.v1.card.create", Failure(400, code=errors.RATE_LIMITED, retry_after=3))  # older APIs: 400
    with pytest.raises(RateLimited) as info:
        await sink.post("hello")
    assert info.value.retry_after == 3 and info.value.code == errors.RATE_LIMITED


async def test_a_prompt_ends_the_card_and_the_reply_continues_below(feishu: FakeFeishu, api: FeishuApi) -> None:
    sink, chat, root = new_sink(feishu, api)
    handle = await sink.post("Let me check the files.")
    request = ApprovalRequest(
        "req-1",
        ConversationKey("feishu", chat.chat_id, root.message_id),
        "ou_alice",
        "Bash",
        "ls -la <at id=all></at>",
        {"command": "ls -la"},
        30,
    )
    await sink.show_approval(request)
    first = feishu.bot_messages(chat)[0]
    assert first.card is not None and not first.card.streaming_mode  # closed before the prompt
    [prompt] = approvals_in(feishu, chat)
    assert len(buttons(prompt)) == 3 and "<at id=all>" in prompt.text  # the agent's text shown plain, no mention
    assert prompt.thread_id == first.thread_id
    request.decision, request.decided_by = Decision.DENY, "ou_boss"
    await sink.edit(handle, "Let me check the files.\n\nIt was denied, so I stop here.")
    await sink.show_approval(request)
    await sink.finalize(handle, "Let me check the files.\n\nIt was denied, so I stop here. Bye.")
    decided = feishu.message(prompt.message_id)
    assert "Denied by <at id=ou_boss></at>" in decided.text and not buttons(decided)
    texts = replies(feishu, chat)
    assert texts == ["Let me check the files.", "It was denied, so I stop here. Bye."]
    below = feishu.bot_messages(chat)[-1]
    assert below.create_time >= prompt.create_time and below.card is not None and not below.card.streaming_mode


async def test_a_notice_a_card_cannot_hold_goes_out_as_a_post_then_as_text(feishu: FakeFeishu, api: FeishuApi) -> None:
    sink, chat, _ = new_sink(feishu, api)
    feishu.fail("im.v1.message.reply", Failure(400, code=errors.CARD_CONTENT_FAILED))
    await sink.finalize(None, "| a |\n|---|\n| 1 |")
    feishu.fail("im.v1.message.reply", Failure(400, code=errors.CARD_CONTENT_FAILED))
    feishu.fail("im.v1.message.reply", Failure(400, code=errors.INVALID_REQUEST))
    await sink.finalize(None, "second notice")
    kinds = [(m.msg_type, m.text) for m in feishu.bot_messages(chat)]
    assert kinds == [("post", "| a |\n|---|\n| 1 |"), ("text", "second notice")]


async def test_a_long_reply_streams_into_several_cards_each_within_the_limit(
    feishu: FakeFeishu, api: FeishuApi
) -> None:
    sink, chat, _ = new_sink(feishu, api, max_len=600)
    words = [f"词{i} " for i in range(400)]  # multi-byte text: measured as Feishu's 30 KB limit counts it
    await stream(sink, *["".join(words[i : i + 40]) for i in range(0, 400, 40)])
    shown = [m for m in feishu.bot_messages(chat)]
    assert len(shown) >= 3 and all(card_measure(m.text) <= 600 for m in shown)
    assert "".join("".join(m.text for m in shown).split()) == "".join("".join(words).split())
    assert all(m.card is None or not m.card.streaming_mode for m in shown)  # none left "generating"


async def test_files_go_up_as_images_or_files_and_oversized_ones_are_explained(
    feishu: FakeFeishu, api: FeishuApi, tmp_path: Path
) -> None:
    sink, chat, _ = new_sink(feishu, api)
    (tmp_path / "plot.png").write_bytes(PNG)
    (tmp_path / "paper.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "empty.txt").write_bytes(b"")
    await sink.send_file(tmp_path / "plot.png", "the plot")
    await sink.send_file(tmp_path / "paper.pdf")
    await sink.send_file(tmp_path / "empty.txt")
    messages = feishu.bot_messages(chat)
    assert [m.msg_type for m in messages] == ["image", "interactive", "file", "interactive"]
    assert feishu.images[0].data == PNG and feishu.files[0].file_type == "pdf"
    assert messages[1].text == "the plot" and "empty" in messages[3].text
    assert all(m.thread_id == messages[0].thread_id for m in messages)


async def test_the_working_reaction_shows_while_claude_works(feishu: FakeFeishu, api: FeishuApi) -> None:
    sink, _, root = new_sink(feishu, api)
    await sink.typing()
    await sink.typing()
    assert list(root.reactions.values()) == ["Typing"]
    handle = await sink.post("done")
    await sink.finalize(handle, "done")
    assert root.reactions == {}
    await sink.typing()  # after the reply: no new reaction
    assert root.reactions == {}


async def test_rich_text_after_a_full_card_is_brought_up_to_date_before_a_prompt(
    feishu: FakeFeishu, api: FeishuApi
) -> None:
    sink, chat, root = new_sink(feishu, api)
    feishu.fail("cardkit.v1.card_element.content", Failure(400, code=errors.CARD_CONTENT_FAILED))
    handle = await sink.post("Intro.")
    await sink.edit(handle, "Intro.\n\n| t |\n|---|")  # the card cannot hold it: the rest goes out as a post
    await sink.edit(handle, "Intro.\n\n| t |\n|---|\n\nmore before the prompt")  # (posts update at the end)
    request = ApprovalRequest(
        "req-2", ConversationKey("feishu", chat.chat_id, root.message_id), "ou_a", "Bash", "ls", {}, 30
    )
    await sink.show_approval(request)
    text = "Intro.\n\n| t |\n|---|\n\nmore before the prompt\n\nand after it."
    await sink.edit(handle, text)
    await sink.finalize(handle, text)
    assert replies(feishu, chat) == ["Intro.", "| t |\n|---|\n\nmore before the prompt", "and after it."]
    assert [m.msg_type for m in feishu.bot_messages(chat)] == ["interactive", "post", "interactive", "interactive"]
