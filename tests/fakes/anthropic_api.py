"""A scripted fake of the Anthropic Messages API, served on 127.0.0.1.

The real Claude Code CLI (bundled with claude-agent-sdk) is pointed at it with
``ANTHROPIC_BASE_URL``. It answers ``POST /v1/messages`` with server-sent events
exactly as the real API does (``message_start``, ``content_block_*``,
``message_delta``, ``message_stop``), or with an HTTP error.

Scripting: ``fake.enqueue(...)`` queues one response per future request (FIFO);
each response is a list of steps (:class:`Text`, :class:`ToolCall`,
:class:`Error`, :class:`Hang`). When the queue is empty the default responder
answers deterministically from the request itself:

* a request whose last message carries a tool result -> ``"tool result: <content>"``
* otherwise -> ``"echo: <last user text>"``

so concurrent conversations each get their own answer without any ordering.
``fake.rules`` maps a substring of the last user text to a response, for tests
that need a specific answer whatever the order of requests.

It is a :class:`~tests.fakes.platform_server.PlatformServer`: the base runs the
server and dispatches each POSTed path (``v1/messages``, ``v1/messages/count_tokens``)
to its ``m_<name>`` handler; anything else is a 404 ``not_found_error`` (logged as
``unknown``). Every request is in the base's call log (``fake.calls``, method = the
path); ``fake.requests`` lists the Messages API requests among them as
:class:`FakeRequest` s. Besides scripted :class:`Error` steps, the base's failure
injection works too: ``fake.fail("v1/messages", Failure(529, code="overloaded_error"))``
answers the next request with that error (``code``: the error type) whatever is queued.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.platform_server import Call, Failure, PlatformServer, UnknownMethod

__all__ = ["Error", "FakeAnthropicAPI", "Failure", "FakeRequest", "Hang", "Text", "ToolCall", "default_response"]

MESSAGES = "v1/messages"  # the method name of a Messages API request in the call log


@dataclass
class Text:
    """Stream ``text`` as ``chunks`` text deltas, ``delay`` seconds apart."""

    text: str
    chunks: int = 3
    delay: float = 0.0


@dataclass
class ToolCall:
    """A ``tool_use`` block; the response ends with ``stop_reason: tool_use``."""

    name: str
    input: dict[str, Any]
    id: str | None = None


@dataclass
class Error:
    """An HTTP error response with the API's JSON error body."""

    status: int
    type: str = "api_error"
    message: str = "fake error"
    retry_after: float | None = 0
    should_retry: bool = True


@dataclass
class Hang:
    """Stream ``text`` first, then keep the stream open (pinging) for ``seconds``."""

    text: str = ""
    seconds: float = 120.0


Step = Text | ToolCall | Error | Hang
Response = list[Step]


@dataclass
class FakeRequest(Call):
    """A Messages API request, as logged: ``body`` is the call's params."""

    headers: dict[str, str] = field(default_factory=dict)

    @property
    def body(self) -> dict[str, Any]:
        return self.params

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])

    def user_texts(self) -> list[str]:
        """Every user-typed text block, in order (system reminders left out)."""
        out: list[str] = []
        for msg in self.messages:
            if msg.get("role") != "user":
                continue
            for block in _blocks(msg):
                text = block.get("text", "") if block.get("type") == "text" else ""
                if text and not text.lstrip().startswith("<system-reminder>"):
                    out.append(text)
        return out

    def last_user_text(self) -> str:
        texts = self.user_texts()
        return texts[-1] if texts else ""

    def tool_results(self) -> list[dict[str, Any]]:
        if not self.messages:
            return []
        return [b for b in _blocks(self.messages[-1]) if b.get("type") == "tool_result"]

    def images(self) -> list[dict[str, Any]]:
        return [
            b for msg in self.messages if msg.get("role") == "user" for b in _blocks(msg) if b.get("type") == "image"
        ]


def _blocks(msg: dict[str, Any]) -> list[dict[str, Any]]:
    content = msg.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def _tool_result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        return " ".join(c.get("text", "") for c in content if isinstance(c, dict))
    return str(content or "")


def default_response(req: FakeRequest) -> Response:
    results = req.tool_results()
    if results:
        return [Text("tool result: " + _tool_result_text(results[0]))]
    return [Text("echo: " + req.last_user_text())]


