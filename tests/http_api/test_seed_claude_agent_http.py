"""claude-agent-http's contract on /api/v1: each request as its documentation shows it (README,
docs/API_EXAMPLES.md, postman_collection.json, its models), sent unchanged, in the documented order of a
session's life; the real agent CLI against the fake model, the stream read by a real SSE client.

That API ran without keys, so these clients talk to a server with ``allow_anonymous``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from core import Agent
from tests.fakes.anthropic_api import Error, FakeAnthropicAPI, FakeRequest, Response, Text, ToolCall

from .conftest import Api, running_api

SESSION_FIELDS = {"session_id", "user_id", "cwd", "created_at", "last_active_at", "message_count", "status", "metadata"}
JSON = {"Content-Type": "application/json"}


def remembering(req: FakeRequest) -> Response:
    """A model that shows what it remembers: every user message of the conversation so far."""
    return [Text("you said: " + " | ".join(req.user_texts()))]


@pytest.fixture
async def seed(agent: Agent, fake_api: FakeAnthropicAPI) -> AsyncIterator[tuple[Api, httpx.AsyncClient]]:
    fake_api.responder = remembering
    async with running_api(agent, fake_api, api_keys=[], allow_anonymous=True) as api:
        async with api.anonymous() as client:  # no key, as that API's clients send none
            yield api, client


def is_timestamp(value: Any) -> bool:
    return isinstance(value, str) and isinstance(datetime.fromisoformat(value), datetime)


async def stream(client: httpx.AsyncClient, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Postman's 'Send Message (Streaming)': read by an SSE client, as (event name, data)."""
    events = []
    headers = {**JSON, "Accept": "text/event-stream"}
    async with aconnect_sse(client, "POST", "/api/v1/chat/stream", json=body, headers=headers) as source:
        assert source.response.status_code == 200
        async for sse in source.aiter_sse():
            events.append((sse.event, sse.json()))
    return events


async def test_a_session_life_as_documented(seed: tuple[Api, httpx.AsyncClient]) -> None:
    api, client = seed
    # 1. health check
    health = await client.get("/health")
    assert health.status_code == 200
    h = health.json()
    assert h["status"] == "healthy" and isinstance(h["version"], str) and h["version"]
    assert isinstance(h["active_sessions"], int) and h["storage_type"] == "sqlite"
    assert isinstance(h["uptime_seconds"], float) and h["uptime_seconds"] >= 0
    root = (await client.get("/")).json()
    assert root["docs"] == "/docs" and root["health"] == "/health" and root["name"] and root["version"]

    # 2. create a session (API_EXAMPLES' full flow: user_id + subdir; then with metadata)
    created = await client.post("/api/v1/sessions", json={"user_id": "demo_user", "subdir": "demo-project"})
    assert created.status_code == 201, created.text
    session = created.json()
    assert SESSION_FIELDS <= session.keys()
    sid = session["session_id"]
    assert session["user_id"] == "demo_user" and session["status"] == "active" and session["message_count"] == 0
    assert session["cwd"].endswith("/demo_user/demo-project") and session["cwd"].startswith("/")
    assert is_timestamp(session["created_at"]) and is_timestamp(session["last_active_at"])
    assert session["metadata"] == {}
    with_meta = await client.post(
        "/api/v1/sessions",
        json={"user_id": "zhangsan", "subdir": "my-project", "metadata": {"env": "production", "app_name": "myapp"}},
    )
    assert with_meta.status_code == 201 and with_meta.json()["metadata"] == {"env": "production", "app_name": "myapp"}

    # 3. send a message; 4. continue the conversation: it remembers
    first = await client.post("/api/v1/chat", json={"session_id": sid, "message": "请列出当前目录的文件"}, headers=JSON)
    assert first.status_code == 200, first.text
    reply = first.json()
    assert reply["session_id"] == sid and reply["tool_calls"] == [] and is_timestamp(reply["timestamp"])
    assert reply["text"] == "you said: 请列出当前目录的文件"
    second = await client.post("/api/v1/chat", json={"session_id": sid, "message": "创建一个 README.md 文件"})
    assert second.json()["text"] == "you said: 请列出当前目录的文件 | 创建一个 README.md 文件"

    # 5. the session's state
    info = (await client.get(f"/api/v1/sessions/{sid}")).json()
    assert SESSION_FIELDS <= info.keys() and info["message_count"] == 2 and info["session_id"] == sid

    # streaming: data lines of {"type": ...}; a tool_use with tool_name/tool_input; done last
    cwd = session["cwd"]
    api.fake.enqueue(
        [Text("好的，我来帮你写"), ToolCall("Write", {"file_path": f"{cwd}/hello.py", "content": "print('Hello')"})],
        Text("我已经创建了 hello.py"),
    )
    events = await stream(client, {"session_id": sid, "message": "写一个 Python hello world 程序"})
    seed_events = [data for name, data in events if name == "message"]  # unnamed SSE events
    assert [d["type"] for d in seed_events][0] == "text_delta" and seed_events[-1]["type"] == "done"
    assert {d["type"] for d in seed_events} == {"text_delta", "tool_use", "done"}
    tool_use = next(d for d in seed_events if d["type"] == "tool_use")
    assert tool_use["tool_name"] == "Write" and tool_use["tool_input"]["content"] == "print('Hello')"
    text = "".join(d["text"] for d in seed_events if d["type"] == "text_delta")
    assert "好的，我来帮你写" in text and "我已经创建了 hello.py" in text
    # ccbridge's other events are named, so a client of the "message" events never sees them.
    assert {name for name, _ in events} == {"message", "tool_result"}
    assert (api.agent.workspaces.base_dir / "api/demo_user/demo-project/hello.py").read_text() == "print('Hello')"

    # listing: every session id, or one user's
    everyone = await client.get("/api/v1/sessions")
    assert everyone.status_code == 200 and {sid, with_meta.json()["session_id"]} <= set(everyone.json())
    assert (await client.get("/api/v1/sessions", params={"user_id": "demo_user"})).json() == [sid]

    # resume, then the next message continues the same transcript
    resumed = await client.post(f"/api/v1/sessions/{sid}/resume")
    assert resumed.status_code == 200 and SESSION_FIELDS <= resumed.json().keys()
    assert resumed.json()["session_id"] == sid and resumed.json()["status"] == "active"
    after = await client.post("/api/v1/chat", json={"session_id": sid, "message": "还记得吗", "timeout": 120})
    assert after.json()["text"].startswith("you said: 请列出当前目录的文件 | 创建一个 README.md 文件")

    # 6. delete: 204; then it is gone, with the documented errors
    deleted = await client.delete(f"/api/v1/sessions/{sid}")
    assert deleted.status_code == 204 and deleted.content == b""
    gone = await client.get(f"/api/v1/sessions/{sid}")
    assert gone.status_code == 404 and gone.json()["detail"] == "Session not found"
    chat_gone = await client.post("/api/v1/chat", json={"session_id": sid, "message": "hello"})
    assert chat_gone.status_code == 404 and chat_gone.json()["detail"] == "Session not found or expired"
    assert (await client.post(f"/api/v1/sessions/{sid}/resume")).json()["detail"] == "Session not found or expired"
    assert (await client.delete(f"/api/v1/sessions/{sid}")).json()["detail"] == "Session not found"
    assert sid not in (await client.get("/api/v1/sessions")).json()


