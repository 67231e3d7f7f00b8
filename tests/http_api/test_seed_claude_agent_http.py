"""claude-agent-http's contract on /api/v1: each request as its documentation shows it (README,
docs/API_EXAMPLES.md, postman_collection.json, its models), sent unchanged, in the documented order of a
session's life; the real agent CLI against the fake model, the stream read by a real SSE client.

That API ran without keys, so these clients talk to a server with ``allow_anonymous``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from core import Agent, ConversationKey, Sections
from core.store.settings import PostgresStoreSettings
from tests.fakes.anthropic_api import Error, FakeAnthropicAPI, FakeRequest, Response, Text, ToolCall

from .conftest import Api, running_api

SESSION_FIELDS = {"session_id", "user_id", "cwd", "created_at", "last_active_at", "message_count", "status", "metadata"}
JSON = {"Content-Type": "application/json"}
SEED_TYPES = {"text_delta", "tool_use", "done", "error"}  # its StreamChunk's types


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


async def raw_stream(client: httpx.AsyncClient, body: dict[str, Any]) -> bytes:
    """The stream's bytes as they come off the wire."""
    headers = {**JSON, "Accept": "text/event-stream"}
    async with client.stream("POST", "/api/v1/chat/stream", json=body, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return b"".join([chunk async for chunk in response.aiter_raw()])


def seed_chunks(raw: bytes) -> list[dict[str, Any]]:
    """The events of a stream framed as claude-agent-http framed it, or an assertion error: the sign-of-life
    comment first, then nothing but ``data: {json}\\n\\n``, ``\\n`` line ends only (no ``\\r``, no ``id:``,
    no ``event:``, no other comment)."""
    assert raw.startswith(b": accepted\n\n") and b"\r" not in raw
    frames = raw[len(b": accepted\n\n") :].split(b"\n\n")
    assert frames[-1] == b""  # the stream ends with a whole frame
    chunks = []
    for frame in frames[:-1]:
        assert re.fullmatch(rb"data: \{[^\n]*\}", frame), frame
        chunks.append(json.loads(frame[len(b"data: ") :]))
    return chunks


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
    # ccbridge's other events (tool_result...) are not sent to a client that did not ask for them, and done
    # carries no text: a client adding up every chunk's text prints the reply once.
    assert {name for name, _ in events} == {"message"}
    assert seed_events[-1]["text"] is None and seed_events[-1]["session_id"] == sid
    # every chunk has all of the seed's StreamChunk keys, null when unset, as its server wrote them
    assert all({"type", "text", "tool_name", "tool_input", "error"} <= d.keys() for d in seed_events)
    assert tool_use["text"] is None and seed_events[0]["tool_name"] is None
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
    # The model API is overloaded once; Claude Code retries, then answers: the seed's client sees its types only.
    api.fake.enqueue(Error(529, "overloaded_error", "Overloaded", retry_after=0), [Text("after the retry")])
    events = await stream(client, {"session_id": sid, "message": "busy model"})
    assert {name for name, _ in events} == {"message"} and {d["type"] for _, d in events} <= SEED_TYPES
    assert [d["type"] for _, d in events][-1] == "done"
    assert "".join(d["text"] for _, d in events if d["type"] == "text_delta") == "after the retry"
    # A client asking for approvals (ccbridge's) gets ccbridge's named events too: here a retry.
    api.fake.enqueue(Error(529, "overloaded_error", "Overloaded", retry_after=0), [Text("again")])
    events = await stream(client, {"session_id": sid, "message": "busy again", "approval_mode": "ask"})
    retries = [data for name, data in events if name == "retry"]
    assert len(retries) == 1 and retries[0]["type"] == "retry"
    assert retries[0]["attempt"] == 1 and retries[0]["status"] == 529 and "overloaded" in retries[0]["message"]
    assert [d["type"] for name, d in events if name == "message"][-1] == "done"
    # A failing turn ends with {"type": "error", "error": "..."}: no text (streamed already), its cost.
    api.fake.enqueue(
        [Text("half an answer"), ToolCall("Glob", {"pattern": "*.md"})],
        Error(500, "api_error", "the fake model refuses", should_retry=False),
    )
    failed = await stream(client, {"session_id": sid, "message": "fail now"})
    assert {name for name, _ in failed} == {"message"} and [d["type"] for _, d in failed][-1] == "error"
    error = failed[-1][1]
    assert "the fake model refuses" in error["error"] and error["code"] == "agent_error"
    assert error["text"] is None and error["cost_usd"] > 0  # the first model call of the turn was paid for
    assert "".join(d["text"] for _, d in failed if d["type"] == "text_delta") == "half an answer"
    assert "done" not in [d["type"] for _, d in failed]


async def test_the_stream_is_framed_as_the_seed_wrote_it(seed: tuple[Api, httpx.AsyncClient]) -> None:
    api, client = seed
    sid = (await client.post("/api/v1/sessions", json={"user_id": "framer"})).json()["session_id"]
    cwd = (await client.get(f"/api/v1/sessions/{sid}")).json()["cwd"]
    api.fake.enqueue(
        [Text("line one\nline two", chunks=2), ToolCall("Write", {"file_path": f"{cwd}/a.txt", "content": "x"})],
        Text("written"),
    )
    chunks = seed_chunks(await raw_stream(client, {"session_id": sid, "message": "write a.txt"}))
    assert [c["type"] for c in chunks if c["type"] != "text_delta"] == ["tool_use", "done"]  # no tool_result
    assert chunks[-1]["type"] == "done" and chunks[-1]["text"] is None and chunks[-1]["cost_usd"] > 0
    streamed = "".join(c["text"] for c in chunks if c["type"] == "text_delta")
    assert streamed == "line one\nline twowritten"  # a newline in the text stays inside its JSON line


async def test_tools_needing_approval_are_denied_at_once_unless_the_client_asks(
    seed: tuple[Api, httpx.AsyncClient],
) -> None:
    api, client = seed
    root = api.agent.workspaces.root(ConversationKey("api", "careful"))
    sid = (await client.post("/api/v1/sessions", json={"user_id": "careful"})).json()["session_id"]
    bash = {"command": "touch ran.txt", "description": "touch"}
    api.fake.enqueue(ToolCall("Bash", bash), Text("could not run it"))
    started = time.monotonic()
    chunks = seed_chunks(await raw_stream(client, {"session_id": sid, "message": "run it"}))
    assert time.monotonic() - started < 20  # not held until agent.approval_timeout (30 s here)
    assert [c["type"] for c in chunks if c["type"] != "text_delta"] == ["tool_use", "done"]
    assert chunks[-1]["tool_calls"][0]["name"] == "Bash" and chunks[-1]["tool_calls"][0]["is_error"] is True
    assert "approval_mode is 'deny'" in str(api.fake.requests[-1].tool_results()[0]["content"])
    assert not (root / "ran.txt").exists() and api.agent.approvals.pending(key=ConversationKey("api", "careful")) == []
    # The sync route likewise.
    api.fake.enqueue(ToolCall("Bash", bash), Text("could not run it either"))
    sync = await client.post("/api/v1/chat", json={"session_id": sid, "message": "run it now"})
    assert sync.status_code == 200 and [(c["name"], c["is_error"]) for c in sync.json()["tool_calls"]] == [
        ("Bash", True)
    ]
    # A client that asks for approvals is asked (an approval_request event), and its answer runs the tool.
    api.fake.enqueue(ToolCall("Bash", bash), Text("ran it"))
    answers = []
    headers = {**JSON, "Accept": "text/event-stream"}
    body = {"session_id": sid, "message": "run it, ask me", "approval_mode": "ask"}
    async with aconnect_sse(client, "POST", "/api/v1/chat/stream", json=body, headers=headers) as source:
        async for sse in source.aiter_sse():
            if sse.event == "approval_request":
                answer = await client.post(f"/api/v1/approvals/{sse.json()['id']}", json={"decision": "allow_once"})
                answers.append(answer.status_code)
    assert answers == [200] and (root / "ran.txt").exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "../invalid"}, "user_id"),  # docs/API_EXAMPLES.md's example
        ({"user_id": "alice smith"}, "user_id"),
        ({"user_id": "José"}, "user_id"),
        ({"user_id": "a.b"}, "user_id"),
        ({"user_id": "x" * 65}, "user_id"),
        ({"user_id": "ok", "subdir": "../escape"}, "subdir"),
        ({"user_id": "ok", "subdir": "a..b"}, "subdir"),
        ({"user_id": "ok", "subdir": "/etc"}, "subdir"),
        ({"user_id": "ok", "subdir": "d" * 201}, "subdir"),
    ],
)
async def test_session_creation_refuses_what_the_seed_refused_with_its_422(
    seed: tuple[Api, httpx.AsyncClient], body: dict[str, Any], field: str
) -> None:
    api, client = seed
    invalid = await client.post("/api/v1/sessions", json=body, headers=JSON)
    assert invalid.status_code == 422, invalid.text
    detail = invalid.json()["detail"]
    assert [d["loc"] for d in detail] == [["body", field]] and detail[0]["msg"]
    if field == "user_id" and len(body["user_id"]) <= 64:
        assert detail[0]["type"] == "value_error" and "alphanumeric" in detail[0]["msg"]
    if field == "subdir" and len(body["subdir"]) <= 200:
        assert detail[0]["type"] == "value_error"
    assert (await client.get("/api/v1/sessions")).json() == []
    # What it accepted is accepted.
    for good in ({"user_id": "A-z_09"}, {"user_id": "x" * 64, "subdir": "proj/sub-dir"}):
        assert (await client.post("/api/v1/sessions", json=good)).status_code == 201
    # /api/v2 keeps ccbridge's wider user ids.
    assert (await client.post("/api/v2/sessions", json={"user_id": "alice smith"})).status_code == 201
    assert api.fake.requests == []


