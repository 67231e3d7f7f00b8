"""Chat in sync and stream mode (SSE parsed by httpx-sse), approvals, and the library parity."""

from __future__ import annotations

from typing import Any

import httpx
from httpx_sse import aconnect_sse

from core import ApprovalRequest, ConversationKey, Decision
from tests.fakes.anthropic_api import Error, Hang, Text, ToolCall

from .conftest import Api, wait_until


async def read_stream(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], on_event: Any = None
) -> list[tuple[str, dict[str, Any]]]:
    """Every event of an SSE response as (name, JSON data); ``on_event`` sees each as it arrives."""
    events: list[tuple[str, dict[str, Any]]] = []
    async with aconnect_sse(client, "POST", url, json=body) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async for sse in source.aiter_sse():
            events.append((sse.event, sse.json()))
            if on_event is not None:
                await on_event(sse.event, sse.json())
    return events


async def test_sync_chat_default_session_by_user_id(api: Api) -> None:
    first = await api.client.post("/api/v1/chat", json={"text": "hi there", "user_id": "u1"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["text"] == "echo: hi there" and body["user_id"] == "u1"
    assert body["tool_calls"] == [] and body["cost_usd"] is not None and body["timestamp"]
    assert body["usage"] and body["duration_ms"] is not None and body["interrupted"] is False
    second = await api.client.post("/api/v1/chat", json={"text": "again", "user_id": "u1"})
    assert second.json()["session_id"] == body["session_id"]
    listed = (await api.client.get("/api/v1/sessions", params={"user_id": "u1"})).json()["sessions"]
    assert [(s["id"], s["default"], s["message_count"]) for s in listed] == [(body["session_id"], True, 2)]


async def test_sync_mode_denies_tools_that_need_approval(api: Api) -> None:
    root = api.agent.workspaces.root(ConversationKey("api", "u2"))
    api.fake.enqueue(ToolCall("Bash", {"command": "touch should-not-exist.txt", "description": "try"}))
    resp = await api.client.post("/api/v1/chat", json={"text": "run it", "user_id": "u2"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [(c["name"], c["is_error"]) for c in body["tool_calls"]] == [("Bash", True)]
    assert "approval_mode is 'deny'" in str(api.fake.requests[-1].tool_results()[0]["content"])
    assert not (root / "should-not-exist.txt").exists()


async def test_stream_events_text_tools_and_done(api: Api) -> None:
    root = api.agent.workspaces.root(ConversationKey("api", "u3"))
    api.fake.enqueue(
        [Text("Writing."), ToolCall("Write", {"file_path": str(root / "note.txt"), "content": "hello"})],
        Text("All done here", chunks=3),
    )
    events = await read_stream(api.client, "/api/v1/chat/stream", {"text": "write a note", "user_id": "u3"})
    names = [name for name, _ in events]
    assert names[0] == "text_delta" and names[-1] == "done"
    assert "tool_use" in names and "tool_result" in names
    assert names.index("tool_use") < names.index("tool_result") < names.index("done")
    use = next(data for name, data in events if name == "tool_use")
    assert use["name"] == "Write" and use["input"]["content"] == "hello"
    result = next(data for name, data in events if name == "tool_result")
    assert result["name"] == "Write" and result["is_error"] is False and result["tool_use_id"] == use["id"]
    text = "".join(data["text"] for name, data in events if name == "text_delta")
    assert "All done here" in text
    done = events[-1][1]
    assert done["text"].endswith("All done here") and done["session_id"] and done["cost_usd"] is not None
    assert [c["name"] for c in done["tool_calls"]] == ["Write"]
    assert (root / "note.txt").read_text() == "hello"


async def test_stream_approval_request_answered_over_http(api: Api) -> None:
    api.fake.enqueue(ToolCall("Bash", {"command": "echo approved-$((40+2)) | tee out.txt", "description": "say it"}))
    answers: list[httpx.Response] = []

    async def approve(name: str, data: dict[str, Any]) -> None:
        if name == "approval_request":
            assert data["tool"] == "Bash" and "approved" in data["summary"] and data["requested_by"] == "u4"
            pending = (await api.client.get("/api/v1/approvals", params={"user_id": "u4"})).json()["approvals"]
            assert [p["id"] for p in pending] == [data["id"]]
            answers.append(await api.client.post(f"/api/v1/approvals/{data['id']}", json={"decision": "allow_once"}))

    events = await read_stream(api.client, "/api/v1/chat/stream", {"text": "please run", "user_id": "u4"}, approve)
    assert len(answers) == 1 and answers[0].status_code == 200
    assert answers[0].json()["decision"] == "allow_once" and answers[0].json()["decided_by"] == "u4"
    names = [name for name, _ in events]
    assert names.index("approval_request") < names.index("approval_resolved") < names.index("tool_result")
    result = next(data for name, data in events if name == "tool_result")
    assert result["is_error"] is False
    assert events[-1][0] == "done" and "approved-42" in events[-1][1]["text"]
    again = await api.client.post(
        f"/api/v1/approvals/{events[names.index('approval_request')][1]['id']}", json={"decision": "deny"}
    )
    assert again.status_code == 404 and again.json()["error"]["code"] == "approval_not_found"


async def test_approvals_of_other_platforms_are_not_listed_or_answerable(api: Api) -> None:
    api.fake.enqueue(ToolCall("Bash", {"command": "touch from-telegram.txt", "description": "on telegram"}))
    seen: list[Any] = []

    async def on_approval(request: ApprovalRequest) -> Decision:
        # Pending right now, for user "u10" -- but on telegram, not on the API.
        assert api.agent.approvals.get(request.id) is not None and request.requested_by == "u10"
        listed = await api.client.get("/api/v1/approvals", params={"user_id": "u10"})
        seen.append((listed.status_code, listed.json()["approvals"]))
        answer = await api.client.post(f"/api/v1/approvals/{request.id}", json={"decision": "allow_once"})
        seen.append(answer.status_code)
        return Decision.DENY

    result = await api.agent.chat("tool please", user_id="u10", platform="telegram", on_approval=on_approval)
    assert seen == [(200, []), 404]
    assert [(c.name, c.is_error) for c in result.tool_calls] == [("Bash", True)]


async def test_approval_answered_by_someone_else_is_403(make_api: Any) -> None:
    async with make_api() as api:
        api.fake.enqueue(ToolCall("Bash", {"command": "touch nope.txt", "description": "x"}))
        statuses: list[int] = []

        async def intrude(name: str, data: dict[str, Any]) -> None:
            if name == "approval_request":
                other = await api.client.post(
                    f"/api/v1/approvals/{data['id']}", json={"decision": "allow_once", "user_id": "mallory"}
                )
                statuses.append(other.status_code)
                assert other.json()["error"]["code"] == "forbidden"
                own = await api.client.post(f"/api/v1/approvals/{data['id']}", json={"decision": "deny"})
                statuses.append(own.status_code)

        events = await read_stream(api.client, "/api/v1/chat/stream", {"text": "go", "user_id": "u5"}, intrude)
        assert statuses == [403, 200]
        result = next(data for name, data in events if name == "tool_result")
        assert result["is_error"] is True
        assert (await api.client.post("/api/v1/approvals/unknown-id", json={"decision": "deny"})).status_code == 404


async def test_stream_error_event_when_the_agent_fails(api: Api) -> None:
    api.fake.rules["fail please"] = [Error(500, "api_error", "the fake model refuses")]
    events = await read_stream(api.client, "/api/v1/chat/stream", {"text": "fail please", "user_id": "u6"})
    assert events[-1][0] == "error" and "done" not in [n for n, _ in events]
    error = events[-1][1]
    assert error["code"] == "agent_error" and "the fake model refuses" in error["message"] and error["session_id"]
    sync = await api.client.post("/api/v1/chat", json={"text": "fine now", "user_id": "u6"})
    assert sync.status_code == 200 and sync.json()["session_id"] == error["session_id"]


async def test_sync_agent_failure_is_a_json_502(api: Api) -> None:
    api.fake.rules["break it"] = [Error(500, "api_error", "nope")]
    resp = await api.client.post("/api/v1/chat", json={"text": "break it", "user_id": "u7"})
    assert resp.status_code == 502
    assert resp.json()["error"]["code"] == "agent_error" and resp.json()["error"]["session_id"]


async def test_the_same_session_from_http_and_from_the_library(api: Api) -> None:
    over_http = await api.client.post("/api/v1/chat", json={"text": "the password is zebra", "user_id": "shared"})
    sid = over_http.json()["session_id"]
    result = await api.agent.chat("what is the password?", user_id="shared")
    assert result.session_id == sid and result.text == "echo: what is the password?"
    assert "the password is zebra" in api.fake.requests[-1].user_texts()
    # ...and back: the library's turn shows up in the HTTP history.
    history = (await api.client.get(f"/api/v1/sessions/{sid}/history")).json()["turns"]
    assert [t["user_text"] for t in history] == ["the password is zebra", "what is the password?"]


async def test_disconnecting_the_stream_interrupts_the_turn(api: Api) -> None:
    api.fake.enqueue(Hang("started ", seconds=60))
    async with aconnect_sse(
        api.client, "POST", "/api/v1/chat/stream", json={"text": "long one", "user_id": "u8"}
    ) as source:
        async for sse in source.aiter_sse():
            if sse.event == "text_delta":
                break  # leave mid-turn: the connection closes
    key = ConversationKey("api", "u8")

    async def interrupted() -> bool:
        turns = await api.agent.store.turns(key, 5)
        conv = await api.agent.store.get(key)
        return bool(turns) and turns[-1].status == "interrupted" and conv is not None and conv.status == "idle"

    await wait_until(interrupted, what="the abandoned turn to be interrupted and recorded")
    after = await api.client.post("/api/v1/chat", json={"text": "still there?", "user_id": "u8"})
    assert after.status_code == 200 and after.json()["text"] == "echo: still there?"


async def test_files_the_agent_sends_are_reported(api: Api) -> None:
    root = api.agent.workspaces.root(ConversationKey("api", "u9"))
    root.mkdir(parents=True, exist_ok=True)
    (root / "report.txt").write_text("numbers")
    api.fake.enqueue(ToolCall("mcp__ccbridge__send_file", {"path": "report.txt", "caption": "the report"}))
    events = await read_stream(api.client, "/api/v1/chat/stream", {"text": "send it", "user_id": "u9"})
    files = [data for name, data in events if name == "file"]
    assert files == [{"name": "report.txt", "path": "report.txt", "caption": "the report"}]
    assert events[-1][0] == "done" and events[-1][1]["files"] == files
