"""Markdown -> Slack mrkdwn where Slack does not take standard Markdown."""

from __future__ import annotations

import pytest

from adapters.slack.formatting import escape, plain_summary, to_mrkdwn


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and *italic* and _also_", "*bold* and _italic_ and _also_"),
        ("__bold__ ~~gone~~", "*bold* ~gone~"),
        ("see [the docs](https://example.com/a_b?x=1)", "see <https://example.com/a_b?x=1|the docs>"),
        ("<https://example.com>", "<https://example.com>"),
        ("# Title\n## Sub **x**", "*Title*\n*Sub x*"),
        ("- one\n* two\n  + nested", "• one\n• two\n  • nested"),
        ("- [x] done\n- [ ] todo", "☑ done\n☐ todo"),
        ("> quoted **text**", "> quoted *text*"),
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ("use `**not bold**` here", "use `**not bold**` here"),
        ("---", "──────────"),
        ("2 * 3 * 4", "2 * 3 * 4"),
        ("snake_case_name stays", "snake_case_name stays"),
    ],
)
def test_inline_and_block_markup(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_code_blocks_are_kept_verbatim_without_the_language() -> None:
    text = "Run:\n\n```python\nprint(**kwargs)  # <tag> & *args\n```\n\n**done**"
    assert to_mrkdwn(text) == "Run:\n\n```\nprint(**kwargs)  # <tag> & *args\n```\n\n*done*"


def test_an_unclosed_fence_keeps_the_rest_as_code() -> None:
    assert to_mrkdwn("```\n**raw**") == "```\n**raw**"


def test_escape_and_summary() -> None:
    assert escape("<@U1> & co") == "&lt;@U1&gt; &amp; co"
    summary = plain_summary("**Hello**\n\n" + "word " * 100, limit=40)
    assert summary.startswith("*Hello* word") and len(summary) == 40 and summary.endswith("…")
