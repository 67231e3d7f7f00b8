"""claude-code-server's routes, with the bodies its clients send and read."""

from __future__ import annotations

import json
from typing import Any

from httpx_sse import aconnect_sse

from .conftest import KEY, Api, wait_until


async def test_compat_chat_history_and_clear(api: Api) -> None:
    # Those clients authenticate with X-API-Key.
    async with api.anonymous(headers={"X-API-Key": KEY}) as client:
        resp = await client.post(
            "/chat", json={"message": "Hello Claude!", "user_id": "alice", "enable_debounce": False}
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["content"] == "echo: Hello Claude!" and body["success"] is True
        assert body["session_id"] == "user_alice" and body["claude_session_id"]
        assert body["metadata"]["cost_usd"] is not None

        # The default session is the one /api/v1 uses for alice.
        v1 = await client.post("/api/v1/chat", json={"text": "via v1", "user_id": "alice"})
        assert v1.json()["session_id"] == body["claude_session_id"]

        history = await client.get("/session/user_alice/history")
        assert history.status_code == 200
        h = history.json()
        assert h["user_id"] == "alice" and h["total_messages"] == 4
        assert [(m["role"], m["content"]) for m in h["messages"]] == [
            ("user", "Hello Claude!"),
            ("assistant", "echo: Hello Claude!"),
            ("user", "via v1"),
            ("assistant", "echo: via v1"),
        ]
        by_id = await client.get(f"/session/{body['claude_session_id']}/history")
        assert by_id.json()["total_messages"] == 4

        cleared = await client.delete("/session/user_alice")
        assert cleared.status_code == 200 and cleared.json() == {"message": "Session cleared successfully"}
        assert (await client.get("/session/user_alice/history")).status_code == 404
        assert (await client.delete("/session/user_alice")).status_code == 404


async def test_compat_named_sessions_are_separate(api: Api) -> None:
    a = (
        await api.client.post("/chat", json={"message": "in project a", "user_id": "bob", "session_id": "proj-a"})
    ).json()
    b = (await api.client.post("/chat", json={"message": "in default", "user_id": "bob"})).json()
    assert a["session_id"] == "proj-a" and b["session_id"] == "user_bob"
    assert a["claude_session_id"] != b["claude_session_id"]
    again = (
        await api.client.post("/chat", json={"message": "again a", "user_id": "bob", "session_id": "proj-a"})
    ).json()
    assert again["claude_session_id"] == a["claude_session_id"]
    history = (await api.client.get("/session/proj-a/history")).json()
    assert [m["content"] for m in history["messages"] if m["role"] == "user"] == ["in project a", "again a"]


async def test_compat_stream(api: Api) -> None:
    events: list[tuple[str, str]] = []
    body = {"message": "Tell me a story", "user_id": "carol"}
    async with aconnect_sse(api.client, "POST", "/chat/stream", json=body) as source:
        assert source.response.status_code == 200
        async for sse in source.aiter_sse():
            events.append((sse.event, sse.data))
    assert events[-1][0] == "done"
    text = "".join(data for name, data in events if name == "message")
    assert text == "echo: Tell me a story"
    done = json.loads(events[-1][1])
    assert done["session_id"] == "user_carol" and done["claude_session_id"]


async def test_compat_async_and_task(api: Api) -> None:
    accepted = await api.client.post("/chat/async", json={"message": "Complex task", "user_id": "dave"})
    assert accepted.status_code == 200
    assert accepted.json()["status"] == "processing" and accepted.json()["message"] == "Task submitted successfully"
    task_id = accepted.json()["task_id"]

    async def done() -> dict[str, Any] | None:
        body = (await api.client.get(f"/task/{task_id}")).json()
        return body if body["status"] in ("completed", "failed") else None

    task = await wait_until(done, what="the compat task")
    assert task["status"] == "completed" and task["result"]["content"] == "echo: Complex task"
    assert task["result"]["session_id"] == "user_dave" and task["created_at"] and task["completed_at"]
    # The same registry answers the v1 route.
    assert (await api.client.get(f"/api/v1/tasks/{task_id}")).json()["status"] == "completed"
    assert (await api.client.get("/task/unknown")).status_code == 404


async def test_compat_routes_need_a_key_too(api: Api) -> None:
    async with api.anonymous() as client:
        resp = await client.post("/chat", json={"message": "hi", "user_id": "eve"})
        assert resp.status_code == 401
        assert resp.json()["code"] == "unauthorized" and "API key" in resp.json()["detail"]


async def test_compat_errors_answer_with_detail(api: Api) -> None:
    # claude-code-server is a FastAPI app: its clients read {"detail": ...}.
    missing = await api.client.get("/task/unknown")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no task unknown (unknown or expired)", "code": "task_not_found"}
    gone = await api.client.get("/session/user_nobody/history")
    assert gone.status_code == 404 and gone.json()["detail"] == "no session user_nobody"
    big = await api.client.post(
        "/chat", content=b"{" + b" " * 2_000_000 + b"}", headers={"Content-Type": "application/json"}
    )
    assert big.status_code == 413 and "max_body_bytes" in big.json()["detail"]
    # ...while /api/v1 keeps its envelope.
    v1 = await api.client.get("/api/v1/tasks/unknown")
    assert v1.status_code == 404 and v1.json()["error"]["code"] == "task_not_found" and "detail" not in v1.json()


async def test_a_session_name_used_by_two_users_needs_user_id(api: Api) -> None:
    for user in ("frank", "grace"):
        resp = await api.client.post(
            "/chat", json={"message": f"hi from {user}", "user_id": user, "session_id": "proj"}
        )
        assert resp.status_code == 200 and resp.json()["session_id"] == "proj"
    ambiguous = await api.client.get("/session/proj/history")
    assert ambiguous.status_code == 409
    assert ambiguous.json()["code"] == "ambiguous_session" and "?user_id=" in ambiguous.json()["detail"]
    assert (await api.client.delete("/session/proj")).status_code == 409
    grace = (await api.client.get("/session/proj/history", params={"user_id": "grace"})).json()
    assert grace["user_id"] == "grace" and grace["messages"][0]["content"] == "hi from grace"
    cleared = await api.client.delete("/session/proj", params={"user_id": "grace"})
    assert cleared.status_code == 200
    # Only frank's is left: the name is no longer ambiguous.
    frank = (await api.client.get("/session/proj/history")).json()
    assert frank["user_id"] == "frank" and frank["messages"][0]["content"] == "hi from frank"
    missing = await api.client.get("/session/proj/history", params={"user_id": "grace"})
    assert missing.status_code == 404 and "grace" in missing.json()["detail"]
