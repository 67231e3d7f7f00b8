"""Core events as server-sent events. Every ``data`` is a JSON object with a ``type``.

``/api/v1/chat/stream`` (claude-agent-http's stream) is written as that API wrote it: exactly
``data: {json}`` and a blank line per event, ``\n`` line ends, no ``id:`` lines, no keep-alive
comments, and only its four types, as plain (unnamed) events::

    data: {"type": "text_delta", "text": "Here"}
    data: {"type": "tool_use", "tool_name": "Write", "tool_input": {...}}
    data: {"type": "done"}                    (or {"type": "error", "error": "..."})

each with ccbridge's extra fields, none of them a ``text`` in ``done`` or ``error`` (a client
adding up every chunk's text gets the reply once; ``done`` carries the rest of the chat
response: cost, files...). ccbridge's other events -- ``tool_result``, ``approval_request``,
``approval_resolved``, ``file``, ``retry`` (the model API is overloaded or rate limited and
Claude Code retries) and ``waiting`` (the turn waits for a free process or for the
conversation's previous turn) -- are sent on ``/api/v1`` only to a client that asked for
approvals (``approval_mode: "ask"``: it needs ``approval_request``), as named events, so a
client of the ``message`` events still never sees them.

``/api/v2/chat/stream`` sends every event, named by its type (``event: text_delta`` ...),
with its ``id:``, and ``done`` / ``error`` with the whole reply ``text``.

claude-code-server's ``/chat/stream`` (:mod:`.compat`) keeps sse-starlette's defaults that
server used: ``\r\n`` line ends, no ``id:`` lines, ``: ping`` comments every 15 s.

Every stream opens with an SSE comment, ``: accepted``, sent as soon as the turn is taken on
(before Claude Code has started): a sign of life that SSE clients skip.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from sse_starlette import EventSourceResponse

from core import (
    AgentRetrying,
    ApprovalRequested,
    ApprovalResolved,
    FileOffered,
    TextDelta,
    ToolResult,
    ToolUse,
    TurnWaiting,
)

from .models import approval_out, chat_out, file_url, tool_calls_out
from .turns import TurnAnswer, TurnRunner, error_status

# The stream's first line, ": accepted": a sign of life the moment the turn is taken on (a client or
# proxy waiting for a first byte does not give up while Claude Code starts). It is the only comment
# line of an /api/v1 stream; SSE clients skip comments, and a client reading raw lines sees no "data:".
ACCEPTED = {"comment": "accepted"}
SEED_TYPES = frozenset({"text_delta", "tool_use", "done", "error"})  # claude-agent-http's StreamChunk types
#: the keys of claude-agent-http's StreamChunk: its server wrote each one, null when unset
SEED_KEYS = ("text", "tool_name", "tool_input", "error")
TERMINAL_TYPES = frozenset({"done", "error"})


@dataclass(frozen=True)
class Framing:
    """How a stream's events are written."""

    sep: str | None = None  # line ends; None: sse-starlette's "\r\n"
    ping: float = 15  # seconds between ": ping" comments on an idle stream; 0: none
    ids: bool = True  # an "id: N" line before each event


#: claude-agent-http wrote ``data: {json}\n\n`` per chunk and nothing else (no ids, no pings).
SEED_V1 = Framing(sep="\n", ping=0, ids=False)
_NO_PING = 10.0**7  # seconds (about four months)
#: claude-code-server used sse-starlette's defaults: "\r\n" line ends, pings every 15 s, no ids.
SEED_COMPAT = Framing(ids=False)
V2 = Framing()

Payload = tuple[str | None, dict[str, Any] | str]  # (SSE event name or None for unnamed, data)
Render = Callable[[TurnRunner, object], "Payload | None"]


def _sse(payload: Payload, seq: int, framing: Framing) -> dict[str, Any]:
    event, data = payload
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)
    frame: dict[str, Any] = {"event": event, "data": text}
    if framing.ids:
        frame["id"] = str(seq)
    return frame


def outcome_data(outcome: TurnAnswer) -> dict[str, Any]:
    """``done`` for a finished turn, ``error`` for a failed one."""
    if outcome.ok:
        return {"type": "done", **chat_out(outcome).model_dump(mode="json")}
    _, code = error_status(outcome)
    message = outcome.error or "the turn failed"
    return {
        "type": "error",
        "error": message,
        "code": code,
        "message": message,
        "session_id": outcome.session_id or None,
        "text": outcome.text,
        "tool_calls": [t.model_dump(mode="json") for t in tool_calls_out(outcome.tool_calls)],
        "cost_usd": outcome.cost_usd,
    }


