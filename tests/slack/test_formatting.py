"""Markdown -> Slack mrkdwn where Slack does not take standard Markdown."""

from __future__ import annotations

import pytest

from adapters.slack.formatting import clip_escaped, escape, from_slack, plain_summary, to_mrkdwn


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
        ("run `echo <!channel> && ls`", "run `echo &lt;!channel&gt; &amp;&amp; ls`"),
        ("hi <!channel> and <@U1>", "hi &lt;!channel&gt; and &lt;@U1&gt;"),
        # never a link in disguise (a URL labelled "ls")
        ("<https://x.example|ls>", "<https://x.example%7Cls>"),
        ("<https://x.example|ls -la>", "&lt;https://x.example|ls -la&gt;"),
        ("[a](https://x.example/?q=1&r=<2>)", "<https://x.example/?q=1&amp;r=%3C2|a>"),
        ("---", "──────────"),
        ("2 * 3 * 4", "2 * 3 * 4"),
        ("snake_case_name stays", "snake_case_name stays"),
    ],
)
def test_inline_and_block_markup(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_code_blocks_keep_their_markup_but_are_escaped_without_the_language() -> None:
    # Slack needs &, <, > escaped in code too (it shows them as typed); nothing else changes in code.
    text = "Run:\n\n```python\nprint(**kwargs)  # <tag> & *args <!here>\n```\n\n**done**"
    assert to_mrkdwn(text) == "Run:\n\n```\nprint(**kwargs)  # &lt;tag&gt; &amp; *args &lt;!here&gt;\n```\n\n*done*"


def test_an_unclosed_fence_keeps_the_rest_as_code() -> None:
    assert to_mrkdwn("```\n**raw** <b>") == "```\n**raw** &lt;b&gt;"


def test_escape_and_summary() -> None:
    assert escape("<@U1> & co") == "&lt;@U1&gt; &amp; co"
    assert clip_escaped("a < b", 100) == "a &lt; b"
    assert clip_escaped("ab<cdef", 5) == "ab…"  # never half an entity ("&l…")
    assert clip_escaped("ab&&&&&&&", 9) == "ab&amp;…"
    summary = plain_summary("**Hello**\n\n" + "word " * 100, limit=40)
    assert summary.startswith("*Hello* word") and len(summary) == 40 and summary.endswith("…")


@pytest.mark.parametrize(
    ("sent", "typed"),
    [
        ("if a &lt; b &amp;&amp; c &gt; d", "if a < b && c > d"),
        ("&amp;lt; stays literal", "&lt; stays literal"),
        ("see <https://example.com/x?a=1&amp;b=2>", "see https://example.com/x?a=1&b=2"),
        ("see <https://example.com|the docs>", "see the docs (https://example.com)"),
        ("mail <mailto:a@b.io|a@b.io>", "mail a@b.io"),
        ("in <#C123|general> ping <!here>", "in #general ping @here"),
        ("ask <@U42> and <@U7|bob>", "ask <@U42> and <@U7|bob>"),
        ("```x &lt;div&gt;```", "```x <div>```"),
    ],
)
def test_text_from_slack_reads_as_typed(sent: str, typed: str) -> None:
    assert from_slack(sent) == typed
