"""Split long Markdown into chat-sized messages without breaking code fences.

When a cut falls inside a fenced code block, the first part gets a closing
fence and the next part reopens the fence with the same info string, so each
message renders on its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_FENCE_LINES = re.compile(r"^ {0,3}(`{3,}|~{3,})", re.MULTILINE)


@dataclass(frozen=True)
class Cut:
    head: str  # the message to send (fence closed if needed)
    consumed: int  # characters of the input the head covers
    reopen: str  # to put before the rest ("```python\n") or ""


def open_fence(text: str) -> str | None:
    """The opening line of the fence still open at the end of ``text``, or None."""
    opener: str | None = None
    marker = ""
    for line in text.split("\n"):
        m = _FENCE.match(line)
        if not m:
            continue
        fence = m.group(1)
        if opener is None:
            opener, marker = line.strip(), fence
        elif fence[0] == marker[0] and len(fence) >= len(marker) and not m.group(2).strip():
            opener = None
    return opener


def _closing_for(opener: str) -> str:
    m = _FENCE.match(opener)
    return m.group(1) if m else "```"


def cut(text: str, limit: int, measure: Callable[[str], int] = len) -> Cut | None:
    """Where to cut ``text`` so the head fits ``limit``; None when it already fits."""
    if measure(text) <= limit:
        return None
    if limit < 16:
        raise ValueError("limit too small to split messages")
    # Largest prefix that fits, leaving room for a closing fence (the longest one in the text).
    longest_fence = max((len(m.group(1)) for m in _FENCE_LINES.finditer(text)), default=0)
    room = limit - min(max(8, longest_fence + 1), limit // 2)
    hi = min(len(text), room)
    while hi > 0 and (width := measure(text[:hi])) > room:
        hi = hi * room // width  # in proportion (so it shrinks): wide characters never shrink it to nothing
    window = text[:hi]
    pos = _best_break(window)
    head, rest_start = text[:pos], pos
    # Don't start the next message with the newline we cut at.
    while rest_start < len(text) and text[rest_start] == "\n" and rest_start - pos < 2:
        rest_start += 1
    fence = open_fence(head)
    if fence is None:
        return Cut(head.rstrip("\n") or head, rest_start, "")
    closing = _closing_for(fence)
    body = head if head.endswith("\n") else head + "\n"
    return Cut(body + closing, rest_start, fence + "\n")


def _best_break(window: str) -> int:
    """A natural break in the second half of ``window``: paragraph, line, then space."""
    floor = len(window) // 2
    for sep in ("\n\n", "\n"):
        at = window.rfind(sep, floor)
        if at > 0:
            return at
    at = window.rfind(" ", floor)
    return at + 1 if at > 0 else len(window)


def split_markdown(text: str, limit: int, measure: Callable[[str], int] = len) -> list[str]:
    """Split ``text`` into parts each of at most ``limit`` (as measured)."""
    parts: list[str] = []
    prefix = ""
    rest = text
    while True:
        current = prefix + rest
        c = cut(current, limit, measure)
        if c is None:
            parts.append(current)
            return parts
        parts.append(c.head)
        consumed_of_rest = max(1, c.consumed - len(prefix))
        rest = rest[consumed_of_rest:]
        prefix = c.reopen