def event_data(runner: TurnRunner, event: object) -> dict[str, Any] | None:
    """One event as its JSON data (with ``type``), or None for events the API does not show."""
    if isinstance(event, TextDelta):
        return {"type": "text_delta", "text": event.text, "new_block": event.new_block}
    if isinstance(event, ToolUse):
        return {
            "type": "tool_use",
            "tool_name": event.name,
            "tool_input": event.input,
            "id": event.id,
            "name": event.name,
            "summary": event.summary,
            "input": event.input,
        }
    if isinstance(event, ToolResult):
        return {
            "type": "tool_result",
            "tool_use_id": event.tool_use_id,
            "name": event.name,
            "is_error": event.is_error,
            "summary": event.summary,
        }
    if isinstance(event, ApprovalRequested):
        return {"type": "approval_request", **approval_out(event.request).model_dump(mode="json")}
    if isinstance(event, ApprovalResolved):
        req = event.request
        return {
            "type": "approval_resolved",
            "id": req.id,
            "tool": req.tool_name,
            "decision": req.decision.value if req.decision else None,
            "decided_by": req.decided_by,
            "outcome": req.outcome(),
        }
    if isinstance(event, FileOffered):
        ref = runner.file_ref(event)
        session_id = runner.session_id
        url = file_url(session_id, ref.path) if ref.inside and session_id else None
        return {"type": "file", "name": ref.name, "path": ref.path, "caption": ref.caption, "url": url}
    if isinstance(event, AgentRetrying):
        return {
            "type": "retry",
            "attempt": event.attempt,
            "max_retries": event.max_retries,
            "delay": event.delay,
            "status": event.status,
            "reason": event.reason,
            "message": event.describe(),
        }
    if isinstance(event, TurnWaiting):
        return {"type": "waiting", "reason": event.reason, "kind": event.kind}
    if isinstance(event, TurnAnswer):
        return outcome_data(event)
    return None


def v1_render(extras: bool = False) -> Render:
    """``/api/v1``: claude-agent-http's types unnamed, each with all of its chunk's keys (null when unset, as
    that server wrote them: a null ``text`` in ``done``/``error``, the reply was streamed already);
    ccbridge's other events named, and only when ``extras``."""

    def render(runner: TurnRunner, event: object) -> Payload | None:
        data = event_data(runner, event)
        if data is None:
            return None
        if data["type"] not in SEED_TYPES:
            return (data["type"], data) if extras else None
        if data["type"] in TERMINAL_TYPES:
            data.pop("text", None)
        for key in SEED_KEYS:
            data.setdefault(key, None)
        return None, data

    return render


def v2_render(runner: TurnRunner, event: object) -> Payload | None:
    data = event_data(runner, event)
    return None if data is None else (data["type"], data)


def stream_response(events: AsyncIterator[dict[str, Any]], framing: Framing) -> EventSourceResponse:
    # no pings: an interval no stream lasts (sse-starlette before its fix of issue 206 read ping=0 as
    # "ping without pause", flooding the stream), rather than 0
    return EventSourceResponse(events, sep=framing.sep, ping=framing.ping or _NO_PING)


async def sse_stream(runner: TurnRunner, render: Render, framing: Framing) -> AsyncIterator[dict[str, Any]]:
    """The SSE stream of one turn, rendered by ``render``; leaving it early stops the turn.

    sse-starlette cancels this generator when the client disconnects; closing the
    runner is shielded so the turn is interrupted and recorded (and its concurrency
    slot freed) even then.
    """
    seq = 0
    try:
        yield ACCEPTED
        async for event in runner.events():
            payload = render(runner, event)
            if payload is not None:
                seq += 1
                yield _sse(payload, seq, framing)
    finally:
        with anyio.CancelScope(shield=True):
            await runner.close()


async def refused_stream(data: dict[str, Any], framing: Framing) -> AsyncIterator[dict[str, Any]]:
    """A stream whose turn never started: the one ``error`` event (claude-agent-http answered a 200 stream,
    its chunk with all of its keys)."""
    yield ACCEPTED
    yield _sse((None, {**dict.fromkeys(SEED_KEYS), **data}), 1, framing)
