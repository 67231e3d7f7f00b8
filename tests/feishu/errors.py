"""Feishu Open Platform error codes the fake answers with, and the exception that carries one.

Feishu answers errors as ``{"code": <int>, "msg": <str>, "error": {"log_id": ...}}``,
mostly with HTTP 400 (business errors), 429 for rate limits on newer APIs, and 200 for
the token endpoint (seen live: a wrong app secret is HTTP 200 + code 10014). lark-oapi
never raises for any of them: it parses the body whatever the status, so callers look at
``resp.code`` / ``resp.msg`` and ``resp.raw.status_code`` / ``resp.raw.headers``.

Codes marked ``(?)`` in :data:`MESSAGES` could not be confirmed from Feishu's docs or
from public bug reports; the others were seen in real answers (see the report of the
change that added this module). Tests and adapters should match on the codes that
matter to them (constants below), never on the messages.
"""

from __future__ import annotations

from typing import Any

# -- auth --------------------------------------------------------------------------
INVALID_PARAM = 10003  # token endpoint: malformed app_id / empty body
APP_SECRET_INVALID = 10014  # token endpoint: wrong app secret (HTTP 200!); also "app id not exists"
MISSING_TOKEN = 99991661  # no Authorization header
INVALID_TOKEN = 99991663  # a token the platform did not issue (or revoked / expired)
RATE_LIMITED = 99991400  # "request trigger frequency limit" + x-ogw-ratelimit-* headers
FIELD_VALIDATION = 99992402  # a required field / query parameter missing or malformed

# -- im.v1 messages ----------------------------------------------------------------
INVALID_REQUEST = 230001  # invalid parameter (bad content JSON, wrong msg_type for the call...)
BOT_NOT_IN_CHAT = 230002  # the bot is not a member of that chat
MESSAGE_RECALLED = 230011  # the message was recalled (deleted)
NO_AVAILABILITY = 230013  # (?) the user is outside the bot's availability
CONTENT_TOO_LONG = 230025  # card/post > 30 KB, text > 150 KB
EDIT_LIMIT = 230072  # (?) a text/post message edited too many times (~20)
CARD_CONTENT_FAILED = 230099  # "Failed to create card content, ext=ErrCode: 11310; ..."
CARD_PARSE_ERROR = 200621  # card content that is neither a card nor {"type":"card","data":{...}}

# -- im.v1 files -------------------------------------------------------------------
FILE_INVALID_PARAM = 234001  # (?) missing/invalid type or upload field
FILE_NOT_IN_MESSAGE = 234003  # (?) the key is not a resource of that message
FILE_TOO_LARGE = 234006  # (?) image > 10 MB, file > 30 MB
FILE_EMPTY = 234010  # (?) a zero-byte upload

# -- cardkit.v1 --------------------------------------------------------------------
CARD_JSON_INVALID = 300300  # (?) not a JSON 2.0 card / malformed element_id
DUPLICATE_ELEMENT_ID = 300301  # two elements share an element_id
ELEMENT_NOT_FOUND = 300313  # "not find elementID : <id>"
SEQUENCE_COMPARE_FAILED = 300317  # a sequence not greater than the card's last one
STREAMING_CLOSED = 300309  # content update while streaming_mode is off
STREAMING_TIMEOUT = 200850  # the 10-minute streaming lifetime ran out (answered once, then 300309)

TABLE_LIMIT_MSG = (
    "Failed to create card content, ext=ErrCode: 11310; ErrMsg: card table number over limit; ErrorValue: table; "
)

MESSAGES: dict[int, str] = {
    INVALID_PARAM: "invalid param",
    APP_SECRET_INVALID: "app secret invalid",
    MISSING_TOKEN: "Missing access token for authorization. Please make a request with token attached.",
    INVALID_TOKEN: "Invalid access token for authorization. Please make a request with token attached.",
    RATE_LIMITED: "request trigger frequency limit",
    FIELD_VALIDATION: "field validation failed",
    INVALID_REQUEST: "Your request contains an invalid request parameter.",
    BOT_NOT_IN_CHAT: "Bot/User can NOT be out of the chat.",
    MESSAGE_RECALLED: "The message was withdrawn.",
    NO_AVAILABILITY: "Bot has NO availability to this user.",
    CONTENT_TOO_LONG: "The length of the message content reaches its limit.",
    EDIT_LIMIT: "The message has reached the number of times it can be edited.",
    CARD_CONTENT_FAILED: TABLE_LIMIT_MSG,
    CARD_PARSE_ERROR: "parse card json err, please check whether the card json is correct",
    FILE_INVALID_PARAM: "Invalid request param.",
    FILE_NOT_IN_MESSAGE: "File not in msg.",
    FILE_TOO_LARGE: "The file size exceeds the limit.",
    FILE_EMPTY: "File's size can't be 0.",
    CARD_JSON_INVALID: "ErrMsg: card json invalid; ",
    DUPLICATE_ELEMENT_ID: "ErrMsg: Duplicate element_id in card component; ",
    ELEMENT_NOT_FOUND: "ErrMsg: not find elementID : {element_id}; ",
    SEQUENCE_COMPARE_FAILED: "ErrMsg: sequence number compare failed; ",
    STREAMING_CLOSED: "ErrMsg: streaming mode is closed; ",
    STREAMING_TIMEOUT: "ErrMsg: card streaming timeout; ",
}


def message_for(code: int, **fields: Any) -> str:
    """Feishu's message for ``code`` (``{placeholders}`` filled from ``fields``)."""
    text = MESSAGES.get(code, "injected failure")
    return text.format(**fields) if fields else text


class FeishuError(Exception):
    """Raised by a route handler: answered as ``{"code", "msg", "error"}`` with ``status``."""

    def __init__(
        self,
        code: int,
        msg: str | None = None,
        *,
        status: int = 400,
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> None:
        self.code = code
        self.msg = msg if msg is not None else message_for(code, **fields)
        self.status = status
        self.headers = headers or {}
        super().__init__(f"{code}: {self.msg}")
