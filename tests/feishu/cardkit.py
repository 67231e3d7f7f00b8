"""CardKit card entities: create, full update, settings, streaming element content.

An entity is a JSON 2.0 card (``"schema": "2.0"``, ``body.elements``) whose elements may
carry unique ``element_id`` s (a letter, then letters/digits/underscores, <= 20 chars).
Every mutating call carries a ``sequence`` that must be greater than the card's last
accepted one: content, settings and full updates share that counter (300317 otherwise).
``card_element.content`` takes the *full* text so far, only for ``markdown`` /
``plain_text`` elements and only while ``config.streaming_mode`` is on (300309); streaming
ends by itself :attr:`CardKitRoutes.stream_lifetime` seconds after it was turned on (the
next update answers 200850); at most 10 calls per card per second (99991400 beyond, with
the ``x-ogw-ratelimit-*`` headers). ``card.settings`` takes ``settings`` as a JSON *string*
(``{"config": {"streaming_mode": false}}``).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from .errors import (
    CARD_JSON_INVALID,
    CONTENT_TOO_LONG,
    DUPLICATE_ELEMENT_ID,
    ELEMENT_NOT_FOUND,
    FIELD_VALIDATION,
    RATE_LIMITED,
    SEQUENCE_COMPARE_FAILED,
    STREAMING_CLOSED,
    STREAMING_TIMEOUT,
    FeishuError,
)
from .model import CardEntity, ContentUpdate, SettingsChange, card_id, walk_elements
from .wire import CARD_LIMIT, ApiRequest, loads_object

CARD_CALLS_PER_SECOND = 10  # Feishu's limit of updates per card (content, settings, full updates together)
ELEMENT_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,19}$")
STREAMABLE_TAGS = {"markdown", "plain_text"}


class CardKitRoutes:
    """The ``cardkit.v1`` handlers of :class:`~tests.feishu.fake_feishu.FakeFeishu`."""

    cards: dict[str, CardEntity]
    stream_lifetime: float

    def m_cardkit_v1_card_create(self, req: ApiRequest) -> dict[str, Any]:
        card = self._check_card_json(req.body)
        entity = CardEntity(card_id(), card)
        if entity.streaming_mode:
            entity.streaming_since = time.monotonic()
        self.cards[entity.card_id] = entity
        return {"card_id": entity.card_id}

    def m_cardkit_v1_card_update(self, req: ApiRequest) -> dict[str, Any]:
        entity = self._card_entity(req.path["card_id"])
        self._within_card_limit(entity)
        sequence = self._next_sequence(entity, req.body)
        card = self._check_card_json(req.body.get("card") or {})
        was_streaming = entity.streaming_mode
        entity.card = card
        if entity.streaming_mode and not was_streaming:
            entity.streaming_since = time.monotonic()
        entity.full_updates += 1
        self._accept(entity, sequence)
        return {}

    def m_cardkit_v1_card_settings(self, req: ApiRequest) -> dict[str, Any]:
        entity = self._card_entity(req.path["card_id"])
        self._within_card_limit(entity)
        settings = loads_object(req.body.get("settings"), FIELD_VALIDATION, "settings")
        sequence = self._next_sequence(entity, req.body)
        config = settings.get("config")
        if config is not None and not isinstance(config, dict):
            raise FeishuError(FIELD_VALIDATION, "settings.config must be an object")
        was_streaming = entity.streaming_mode
        entity.config.update(config or {})
        if "card_link" in settings:
            entity.card["card_link"] = settings["card_link"]
        if entity.streaming_mode and not was_streaming:
            entity.streaming_since = time.monotonic()
        entity.settings_changes.append(SettingsChange(settings, sequence, entity.streaming_mode))
        self._accept(entity, sequence)
        return {}

    def m_cardkit_v1_card_element_content(self, req: ApiRequest) -> dict[str, Any]:
        entity = self._card_entity(req.path["card_id"])
        self._within_card_limit(entity)
        element_id = req.path["element_id"]
        if entity.streaming_mode and entity.streaming_since is not None:
            if time.monotonic() - entity.streaming_since > self.stream_lifetime:
                entity.config["streaming_mode"] = False
                raise FeishuError(STREAMING_TIMEOUT)
        if not entity.streaming_mode:
            raise FeishuError(STREAMING_CLOSED)
        sequence = self._next_sequence(entity, req.body)
        element = entity.elements().get(element_id)
        if element is None:
            raise FeishuError(ELEMENT_NOT_FOUND, element_id=element_id)
        if element.get("tag") not in STREAMABLE_TAGS:
            raise FeishuError(CARD_JSON_INVALID, f"ErrMsg: element {element_id} does not support content update; ")
        content = req.body.get("content")
        if not isinstance(content, str):
            raise FeishuError(FIELD_VALIDATION, "field validation failed: content")
        previous = element.get("content")
        element["content"] = content
        if len(json.dumps(entity.card, ensure_ascii=False).encode()) > CARD_LIMIT:
            element["content"] = previous
            raise FeishuError(CONTENT_TOO_LONG)
        entity.updates.append(ContentUpdate(element_id, content, sequence))
        self._accept(entity, sequence)
        return {}

    def _card_entity(self, card_ref: str) -> CardEntity:
        entity = self.cards.get(card_ref)
        if entity is None:
            raise FeishuError(FIELD_VALIDATION, f"card_id is invalid: {card_ref}")
        return entity

    @staticmethod
    def _within_card_limit(entity: CardEntity) -> None:
        """At most :data:`CARD_CALLS_PER_SECOND` calls on one card within any second (99991400 beyond)."""
        now = time.monotonic()
        entity.recent_calls = [t for t in entity.recent_calls if now - t < 1.0]
        if len(entity.recent_calls) >= CARD_CALLS_PER_SECOND:
            entity.throttled += 1
            reset = {"x-ogw-ratelimit-limit": str(CARD_CALLS_PER_SECOND), "x-ogw-ratelimit-reset": "1"}
            raise FeishuError(RATE_LIMITED, status=429, headers=reset)
        entity.recent_calls.append(now)

    @staticmethod
    def _next_sequence(entity: CardEntity, body: dict[str, Any]) -> int:
        sequence = body.get("sequence")
        if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 1:
            raise FeishuError(FIELD_VALIDATION, "field validation failed: sequence")
        if sequence <= entity.sequence:
            raise FeishuError(SEQUENCE_COMPARE_FAILED)
        return sequence

    @staticmethod
    def _accept(entity: CardEntity, sequence: int) -> None:
        entity.sequence = sequence
        entity.sequences.append(sequence)

    @staticmethod
    def _check_card_json(body: dict[str, Any]) -> dict[str, Any]:
        """A CardKit ``{"type": "card_json", "data": "<JSON 2.0 card>"}`` body, decoded and checked."""
        if body.get("type") != "card_json":
            raise FeishuError(FIELD_VALIDATION, "field validation failed: type must be card_json")
        card = loads_object(body.get("data"), CARD_JSON_INVALID, "data")
        if len(str(body["data"]).encode()) > CARD_LIMIT:
            raise FeishuError(CONTENT_TOO_LONG)
        if card.get("schema") != "2.0" or not isinstance((card.get("body") or {}).get("elements"), list):
            raise FeishuError(
                CARD_JSON_INVALID, 'ErrMsg: card entities need a JSON 2.0 card ("schema": "2.0", body.elements); '
            )
        seen: set[str] = set()
        for element in walk_elements(card["body"]):
            element_id = element.get("element_id")
            if element_id is None:
                continue
            if not isinstance(element_id, str) or not ELEMENT_ID.match(element_id):
                raise FeishuError(CARD_JSON_INVALID, f"ErrMsg: invalid element_id {element_id!r}; ")
            if element_id in seen:
                raise FeishuError(DUPLICATE_ELEMENT_ID)
            seen.add(element_id)
        return card