async def test_an_unknown_session_streams_one_error_chunk(seed: tuple[Api, httpx.AsyncClient]) -> None:
    api, client = seed
    chunks = seed_chunks(await raw_stream(client, {"session_id": "non-existent-id", "message": "hello"}))
    assert len(chunks) == 1 and chunks[0]["type"] == "error"
    assert chunks[0]["error"] == "Session not found or expired" and chunks[0]["code"] == "session_not_found"
    assert chunks[0]["text"] is None and chunks[0]["tool_name"] is None
    # The sync route answers its 404, as the seed's did.
    sync = await client.post("/api/v1/chat", json={"session_id": "non-existent-id", "message": "hello"})
    assert sync.status_code == 404 and sync.json()["detail"] == "Session not found or expired"
    assert api.fake.requests == [] and api.ctx.slots.in_use == 0


async def test_health_says_postgresql_for_a_postgres_store(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, postgres_dsn: str
) -> None:
    sections = make_sections().model_copy(update={"store": PostgresStoreSettings(dsn=postgres_dsn)})
    async with Agent(sections) as agent, running_api(agent, fake_api, api_keys=[], allow_anonymous=True) as api:
        async with api.anonymous() as client:
            health = (await client.get("/health")).json()
    assert health["status"] == "healthy" and health["storage_type"] == "postgresql"
