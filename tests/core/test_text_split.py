from __future__ import annotations

from collections.abc import Callable

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
    from adapters.discord.sink import discord_limits
    from adapters.feishu.cards import card_measure
    from adapters.slack.sink import _mrkdwn_measure
    from adapters.telegram.formatting import telegram_length

    return {
        "plain": len,
        "telegram": telegram_length,
        "slack-mrkdwn": _mrkdwn_measure,
        "discord": discord_limits().measure,
        "feishu-card": card_measure,
    }


@pytest.mark.parametrize("name", sorted(_platform_measures()))
@pytest.mark.parametrize("sample", ["word ", "ünïcödé ", "emoji 🎉 ", "**bold** `code` "])
def test_text_exactly_at_the_limit_is_not_cut_and_one_past_it_is(name: str, sample: str) -> None:
    measure = _platform_measures()[name]
    limit = 200
    text = ""
    while measure(text + sample[len(text) % len(sample)]) <= limit:  # type: ignore[operator]
        text += sample[len(text) % len(sample)]
    at_limit = _filled(text, limit, measure)  # type: ignore[arg-type]
    assert measure(at_limit) == limit  # type: ignore[operator]
    assert cut(at_limit, limit, measure) is None  # type: ignore[arg-type]
    assert split_markdown(at_limit, limit, measure) == [at_limit]  # type: ignore[arg-type]
    over = at_limit + "x"
    assert measure(over) > limit  # type: ignore[operator]
    c = cut(over, limit, measure)  # type: ignore[arg-type]
    assert c is not None and measure(c.head) <= limit  # type: ignore[operator]
    parts = split_markdown(over, limit, measure)  # type: ignore[arg-type]
    assert len(parts) == 2 and all(measure(p) <= limit for p in parts)  # type: ignore[operator]


def _filled(text: str, limit: int, measure: Callable[[str], int]) -> str:
    """``text`` brought to exactly ``limit`` with x's (trailing spaces dropped when a platform ignores them)."""
    for base in (text, text.rstrip()):
        while measure(base + "x") <= limit:
            base += "x"
        if measure(base) == limit:
            return base
    pytest.fail(f"cannot make a text of exactly {limit} from {text[-20:]!r}")


# -- where the cut falls (each case kills a mutant that survived `make mutation`) ------------------
def test_a_hard_cut_fills_all_but_the_room_of_a_closing_fence() -> None:
    c = cut("x" * 100, 50)
    assert c is not None and c.head == "x" * 42 and c.consumed == 42 and c.reopen == ""
    assert cut("x" * 100, 16) is not None  # 16 is the smallest limit
    with pytest.raises(ValueError) as info:
        cut("x" * 100, 15)
    assert str(info.value) == "limit too small to split messages"


def test_breaks_in_the_first_half_of_the_window_are_not_used() -> None:
    # The window is 92 characters (100 minus a fence's room); breaks before its middle would waste it.
    assert split_markdown("ab\n" + "x" * 200, 100)[0] == "ab\n" + "x" * 89
    assert split_markdown("ab " + "x" * 200, 100)[0] == "ab " + "x" * 89
    assert split_markdown("a" * 40 + "\n" + "x" * 200, 100)[0] == "a" * 40 + "\n" + "x" * 51


def test_the_last_paragraph_break_wins_over_later_line_breaks_and_spaces() -> None:
    text = "a" * 30 + "\n\n" + "b" * 20 + "\n\n" + "c" * 10 + "\n" + "d" * 10 + " " + "e" * 100
    parts = split_markdown(text, 100)
    assert parts[0] == "a" * 30 + "\n\n" + "b" * 20
    assert parts[1].startswith("c" * 10 + "\nd")  # the cut's own blank line is not carried over
    lines = "a" * 50 + "\n" + "b" * 20 + "\n" + "c" * 100
    assert split_markdown(lines, 100)[:2] == ["a" * 50 + "\n" + "b" * 20, "c" * 100]


def test_words_are_never_cut_when_there_are_spaces() -> None:
    words = " ".join(f"w{i:03d}" for i in range(100))
    parts = split_markdown(words, 60)
    assert all(len(p) <= 60 for p in parts) and len(parts) > 5
    assert " ".join(p.strip() for p in parts).split() == words.split()
    for p in parts:
        assert all(len(w) == 4 and w.startswith("w") for w in p.split()), p
    assert parts[0] == " ".join(f"w{i:03d}" for i in range(10)) + " "  # up to and with the space


def test_a_head_ends_without_the_newlines_before_the_cut() -> None:
    parts = split_markdown("X" * 60 + "\n\n\n\n" + "Y" * 60, 100)
    assert parts == ["X" * 60, "Y" * 60]


def test_a_cut_inside_a_fence_closes_it_without_a_blank_line() -> None:
    code = "\n\n".join(f"line {i}" for i in range(30))
    parts = split_markdown(f"```\n{code}\n```", 80)
    assert len(parts) > 2
    for part in parts[:-1]:
        assert part.endswith("\n```") and not part.endswith("\n\n```"), part
        assert part.startswith("```\n")


def test_tilde_and_long_fences_are_closed_with_their_own_marker() -> None:
    code = "\n".join(f"line {i}" for i in range(40))
    for fence in ("~~~", "````", "`" * 12, "~" * 16):  # the last two: longer than the usual room for a closing fence
        parts = split_markdown(f"{fence}sh\n{code}\n{fence}", 80)
        assert len(parts) > 2
        for part in parts:
            assert len(part) <= 80, (fence, part)
            assert part.startswith(f"{fence}sh\n") and part.endswith(f"\n{fence}"), (fence, part)


def test_a_long_fence_leaves_exactly_the_room_its_closing_needs() -> None:
    fence = "`" * 12
    parts = split_markdown(f"{fence}\n" + "x" * 300 + f"\n{fence}", 80)
    assert parts[0] == f"{fence}\n" + "x" * 54 + f"\n{fence}" and len(parts[0]) == 80  # full, and not over


def test_text_mentioning_a_fence_mid_line_opens_none() -> None:
    assert open_fence("say ``` here\nand ~~~ there") is None
    assert open_fence("intro\n  ```py\ncode") == "```py"


@pytest.mark.parametrize(("sample", "width"), [("😀", 2), ("&", 5)])
def test_wide_characters_without_breaks_are_split_into_full_parts_and_none_is_lost(sample: str, width: int) -> None:
    def measure(s: str) -> int:  # UTF-16 units (Telegram) or Slack's &amp; escaping: wider than len()
        return sum(width if ch == sample else 1 for ch in s)

    text = sample * 500
    parts = split_markdown(text, 100, measure)
    assert "".join(parts) == text  # nothing dropped
    assert all(p and measure(p) <= 100 for p in parts)
    assert len(parts) <= -(-measure(text) // (100 - 8 - width)) + 1  # each part about full, none empty
