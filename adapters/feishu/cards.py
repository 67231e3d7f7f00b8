"""The cards and messages a reply is shown in.

* :func:`streaming_card` — a CardKit entity (JSON 2.0, ``config.streaming_mode``) with one
  ``markdown`` element (:data:`ANSWER`) whose content is replaced by the full text so far;
  sent as ``{"type": "card", "data": {"card_id": ...}}``.
* :func:`plain_card` — the same card as a message of its own (no entity), updated by
  ``im.v1.message.patch``: the fallback where CardKit is refused, and complete messages.
* :func:`post_content` / :func:`text_content` — what a reply falls back to when a card
  cannot hold it (Feishu refuses cards with too many tables, 230099 / 11310).

Sizes: cards and posts are at most 30 KB of UTF-8 JSON; :func:`card_measure` counts a
text so that ``max_card_chars`` (<= 9,000) of it always fits.
"""

from __future__ import annotations

import json
import re
from typing import Any

ANSWER = "answer"  # element_id of the streamed markdown element
SUMMARY_CHARS = 60
_STREAMING_CONFIG = {"print_frequency_ms": {"default": 30}, "print_step": {"default": 3}, "print_strategy": "fast"}
_MARKUP = re.compile(r"[`*_~#>\[\]()|]+")


def card_measure(text: str) -> int:
    """The length of ``text`` for the card limit: characters, or a third of its UTF-8 JSON bytes if more."""
    size = len(json.dumps(text, ensure_ascii=False).encode("utf-8")) - 2
    return max(len(text), -(-size // 3))


def summary(text: str) -> str:
    """The chat list's preview of a card: its first words, without Markdown."""
    flat = " ".join(_MARKUP.sub(" ", text).split())
    return flat if len(flat) <= SUMMARY_CHARS else flat[: SUMMARY_CHARS - 1] + "…"


def _body(text: str) -> dict[str, Any]:
    return {"elements": [{"tag": "markdown", "element_id": ANSWER, "content": text}]}


def streaming_card(text: str) -> dict[str, Any]:
    """A CardKit card entity in streaming mode showing ``text``."""
    return {
        "schema": "2.0",
        "config": {
            "streaming_mode": True,
            "update_multi": True,
            "summary": {"content": summary(text) or "…"},
            "streaming_config": _STREAMING_CONFIG,
        },
        "body": _body(text),
    }


def plain_card(text: str) -> dict[str, Any]:
    """A JSON 2.0 card showing ``text`` as Markdown (a message's own content, patchable)."""
    return {
        "schema": "2.0",
        "config": {"update_multi": True, "summary": {"content": summary(text)}},
        "body": _body(text),
    }


def closing_settings(text: str) -> dict[str, Any]:
    """``card.settings`` that ends streaming (the preview stops saying "generating")."""
    return {"config": {"streaming_mode": False, "summary": {"content": summary(text)}}}


def reopening_settings() -> dict[str, Any]:
    return {"config": {"streaming_mode": True}}


def entity_content(card_id: str) -> str:
    return json.dumps({"type": "card", "data": {"card_id": card_id}})


def post_content(text: str) -> str:
    """A rich-text post rendering ``text`` as Markdown (``md``: alone in its paragraph)."""
    return json.dumps({"zh_cn": {"title": "", "content": [[{"tag": "md", "text": text}]]}}, ensure_ascii=False)


def text_content(text: str) -> str:
    return json.dumps({"text": text}, ensure_ascii=False)
