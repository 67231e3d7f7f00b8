"""claude-code-server's contract: each request as its API_GUIDE.md, test_api.py and examples send it
(``X-API-Key``, ``message``/``user_id``/``session_id``/``response_mode``), against the real app with the
real agent CLI and the fake model; the streams read by a real SSE client."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.fakes.anthropic_api import FakeRequest, Response, Text

from .conftest import KEY, Api, wait_until


def remembering(req: FakeRequest) -> Response:
    return [Text("you said: " + " | ".join(req.user_texts()))]


@pytest.fixture
async def client(api: Api) -> Any:
    api.fake.responder = remembering
    async with api.anonymous(headers={"X-API-Key": KEY}) as authed:  # its header, not a Bearer token
        yield authed


async def sse(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    async with aconnect_sse(client, "POST", url, json=body) as source:
        assert source.response.status_code == 200
        return [(event.event, event.data) async for event in source.aiter_sse()]


async def poll(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        resp = await client.get(f"/task/{task_id}")
        assert resp.status_code == 200
        body = resp.json()
        return body if body["status"] in ("completed", "failed") else None

    return await wait_until(finished, what=f"task {task_id}")


async def test_health_reports_version_and_claude_version(client: httpx.AsyncClient) -> None:
    data = (await client.get("/health")).json()
    assert data["status"] == "healthy" and data["version"]
    assert data["claude_version"].endswith("(Claude Code)")


async def test_documented_requests_in_a_session_life(client: httpx.AsyncClient) -> None:
    # API_GUIDE "1. 同步聊天" and test_api.py's test_sync_chat / test_session_memory
    resp = await client.post("/chat", json={"message": "Remember: my favorite color is blue", "user_id": "test_user"})
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert {"content", "session_id", "claude_session_id", "success", "metadata"} <= data.keys()
    assert data["session_id"] == "user_test_user" and data["success"] is True and data["claude_session_id"]
    assert isinstance(data["metadata"], dict)
    again = await client.post("/chat", json={"message": "What's my favorite color?", "user_id": "test_user"})
    assert "blue" in again.json()["content"].lower()  # the session remembers

    # API_GUIDE "响应模式": "response_mode" in the body of /chat overrides the mode.
    accepted = await client.post("/chat", json={"message": "Hello", "user_id": "test_user", "response_mode": "async"})
    assert accepted.status_code == 200
    body = accepted.json()
    assert body["status"] == "processing" and body["message"] == "Task submitted successfully" and body["task_id"]
    task = await poll(client, body["task_id"])
    assert task["status"] == "completed" and task["result"]["content"].endswith("favorite color? | Hello")
    assert task["result"]["session_id"] == "user_test_user" and task["created_at"] and task["completed_at"]
    events = await sse(client, "/chat", {"message": "Tell me more", "user_id": "test_user", "response_mode": "stream"})
    assert events[-1][0] == "done" and {name for name, _ in events} == {"message", "done"}
    assert "".join(data for name, data in events if name == "message").endswith("| Hello | Tell me more")
    done = json.loads(events[-1][1])
    assert done["session_id"] == "user_test_user" and done["claude_session_id"] == data["claude_session_id"]
    sync = await client.post("/chat", json={"message": "And now?", "user_id": "test_user", "response_mode": "sync"})
    assert sync.json()["content"].endswith("| Tell me more | And now?")

    # "2. 流式聊天" and "3. 异步聊天" (+ test_api.py's polling loop)
    events = await sse(client, "/chat/stream", {"message": "Tell me a story", "user_id": "test_user"})
    assert "".join(data for name, data in events if name == "message").endswith("| Tell me a story")
    assert events[-1][0] == "done" and json.loads(events[-1][1])["session_id"] == "user_test_user"
    accepted = await client.post("/chat/async", json={"message": "Complex task", "user_id": "test_user"})
    assert accepted.status_code == 200 and accepted.json()["status"] == "processing"
    task = await poll(client, accepted.json()["task_id"])
    assert task["result"]["content"].endswith("| Complex task")

    # "4. 获取对话历史" (test_api.py's test_history)
    history = await client.get("/session/user_test_user/history")
    assert history.status_code == 200
    h = history.json()
    assert h["session_id"] == "user_test_user" and h["user_id"] == "test_user" and h["total_messages"] == 14
    assert [m["role"] for m in h["messages"][:2]] == ["user", "assistant"]
    assert h["messages"][0]["content"] == "Remember: my favorite color is blue" and h["messages"][0]["timestamp"]

    # "5. 清除会话"
    cleared = await client.delete("/session/user_test_user")
    assert cleared.status_code == 200 and cleared.json() == {"message": "Session cleared successfully"}
    assert (await client.get("/session/user_test_user/history")).status_code == 404


async def test_errors_carry_detail(api: Api, client: httpx.AsyncClient) -> None:
    async with api.anonymous(headers={"X-API-Key": "not-the-key"}) as wrong:
        denied = await wrong.post("/chat", json={"message": "hi", "user_id": "eve"})
    assert denied.status_code == 401 and "API key" in denied.json()["detail"]
    unknown = await client.get("/task/task-uuid")
    assert unknown.status_code == 404 and unknown.json()["detail"]
    assert api.fake.requests == []


async def test_the_stream_is_framed_as_that_server_framed_it(client: httpx.AsyncClient) -> None:
    """sse-starlette's defaults, as claude-code-server used them: ``\\r\\n`` line ends, no ``id:`` lines."""
    body = {"message": "Tell me a story", "user_id": "bob"}
    async with client.stream("POST", "/chat/stream", json=body) as response:
        assert response.status_code == 200
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    assert raw.startswith(b": accepted\r\n\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    frames = raw.split(b"\r\n\r\n")[1:]
    assert frames[-1] == b""
    events = []
    for frame in frames[:-1]:
        match = re.fullmatch(rb"event: (message|done)\r\ndata: ([^\r\n]*)", frame)
        assert match, frame
        events.append((match[1].decode(), match[2].decode()))
    assert [name for name, _ in events][-1] == "done" and {name for name, _ in events} == {"message", "done"}
    assert "".join(data for name, data in events if name == "message") == "you said: Tell me a story"
    done = json.loads(events[-1][1])
    assert done["session_id"] == "user_bob" and done["claude_session_id"] and done["cost_usd"] > 0