class FakeAnthropicAPI(PlatformServer):
    """The scripted Messages API (see the module docstring)."""

    def __init__(
        self,
        *,
        rules: dict[str, Response] | None = None,
        responder: Callable[[FakeRequest], Response] = default_response,
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.rules: dict[str, Response] = dict(rules or {})
        self.responder = responder
        self._queue: deque[Response] = deque()
        self._ids = itertools.count(1)
        self.request_seen = asyncio.Event()

    # -- scripting -----------------------------------------------------------
    def enqueue(self, *responses: Step | Response) -> None:
        """Queue responses; a bare step is a one-step response."""
        for resp in responses:
            self._queue.append(list(resp) if isinstance(resp, list) else [resp])

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def requests(self) -> list[FakeRequest]:
        """Every Messages API request so far, oldest first."""
        return [c for c in self.calls if isinstance(c, FakeRequest)]

    @property
    def base_url(self) -> str:
        return self.url

    def env(self) -> dict[str, str]:
        """Environment that points the CLI at this fake."""
        return {
            "ANTHROPIC_BASE_URL": self.base_url,
            "ANTHROPIC_API_KEY": "sk-ant-fake-key",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
        }

    # -- server --------------------------------------------------------------
    def setup_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._serve)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        try:
            if request.method != "POST":
                raise UnknownMethod(request.path)
            return await self.dispatch(request.path, request)
        except UnknownMethod:
            self.record("unknown", {"method": request.method, "path": request.path})
            return web.json_response(
                {"type": "error", "error": {"type": "not_found_error", "message": request.path}}, status=404
            )

    def _next_response(self, req: FakeRequest) -> Response:
        if self._queue:
            return self._queue.popleft()
        last = req.last_user_text()
        if not req.tool_results():
            for needle, resp in self.rules.items():
                if needle in last:
                    return list(resp)
        return self.responder(req)

    async def m_v1_messages_count_tokens(self, request: web.Request) -> web.Response:
        self.record("v1/messages/count_tokens")
        return web.json_response({"input_tokens": 10})

    async def m_v1_messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        req = self.log(FakeRequest(MESSAGES, body, headers=dict(request.headers)))
        self.request_seen.set()
        failure = self.take_failure(MESSAGES, body)
        if failure is not None:
            return self._error(_failure_error(failure))
        steps = self._next_response(req)
        first = steps[0] if steps else None
        if isinstance(first, Error):
            return self._error(first)
        if not body.get("stream"):
            return self._json_message(body, steps)
        return await self._stream(request, body, steps)

    def _error(self, err: Error) -> web.Response:
        headers = {"x-should-retry": "true" if err.should_retry else "false"}
        if err.retry_after is not None:
            headers["retry-after"] = str(err.retry_after)
        payload = {"type": "error", "error": {"type": err.type, "message": err.message}}
        return web.json_response(payload, status=err.status, headers=headers)

    def _json_message(self, body: dict[str, Any], steps: Response) -> web.Response:
        content: list[dict[str, Any]] = []
        for step in steps:
            if isinstance(step, (Text, Hang)) and step.text:
                content.append({"type": "text", "text": step.text})
            elif isinstance(step, ToolCall):
                content.append(
                    {"type": "tool_use", "id": step.id or self._tool_id(), "name": step.name, "input": step.input}
                )
        stop = "tool_use" if any(isinstance(s, ToolCall) for s in steps) else "end_turn"
        return web.json_response(
            {
                "id": f"msg_fake_{next(self._ids)}",
                "type": "message",
                "role": "assistant",
                "model": body.get("model", "claude-fake"),
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 5},
            }
        )

    def _tool_id(self) -> str:
        return f"toolu_fake_{next(self._ids)}"

    async def _stream(self, request: web.Request, body: dict[str, Any], steps: Response) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)

        async def send(event: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

        await send(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_fake_{next(self._ids)}",
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model", "claude-fake"),
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 10, "output_tokens": 1},
                },
            },
        )
        stop_reason = "end_turn"
        try:
            for index, step in enumerate(steps):
                if isinstance(step, (Text, Hang)):
                    await send(
                        "content_block_start",
                        {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                    )
                    for piece in _split(step.text, step.chunks if isinstance(step, Text) else 1):
                        if isinstance(step, Text) and step.delay:
                            await asyncio.sleep(step.delay)
                        await send(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": index,
                                "delta": {"type": "text_delta", "text": piece},
                            },
                        )
                    if isinstance(step, Hang):
                        await _ping_for(send, step.seconds)
                    await send("content_block_stop", {"type": "content_block_stop", "index": index})
                elif isinstance(step, ToolCall):
                    stop_reason = "tool_use"
                    await send(
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": index,
                            "content_block": {
                                "type": "tool_use",
                                "id": step.id or self._tool_id(),
                                "name": step.name,
                                "input": {},
                            },
                        },
                    )
                    await send(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": json.dumps(step.input)},
                        },
                    )
                    await send("content_block_stop", {"type": "content_block_stop", "index": index})
            await send(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": 5},
                },
            )
            await send("message_stop", {"type": "message_stop"})
        except (ConnectionResetError, asyncio.CancelledError):
            # The client went away (an interrupted turn, a killed CLI).
            return resp
        await resp.write_eof()
        return resp


def _failure_error(failure: Failure) -> Error:
    """The API error an injected :class:`Failure` stands for (``code``: the error type)."""
    kind = failure.code or {429: "rate_limit_error", 529: "overloaded_error"}.get(failure.status, "api_error")
    retry_after = 0 if failure.retry_after is None else failure.retry_after
    return Error(failure.status, str(kind), failure.description, retry_after, failure.extra.get("should_retry", True))


async def _ping_for(send: Callable[[str, dict[str, Any]], Any], seconds: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        await send("ping", {"type": "ping"})
        await asyncio.sleep(0.5)


def _split(text: str, parts: int) -> list[str]:
    if not text:
        return []
    parts = max(1, min(parts, len(text)))
    size = -(-len(text) // parts)
    return [text[i : i + size] for i in range(0, len(text), size)]
