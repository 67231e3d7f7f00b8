"""Chat in sync and stream mode (SSE parsed by httpx-sse), approvals, and the library parity."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from core import ApprovalRequest, ConversationKey, Decision
from tests.fakes.anthropic_api import Error, Hang, Text, ToolCall
from tests.helpers import immutable

from .conftest import KEY, Api, by_type, read_sse, wait_until


async def read_stream(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], on_event: Any = None
) -> list[tuple[str, dict[str, Any]]]:
    """Every event of an SSE stream as (its data's type, its data); ``on_event`` sees each as it arrives."""

    async def typed(_name: str, data: dict[str, Any]) -> None:
        await on_event(data["type"], data)

    return by_type(await read_sse(client, url, body, typed if on_event else None))


async def test_sync_chat_default_session_by_user_id(api: Api) -> None:
    first = await api.client.post("/api/v1/chat", json={"text": "hi there", "user_id": "u1"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["text"] == "echo: hi there" and body["user_id"] == "u1"
    assert body["tool_calls"] == [] and body["cost_usd"] is not None and body["timestamp"]
    assert body["usage"] and body["duration_ms"] is not None and body["interrupted"] is False
    second = await api.client.post("/api/v1/chat", json={"text": "again", "user_id": "u1"})
    assert second.json()["session_id"] == body["session_id"]
    listed = (await api.client.get("/api/v2/sessions", params={"user_id": "u1"})).json()["sessions"]
    assert [(s["id"], s["default"], s["message_count"]) for s in listed] == [(body["session_id"], True, 2)]
    assert (await api.client.get("/api/v1/sessions", params={"user_id": "u1"})).json() == [body["session_id"]]


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
    events = await read_stream(api.client, "/api/v2/chat/stream", {"text": "write a note", "user_id": "u3"})
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

    body = {"text": "please run", "user_id": "u4", "approval_mode": "ask"}  # v1 asks only when asked to
    events = await read_stream(api.client, "/api/v1/chat/stream", body, approve)
    assert len(answers) == 1 and answers[0].status_code == 200
    assert answers[0].json()["decision"] == "allow_once" and answers[0].json()["decided_by"] == "u4"
    names = [name for name, _ in events]
    assert names.index("approval_request") < names.index("approval_resolved") < names.index("tool_result")
    result = next(data for name, data in events if name == "tool_result")
    assert result["is_error"] is False
    assert events[-1][0] == "done" and events[-1][1]["text"] is None  # v1's done: the reply was streamed
    assert "approved-42" in "".join(data["text"] for name, data in events if name == "text_delta")
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

        body = {"text": "go", "user_id": "u5", "approval_mode": "ask"}
        events = await read_stream(api.client, "/api/v1/chat/stream", body, intrude)
        assert statuses == [403, 200]
        result = next(data for name, data in events if name == "tool_result")
        assert result["is_error"] is True
        assert (await api.client.post("/api/v1/approvals/unknown-id", json={"decision": "deny"})).status_code == 404


async def test_stream_error_event_when_the_agent_fails(api: Api) -> None:
    api.fake.rules["fail please"] = [Error(500, "api_error", "the fake model refuses", should_retry=False)]
    events = await read_stream(api.client, "/api/v1/chat/stream", {"text": "fail please", "user_id": "u6"})
    assert events[-1][0] == "error" and "done" not in [n for n, _ in events]
    error = events[-1][1]
    assert error["code"] == "agent_error" and "the fake model refuses" in error["message"] and error["session_id"]
    assert "cost_usd" in error and error["text"] is None  # v1: what was said is in the text_delta events
    sync = await api.client.post("/api/v1/chat", json={"text": "fine now", "user_id": "u6"})
    assert sync.status_code == 200 and sync.json()["session_id"] == error["session_id"]


async def test_sync_agent_failure_is_a_json_502_with_what_the_turn_cost(api: Api) -> None:
    # One paid model call (a tool call), then the model fails: the turn cost something.
    api.fake.enqueue(ToolCall("Glob", {"pattern": "*"}), Error(500, "api_error", "nope", should_retry=False))
    resp = await api.client.post("/api/v1/chat", json={"text": "break it", "user_id": "u7"})
    assert resp.status_code == 502
    error = resp.json()["error"]
    assert error["code"] == "agent_error" and error["session_id"] and error["cost_usd"] > 0
    history = (await api.client.get(f"/api/v1/sessions/{error['session_id']}/history")).json()["turns"]
    assert history[-1]["status"] == "error" and history[-1]["cost_usd"] == error["cost_usd"]


async def test_the_same_session_from_http_and_from_the_library(api: Api) -> None:
    over_http = await api.client.post("/api/v1/chat", json={"text": "the password is zebra", "user_id": "shared"})
    sid = over_http.json()["session_id"]
    result = await api.agent.chat("what is the password?", user_id="shared")
    assert result.session_id == sid and result.text == "echo: what is the password?"
    assert "the password is zebra" in api.fake.requests[-1].user_texts()
    # ...and back: the library's turn shows up in the HTTP history.
    history = (await api.client.get(f"/api/v1/sessions/{sid}/history")).json()["turns"]
    assert [t["user_text"] for t in history] == ["the password is zebra", "what is the password?"]


async def interrupted_and_freed(api: Api, key: ConversationKey) -> bool:
    turns = await api.agent.store.turns(key, 5)
    conv = await api.agent.store.get(key)
    recorded = bool(turns) and turns[-1].status == "interrupted" and conv is not None and conv.status == "idle"
    return recorded and api.ctx.slots.in_use == 0


async def test_disconnecting_the_stream_interrupts_the_turn_and_frees_its_slot(api: Api) -> None:
    api.fake.enqueue(Hang("started ", seconds=60))
    async with aconnect_sse(
        api.client, "POST", "/api/v1/chat/stream", json={"text": "long one", "user_id": "u8"}
    ) as source:
        async for sse in source.aiter_sse():
            if sse.json()["type"] == "text_delta":
                assert api.ctx.slots.in_use == 1
                break  # leave mid-turn: the connection closes
    key = ConversationKey("api", "u8")
    await wait_until(lambda: interrupted_and_freed(api, key), what="the abandoned turn to be stopped and recorded")
    after = await api.client.post("/api/v1/chat", json={"text": "still there?", "user_id": "u8"})
    assert after.status_code == 200 and after.json()["text"] == "echo: still there?"


async def test_a_sync_client_that_disconnects_stops_its_turn_and_frees_its_slot(api: Api) -> None:
    api.fake.enqueue(Hang("working on it ", seconds=60))
    requests_before = len(api.fake.requests)
    async with api.anonymous(headers={"X-API-Key": KEY}) as client:
        waiting = asyncio.create_task(client.post("/api/v1/chat", json={"text": "hang on", "user_id": "u11"}))
        await wait_until(lambda: len(api.fake.requests) > requests_before, what="the turn to reach the model")
        assert api.ctx.slots.in_use == 1
        waiting.cancel()  # the client gives up: httpx closes the connection
        with pytest.raises(asyncio.CancelledError):
            await waiting
    key = ConversationKey("api", "u11")
    await wait_until(lambda: interrupted_and_freed(api, key), what="the abandoned sync turn to be stopped")
    # The same on claude-code-server's /chat.
    api.fake.enqueue(Hang("again ", seconds=60))
    requests_before = len(api.fake.requests)
    async with api.anonymous(headers={"X-API-Key": KEY}) as client:
        waiting = asyncio.create_task(client.post("/chat", json={"message": "hang on", "user_id": "u11"}))
        await wait_until(lambda: len(api.fake.requests) > requests_before, what="the compat turn to reach the model")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    await wait_until(lambda: interrupted_and_freed(api, key), what="the abandoned compat turn to be stopped")
    turns = await api.agent.store.turns(key, 5)
    assert [t.status for t in turns] == ["interrupted", "interrupted"]


async def test_files_the_agent_sends_are_reported(api: Api) -> None:
    root = api.agent.workspaces.root(ConversationKey("api", "u9"))
    root.mkdir(parents=True, exist_ok=True)
    (root / "report.txt").write_text("numbers")
    api.fake.enqueue(ToolCall("mcp__ccbridge__send_file", {"path": "report.txt", "caption": "the report"}))
    events = await read_stream(api.client, "/api/v2/chat/stream", {"text": "send it", "user_id": "u9"})
    files = [data for name, data in events if name == "file"]
    sid = events[-1][1]["session_id"]
    url = f"/api/v1/sessions/{sid}/files/report.txt"
    assert files == [{"type": "file", "name": "report.txt", "path": "report.txt", "caption": "the report", "url": url}]
    assert events[-1][0] == "done"
    assert events[-1][1]["files"] == [{k: v for k, v in f.items() if k != "type"} for f in files]
    assert (await api.client.get(url)).content == b"numbers"
    # /api/v1's stream sends no file event to a client that did not ask for ccbridge's events; done has them.
    api.fake.enqueue(ToolCall("mcp__ccbridge__send_file", {"path": "report.txt", "caption": "again"}))
    v1 = await read_stream(api.client, "/api/v1/chat/stream", {"text": "send it again", "user_id": "u9"})
    assert [name for name, _ in v1 if name not in ("text_delta", "tool_use")] == ["done"]
    assert [(f["path"], f["caption"], f["url"]) for f in v1[-1][1]["files"]] == [("report.txt", "again", url)]


async def test_a_store_that_cannot_record_the_turn_is_a_503_store_unavailable(api: Api) -> None:
    await api.client.post("/api/v1/chat", json={"text": "first", "user_id": "u12"})  # the store is there
    db: Path = api.agent.store.path  # type: ignore[attr-defined]
    requests_before = len(api.fake.requests)
    with immutable(db, db.with_name(db.name + "-wal")):
        sync = await api.client.post("/api/v1/chat", json={"text": "second", "user_id": "u12"})
        assert sync.status_code == 503, sync.text
        assert sync.json()["error"]["code"] == "store_unavailable" and "nothing was run" in sync.json()["detail"]
        events = await read_stream(api.client, "/api/v1/chat/stream", {"text": "third", "user_id": "u12"})
        assert events[-1][0] == "error" and events[-1][1]["code"] == "store_unavailable"
        compat = await api.client.post("/chat", json={"message": "fourth", "user_id": "u12"})
        assert compat.status_code == 503 and compat.json()["code"] == "store_unavailable"
    assert len(api.fake.requests) == requests_before  # nothing ran
    assert api.ctx.slots.in_use == 0
    after = await api.client.post("/api/v1/chat", json={"text": "fifth", "user_id": "u12"})
    assert after.status_code == 200 and after.json()["text"] == "echo: fifth"


async def test_v2_stream_names_every_event_and_shows_a_waiting_turn(api: Api) -> None:
    api.fake.enqueue(Hang("first turn ", seconds=60))
    requests_before = len(api.fake.requests)
    holding = asyncio.create_task(api.client.post("/api/v1/chat", json={"text": "hold on", "user_id": "u13"}))
    await wait_until(lambda: len(api.fake.requests) > requests_before, what="the first turn to run")
    seen: list[str] = []

    async def on_event(name: str, data: dict[str, Any]) -> None:
        seen.append(name)
        assert data["type"] == name  # v2: the SSE event is named by its type
        if name == "waiting":
            assert data["kind"] == "conversation"
            assert await api.agent.stop("u13")  # the first turn stops: this one goes on

    events = await read_sse(api.client, "/api/v2/chat/stream", {"text": "me next", "user_id": "u13"}, on_event)
    assert seen[0] == "waiting" and seen[-1] == "done" and "text_delta" in seen
    assert events[-1][1]["text"] == "echo: me next"
    assert (await holding).json()["interrupted"] is True


async def test_a_reply_the_store_could_not_record_says_so_and_is_written_when_it_is_back(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = api.agent.store
    real_put_turn = store.put_turn
    calls = {"n": 0}

    async def put_turn_failing_at_the_end(turn: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the turn's start is recorded; its end finds the store gone
            from core import StoreUnavailable

            raise StoreUnavailable("the store went away")
        await real_put_turn(turn)

    monkeypatch.setattr(store, "put_turn", put_turn_failing_at_the_end)
    resp = await api.client.post("/api/v1/chat", json={"text": "keep this", "user_id": "u9"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["text"] == "echo: keep this"  # the answer stands
    assert body["saved"] is False and "not in the history yet" in body["warning"]
    compat = await api.client.post("/chat", json={"message": "and this", "user_id": "u8"})
    assert compat.status_code == 200 and compat.json()["metadata"].get("saved") is not False  # stored: no warning
    assert await api.agent.conversations.flush_unwritten() == 0  # written by the next turn, or now
    history = (await api.client.get(f"/api/v1/sessions/{body['session_id']}/history")).json()["turns"]
    assert [(t["user_text"], t["reply_text"]) for t in history] == [("keep this", "echo: keep this")]
    again = await api.client.post("/api/v1/chat", json={"text": "next", "user_id": "u9"})
    assert again.json()["saved"] is True and again.json()["warning"] is None
