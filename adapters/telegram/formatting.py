"""Markdown from the agent -> Telegram plain text + message entities.

Telegram's parse modes fail a whole request with "can't parse entities" when a
half-streamed message cuts a formatting span in two. Sending plain text with
computed ``entities`` cannot fail that way: every prefix of a reply renders to
valid text + entities. telegramify-markdown does the conversion.

Telegram counts its 4,096-character limit in UTF-16 code units of the rendered
text, so :func:`telegram_length` (the sink's ``measure``) renders first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

from telegram import MessageEntity
from telegramify_markdown import RenderConfig, convert, utf16_len

log = logging.getLogger(__name__)

MAX_TEXT = 4096  # UTF-16 code units per message, after entity parsing
MAX_CAPTION = 1024

_CONFIG = RenderConfig.isolated() if hasattr(RenderConfig, "isolated") else None  # never the shared global


@dataclass(frozen=True)
class Rendered:
    """What a Telegram message shows: plain text and the entities formatting it."""

    text: str
    entities: tuple[MessageEntity, ...] = ()

    @property
    def length(self) -> int:
        return utf16_len(self.text)


@lru_cache(maxsize=128)
def render(markdown: str) -> Rendered:
    """Render Markdown for Telegram; never fails and never returns an empty text for non-empty input."""
    try:
        text, entities = convert(markdown, latex_escape=False, config=_CONFIG)
    except Exception:  # a renderer bug must not lose the reply: fall back to the raw text
        log.exception("could not render Markdown; sending it as plain text")
        return Rendered(markdown)
    if not text.strip():
        # e.g. an empty code fence: show the source rather than nothing
        return Rendered(markdown.strip() or "…")
    return Rendered(text, tuple(MessageEntity.de_json(e.to_dict(), None) for e in entities))


def telegram_length(markdown: str) -> int:
    """How long Telegram will consider the rendered ``markdown`` (UTF-16 code units)."""
    return render(markdown).length


def render_caption(markdown: str, limit: int = MAX_CAPTION) -> Rendered:
    """A caption: rendered when it fits, else shortened plain text."""
    rendered = render(markdown)
    if rendered.length <= limit:
        return rendered
    text = rendered.text
    while utf16_len(text) > limit - 1:
        text = text[: max(0, len(text) - max(1, utf16_len(text) - (limit - 1)))]
    return Rendered(text + "…")
