from __future__ import annotations

import pytest

from core.text_split import cut, open_fence, split_markdown


def test_short_text_is_not_cut() -> None:
    assert cut("hello", 100) is None
    assert split_markdown("hello", 100) == ["hello"]


def test_prefers_paragraph_then_line_breaks() -> None:
    text = "a" * 60 + "\n\n" + "b" * 30 + "\n" + "c" * 30
    parts = split_markdown(text, 100)
    assert parts[0] == "a" * 60
    assert "".join(parts).replace("\n", "") == text.replace("\n", "")


def test_fence_is_closed_and_reopened_with_its_language() -> None:
    code = "\n".join(f"line {i}" for i in range(50))
    text = f"Look:\n```python\n{code}\n```\nEnd."
    parts = split_markdown(text, 80)
    assert len(parts) > 3
    for part in parts:
        assert len(part) <= 80
        assert open_fence(part) is None
    assert all(p.startswith("```python\n") for p in parts[1:-1])
    joined = "\n".join(parts)
    for i in range(50):
        assert f"line {i}" in joined


def test_tilde_fences_and_longer_backtick_fences() -> None:
    assert open_fence("~~~\ncode") == "~~~"
    assert open_fence("````md\n```\nstill inside") == "````md"
    assert open_fence("````md\n```\n````") is None


def test_no_break_available_cuts_hard() -> None:
    parts = split_markdown("x" * 250, 100)
    assert all(len(p) <= 100 for p in parts)
    assert "".join(parts) == "x" * 250


def test_custom_measure_utf16() -> None:
    def utf16(s: str) -> int:
        return len(s.encode("utf-16-le")) // 2

    text = "😀 " * 100  # each emoji counts 2 in UTF-16
    parts = split_markdown(text, 50, utf16)
    assert all(utf16(p) <= 50 for p in parts)
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")


def test_limit_too_small() -> None:
    with pytest.raises(ValueError):
        cut("x" * 100, 10)


def _platform_measures() -> dict[str, object]:
    """How each platform counts a message's length (the splitter must respect each exactly)."""
    from adapters.slack.sink import _mrkdwn_measure
    from adapters.telegram.formatting import telegram_length

    measures: dict[str, object] = {"plain": len, "telegram": telegram_length, "slack-mrkdwn": _mrkdwn_measure}
    try:
        from adapters.discord.sink import discord_limits  # type: ignore[import-not-found]

        measures["discord"] = discord_limits().measure
    except ImportError:
        pass
    return measures


@pytest.mark.parametrize("name", sorted(_platform_measures()))
@pytest.mark.parametrize("sample", ["word ", "ünïcödé ", "emoji 🎉 ", "**bold** `code` "])
def test_text_exactly_at_the_limit_is_not_cut_and_one_past_it_is(name: str, sample: str) -> None:
    measure = _platform_measures()[name]
    limit = 200
    text = ""
    while measure(text + sample[0]) <= limit:  # type: ignore[operator]
        text += sample[len(text) % len(sample)]
    assert measure(text) == limit or measure(text + sample[0]) > limit  # type: ignore[operator]
    at_limit = text
    if measure(at_limit) == limit:  # type: ignore[operator]
        assert cut(at_limit, limit, measure) is None  # type: ignore[arg-type]
    over = at_limit + "x"
    assert measure(over) > limit  # type: ignore[operator]
    c = cut(over, limit, measure)  # type: ignore[arg-type]
    assert c is not None and measure(c.head) <= limit  # type: ignore[operator]
    parts = split_markdown(over, limit, measure)  # type: ignore[arg-type]
    assert len(parts) == 2 and all(measure(p) <= limit for p in parts)  # type: ignore[operator]
