"""Markdown for Slack.

Replies stay standard Markdown wherever Slack accepts it (``markdown_text`` on
``chat.postMessage`` / ``chat.update`` / the ``chat.*Stream`` methods). Slack
translates that text itself, and Slack's ``&``/``<``/``>`` escaping rules are
rules of *mrkdwn*: in standard Markdown ``&lt;`` inside code would show
literally, so ``markdown_text`` is sent as is. A few places only take Slack's
own mrkdwn (``text`` fallbacks, section blocks, ephemeral messages, file
comments, or ``text_format: mrkdwn``): there :func:`to_mrkdwn` converts the
common constructs — bold, italic, strikethrough, links, headings, bullets — and
escapes ``&``, ``<`` and ``>`` everywhere, code included (Slack shows the
escaped characters as typed), so no text can turn into a mention
(``<!channel>``) or a disguised link (``<https://x|ls>``).
"""

from __future__ import annotations

import re

MARKDOWN_LIMIT = 12_000  # characters of markdown_text per call / markdown block
SECTION_LIMIT = 3_000  # characters of text in a section block

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
_LINK = re.compile(r"!?\[([^\]\n]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=\S)\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(?!\[[ xX]\])")
_TASK = re.compile(r"^(\s*)[-*+]\s+\[([ xX])\]\s+")
_RULE = re.compile(r"^ {0,3}([-*_])(\s*\1){2,}\s*$")
_QUOTE = re.compile(r"^(\s*)>\s?")

_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")
_BOLD_MARK = "\x01"  # stands for mrkdwn's '*' until italics are converted


def escape(text: str) -> str:
    """Escape the three characters mrkdwn treats as markup (``&``, ``<``, ``>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# Slack's markup in text people send: <https://x|label>, <mailto:a@b|a@b>, <#C1|general>, <!here>, <@U1>.
_SLACK_TOKEN = re.compile(r"<([^<>]+)>")


def from_slack(text: str) -> str:
    """Text a person sent in Slack, as they typed it: links and channel names spelled out,
    ``&amp;`` / ``&lt;`` / ``&gt;`` decoded. User mentions (``<@U…>``) are kept as they are."""

    def token(m: re.Match[str]) -> str:
        target, _, label = m.group(1).partition("|")
        if target.startswith("@"):
            return m.group(0)
        if target.startswith("#"):
            return f"#{label or target[1:]}"
        if target.startswith("!"):
            special = target[1:].split("^", 1)[0]
            return label or (f"@{special}" if special in ("here", "channel", "everyone") else special)
        url = target.removeprefix("mailto:")
        if not label or label == url:
            return url
        if url.split("://", 1)[-1] == label:  # Slack auto-linked what was typed ("x.io")
            return label
        return f"{label} ({url})"

    decoded = _SLACK_TOKEN.sub(token, text)
    return decoded.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def clip_escaped(text: str, limit: int) -> str:
    """:func:`escape` ``text``, then :func:`clip` it to ``limit`` without cutting an entity in half."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    head = _PARTIAL_ENTITY.sub("", escaped[: limit - 1])
    return head + "…"


def to_mrkdwn(markdown: str) -> str:
    """Convert standard Markdown to Slack mrkdwn (code is kept as written, only escaped)."""
    out: list[str] = []
    fence: str | None = None
    for line in markdown.split("\n"):
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            out.append("```")  # mrkdwn has no info string (language)
            continue
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not m.group(2).strip():
                fence = None
                out.append("```")
            else:
                out.append(escape(line))
            continue
        out.append(_convert_line(line))
    return "\n".join(out)


def _convert_line(line: str) -> str:
    if _RULE.match(line):
        return "──────────"
    quote = ""
    qm = _QUOTE.match(line)
    if qm:
        quote, line = qm.group(1) + ">", line[qm.end() :]
        quote += " " if line else ""
    heading = _HEADING.match(line)
    if heading:
        title = _BOLD.sub(lambda m: m.group(2), heading.group(1))  # a heading is bold as a whole
        return quote + f"*{_inline(title)}*"
    task = _TASK.match(line)
    if task:
        box = "☑" if task.group(2).lower() == "x" else "☐"
        return quote + task.group(1) + box + " " + _inline(line[task.end() :])
    bullet = _BULLET.match(line)
    if bullet:
        return quote + bullet.group(1) + "• " + _inline(line[bullet.end() :])
    return quote + _inline(line)


def _inline(text: str) -> str:
    """Inline markup of one line; code spans and link targets are protected first."""
    saved: list[str] = []

    def keep(value: str) -> str:
        saved.append(value)
        return f"\x02{len(saved) - 1}\x03"

    text = _INLINE_CODE.sub(lambda m: keep(f"`{escape(_code_span(m))}`"), text)
    text = _LINK.sub(lambda m: keep(_link(m.group(2), m.group(1))), text)
    text = _AUTOLINK.sub(lambda m: keep(_link(m.group(1), "")), text)
    text = escape(text)
    text = _BOLD.sub(lambda m: f"{_BOLD_MARK}{m.group(2)}{_BOLD_MARK}", text)
    text = _ITALIC_STAR.sub(lambda m: f"_{m.group(1)}_", text)
    text = _STRIKE.sub(lambda m: f"~{m.group(1)}~", text)
    text = text.replace(_BOLD_MARK, "*")
    return re.sub(r"\x02(\d+)\x03", lambda m: saved[int(m.group(1))], text)


def _code_span(m: re.Match[str]) -> str:
    return m.group(2).strip() if len(m.group(1)) > 1 else m.group(2)


def _link(url: str, label: str) -> str:
    """``<url|label>``: ``&`` escaped; ``|``, ``<``, ``>`` percent-encoded so the URL can't end early or relabel."""
    url = url.replace("&", "&amp;").replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")
    label = escape(label.strip()).replace("|", "¦")
    return f"<{url}|{label}>" if label and label != url else f"<{url}>"


def plain_summary(markdown: str, limit: int = 150) -> str:
    """A one-line preview (notification ``text`` fallbacks)."""
    one = " ".join(to_mrkdwn(markdown).split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
