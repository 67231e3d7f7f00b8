"""The fields bolt reads while routing a request, checked before bolt sees it.

bolt's context builders and listener matchers index a payload directly
(``body["event"]["type"]``, ``action["action_id"]``, ``"id" in channel``): a
payload of the wrong shape makes them raise, which would answer 500. Slack never
sends one, so a signed request shaped like that is answered 400 instead. Only
what routing reads is checked; the rest stays free-form (the handlers in
:mod:`.bridge` and :mod:`.events` read it defensively).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Ref(_Loose):
    """A user / team / channel / enterprise object."""

    id: str | None = None


Ref = str | _Ref | None


class _Where(_Loose):
    """Who and where: read at the top level and inside an event, message, item or authorization."""

    user: Ref = None
    channel: Ref = None
    team: Ref = None
    enterprise: Ref = None
    user_id: str | None = None
    channel_id: str | None = None
    team_id: str | None = None
    enterprise_id: str | None = None
    thread_ts: str | None = None
    message: _Where | None = None
    previous_message: _Where | None = None
    item: _Where | None = None
    assistant_thread: _Where | None = None


class _Event(_Where):
    type: str
    subtype: str | None = None


class _Action(_Loose):
    action_id: str
    block_id: str | None = None


class SlackPayload(_Where):
    """An Events API delivery, an interactivity payload or a slash command, as far as routing goes."""

    type: str | None = None
    command: str | None = None
    callback_id: str | None = None
    action_id: str | None = None
    event: _Event | None = None
    actions: list[_Action] | None = None
    authorizations: list[_Where] | None = None
    container: _Where | None = None
    view: dict[str, Any] | None = None
    response_url: str | None = None

    @model_validator(mode="after")
    def _button_presses_name_their_action(self) -> SlackPayload:
        if self.type == "block_actions" and not self.actions:
            raise ValueError("a block_actions payload without actions")
        return self


def shape_problem(body: object) -> str | None:
    """Why ``body`` can't be routed (e.g. ``event.type: Input should be a valid string``), or None."""
    if not isinstance(body, dict) or not body:
        return "not a JSON object"
    try:
        SlackPayload.model_validate(body)
    except ValidationError as exc:
        error = max(exc.errors(), key=lambda e: len(e["loc"]))  # the most specific one
        where = ".".join(str(part) for part in error["loc"] if part not in _UNION_TAGS)
        message = error["msg"].removeprefix("Value error, ")
        return f"{where}: {message}" if where else message
    return None


_UNION_TAGS = {"str", _Ref.__name__}  # how pydantic names the alternatives of ``Ref`` in an error's location


def read_body(raw: str, content_type: str | None) -> Any:
    """A request body as Slack means it: JSON (Events API), a form with a JSON ``payload``
    (interactivity), or a plain form (slash commands). Raises ``ValueError`` when malformed.

    bolt's own reader looks for the text "payload" anywhere in a form, so a slash command
    mentioning the word (or sent from a channel named ``payload-team``) would be misread.
    """
    if content_type == "application/json" or raw.lstrip().startswith("{"):
        return json.loads(raw)
    form = dict(parse_qsl(raw, keep_blank_values=True))
    if "payload" in form:
        return json.loads(form["payload"])
    return form


def is_ssl_check(raw: bytes) -> bool:
    """Slack's ``ssl_check=1`` probe of a slash command URL (answered 200, nothing runs)."""
    try:
        form = dict(parse_qsl(raw.decode("ascii"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return False
    return form.get("ssl_check") == "1" and "command" not in form
