"""Every SSE stream opens with a comment (``: accepted``) before any event: a sign of life that SSE
clients skip, so the seed APIs' streams read exactly as before."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from httpx_sse import aconnect_sse

from .conftest import Api

STREAMS = [  # (url, body, what a real SSE client sees last: the event's name, its data's "type")
    ("/api/v1/chat/stream", {"text": "hello", "user_id": "u1"}, ("message", "done")),
    ("/api/v2/chat/stream", {"text": "hello", "user_id": "u2"}, ("done", "done")),
    ("/chat/stream", {"message": "hello", "user_id": "u3"}, ("done", None)),  # claude-code-server's
]


async def raw_lines(api: Api, url: str, body: dict[str, Any]) -> list[str]:
    async with api.client.stream("POST", url, json=body) as response:
        assert response.status_code == 200
        return [line async for line in response.aiter_lines()]


async def sse_events(api: Api, url: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    async with aconnect_sse(api.client, "POST", url, json=body) as source:
        assert source.response.status_code == 200
        return [(sse.event, sse.data) async for sse in source.aiter_sse()]


@pytest.mark.parametrize(("url", "body", "last"), STREAMS)
async def test_the_stream_opens_with_a_comment_that_sse_clients_skip(
    api: Api, url: str, body: dict[str, Any], last: tuple[str, str | None]
) -> None:
    lines = await raw_lines(api, url, body)
    assert lines[:2] == [": accepted", ""]  # a comment, then the blank line ending it
    assert lines.count(": accepted") == 1
    # Only /api/v2 numbers its events; the seeds' streams had no "id:" lines.
    assert any(line.startswith("id: ") for line in lines) == url.startswith("/api/v2/")
    events = await sse_events(api, url, body)
    assert all(data for _, data in events)  # the comment is no event: every event carries data
    name, data = events[-1]
    assert (name, json.loads(data).get("type")) == last


@pytest.mark.parametrize(("url", "body", "last"), STREAMS[:2])
async def test_the_comment_comes_before_claude_code_starts(
    api: Api, url: str, body: dict[str, Any], last: tuple[str, str | None]
) -> None:
    runtime = api.agent.runtime
    connect, started, go = runtime._connect, asyncio.Event(), asyncio.Event()

    async def held(warm: Any, request: Any) -> None:  # the CLI's start waits until the comment was read
        started.set()
        await go.wait()
        await connect(warm, request)

    runtime._connect = held  # type: ignore[method-assign]
    async with api.client.stream("POST", url, json=body) as response:
        lines = response.aiter_lines()
        # read while Claude Code's start is held: a stream that waited for the CLI would time out here
        assert await asyncio.wait_for(anext(lines), 30) == ": accepted"
        await asyncio.wait_for(started.wait(), 30)  # the start was indeed under way (held)
        go.set()
        rest = [line async for line in lines]
    assert any(line.startswith("data:") for line in rest)
