"""Markdown -> text + entities, lengths as Telegram counts them, and long replies split end to end."""

from __future__ import annotations

from adapters.telegram import render, telegram_length
from adapters.telegram.formatting import render_caption
from adapters.telegram.updates import strip_mention
from tests.fakes.anthropic_api import FakeAnthropicAPI, Text

from .conftest import BotFactory
from .fake_bot_api import FakeBotAPI, utf16_len
from .people import ADA, ADA_DM

SAMPLE = (
    "# Plan 📋\n\nFirst **bold _nested_ text**, then `inline code` and a [link](https://example.com).\n\n"
    "- item one\n- item ~~two~~\n\n> a quote\n\n```python\ndef f(x):\n    return x * 2  # 😀\n```\n\n"
    "| a | b |\n|---|---|\n| 1 | 2 |\n\nDone."
)


def test_every_prefix_of_a_streamed_reply_renders_to_valid_entities() -> None:
    for end in range(1, len(SAMPLE) + 1):
        shown = render(SAMPLE[:end])
        assert shown.text.strip(), f"prefix {end} rendered empty"
        size = utf16_len(shown.text)
        for e in shown.entities:
            assert e.offset >= 0 and e.length > 0 and e.offset + e.length <= size, (end, e)


def test_length_is_counted_in_utf16_units_of_the_rendered_text() -> None:
    assert telegram_length("**bold**") == 4  # markup is not counted
    assert telegram_length("😀") == 2  # outside the BMP: a surrogate pair
    assert telegram_length("`x`") == 1


def test_an_empty_rendering_falls_back_to_the_source() -> None:
    assert render("```\n```").text.strip()


def test_captions_fit_telegrams_caption_limit() -> None:
    caption = render_caption("**" + "long words " * 200 + "**")
    assert utf16_len(caption.text) <= 1024 and caption.text.endswith("…")


def test_mentions_are_stripped() -> None:
    assert strip_mention("@CC_test_bot  what now?", "cc_test_bot") == "what now?"
    assert strip_mention("/status@cc_test_bot", "cc_test_bot") == "/status"
    assert strip_mention("ask @cc_test_botanist", "cc_test_bot") == "ask @cc_test_botanist"


async def test_a_long_reply_splits_at_4096_with_code_fences_intact(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    lines = [f"print('line {i:04d}')  # 😀 emoji count twice in UTF-16" for i in range(230)]
    reply = "Here is the program:\n\n```python\n" + "\n".join(lines) + "\n```\n\nThat's all, folks."
    fake_api.enqueue(Text(reply, chunks=6, delay=0.1))
    bot = await make_bot()
    bot_api.say(ADA_DM, ADA, "write a long program")
    await bot_api.wait_for(lambda: [t for t in bot_api.texts(42) if "That's all, folks." in t], what="the last part")
    messages = bot_api.bot_messages(42)
    assert len(messages) >= 3
    seen: list[str] = []
    for m in messages:
        assert utf16_len(m.text) <= 4096
        code_lines = [line for line in m.text.split("\n") if line.startswith("print(")]
        if not code_lines:
            continue
        [pre] = [e for e in m.entities if e["type"] == "pre"]
        assert pre.get("language") == "python"  # the fence was reopened with its language
        start, end = pre["offset"], pre["offset"] + pre["length"]
        for line in code_lines:
            at = utf16_len(m.text[: m.text.index(line)])
            assert start <= at and at + utf16_len(line) <= end, "a code line outside the code block"
        seen += code_lines
    assert seen == lines  # every line once, in order
    assert bot.adapter.drafts.enabled  # no draft was ever too long for Telegram
