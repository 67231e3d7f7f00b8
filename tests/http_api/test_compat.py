"""claude-code-server's routes: ccbridge's behaviour behind them (shared default sessions, named
sessions, names used by several users, error shapes). The seed's documented requests are in
test_seed_claude_code_server.py."""

from __future__ import annotations

import json

from core import ConversationKey
from tests.fakes.anthropic_api import Error, ToolCall

from .conftest import KEY, Api


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
    # ...while /api/v1 adds its envelope.
    v1 = await api.client.get("/api/v1/tasks/unknown")
    assert v1.status_code == 404 and v1.json()["error"]["code"] == "task_not_found" and "code" not in v1.json()
    assert v1.json()["detail"] == v1.json()["error"]["message"]


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


async def test_compat_chat_reports_the_files_claude_sent_in_its_metadata(api: Api) -> None:
    root = api.agent.workspaces.root(ConversationKey("api", "filer"))
    root.mkdir(parents=True, exist_ok=True)
    (root / "report.txt").write_text("numbers")
    api.fake.enqueue(ToolCall("mcp__ccbridge__send_file", {"path": "report.txt", "caption": "the report"}))
    body = (await api.client.post("/chat", json={"message": "send the report", "user_id": "filer"})).json()
    assert body["success"] is True
    url = f"/api/v1/sessions/{body['claude_session_id']}/files/report.txt"
    assert body["metadata"]["files"] == [
        {"name": "report.txt", "path": "report.txt", "caption": "the report", "url": url}
    ]
    assert (await api.client.get(url)).content == b"numbers"
    plain = (await api.client.post("/chat", json={"message": "nothing to send", "user_id": "filer"})).json()
    assert plain["metadata"]["files"] == []


async def test_compat_history_and_stream_carry_each_turns_cost_failed_turns_too(api: Api) -> None:
    ok = (await api.client.post("/chat", json={"message": "fine", "user_id": "payer"})).json()
    # One paid model call (a tool call), then the model fails: the failed turn cost something too.
    api.fake.enqueue(ToolCall("Glob", {"pattern": "*"}), Error(500, "api_error", "model down", should_retry=False))
    failed = (await api.client.post("/chat", json={"message": "doomed", "user_id": "payer"})).json()
    assert failed["success"] is False and failed["metadata"]["cost_usd"] > 0
    h = (await api.client.get("/session/user_payer/history")).json()
    assert [(m["role"], m["content"]) for m in h["messages"]] == [
        ("user", "fine"),
        ("assistant", "echo: fine"),
        ("user", "doomed"),
    ]
    # Each turn's cost is on its last message: the reply, or the question of a turn that answered nothing.
    costs = [m["cost_usd"] for m in h["messages"]]
    assert costs[0] is None and costs[1] == ok["metadata"]["cost_usd"] and costs[2] == failed["metadata"]["cost_usd"]
    # The stream's error event says what the failed turn cost.
    api.fake.enqueue(ToolCall("Glob", {"pattern": "*"}), Error(500, "api_error", "model down", should_retry=False))
    async with api.client.stream("POST", "/chat/stream", json={"message": "doomed again", "user_id": "payer"}) as r:
        raw = (b"".join([chunk async for chunk in r.aiter_raw()])).decode()
    error = json.loads(raw.split("event: error\r\ndata: ", 1)[1].split("\r\n", 1)[0])
    assert "model down" in error["error"] and error["cost_usd"] > 0