async def test_documented_errors_and_minimal_requests(seed: tuple[Api, httpx.AsyncClient]) -> None:
    api, client = seed
    missing = await client.get("/api/v1/sessions/non-existent-id")
    assert missing.status_code == 404 and missing.json()["detail"] == "Session not found"
    # Validation errors: FastAPI's {"detail": [{"type", "loc", "msg"}]}.
    for body, loc in (({}, ["body", "user_id"]), ({"user_id": ""}, ["body", "user_id"])):
        invalid = await client.post("/api/v1/sessions", json=body)
        assert invalid.status_code == 422
        detail = invalid.json()["detail"]
        assert isinstance(detail, list) and detail[0]["loc"] == loc and detail[0]["type"] and detail[0]["msg"]
    empty = await client.post("/api/v1/chat", json={"session_id": "a61c5358", "message": "   "})
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body", "message"]
    # Postman's "Create Session (user_id only)", then jq -r '.session_id' and chat with it.
    sid = (await client.post("/api/v1/sessions", json={"user_id": "testuser"})).json()["session_id"]
    assert (await client.get("/api/v1/sessions", params={"user_id": "testuser"})).json() == [sid]
    assert api.fake.requests == []  # nothing above ran a turn


async def test_stream_errors_and_retries_keep_the_documented_shapes(seed: tuple[Api, httpx.AsyncClient]) -> None:
    api, client = seed
    sid = (await client.post("/api/v1/sessions", json={"user_id": "streamer"})).json()["session_id"]
    # The model API is overloaded once; Claude Code retries (a named "retry" event), then answers.
    api.fake.enqueue(Error(529, "overloaded_error", "Overloaded", retry_after=0), [Text("after the retry")])
    events = await stream(client, {"session_id": sid, "message": "busy model"})
    retries = [data for name, data in events if name == "retry"]
    assert len(retries) == 1 and retries[0]["type"] == "retry"
    assert retries[0]["attempt"] == 1 and retries[0]["status"] == 529 and "overloaded" in retries[0]["message"]
    seed_events = [data for name, data in events if name == "message"]
    assert [d["type"] for d in seed_events][-1] == "done"
    assert "".join(d["text"] for d in seed_events if d["type"] == "text_delta") == "after the retry"
    # A failing turn ends with {"type": "error", "error": "..."}.
    api.fake.rules["fail now"] = [Error(500, "api_error", "the fake model refuses", should_retry=False)]
    failed = await stream(client, {"session_id": sid, "message": "fail now"})
    assert failed[-1][0] == "message" and failed[-1][1]["type"] == "error"
    assert "the fake model refuses" in failed[-1][1]["error"] and failed[-1][1]["code"] == "agent_error"
    assert "done" not in [d["type"] for _, d in failed]
