"""Sessions: /api/v1 (claude-agent-http's shapes, ccbridge's fields as extras) and /api/v2 (ccbridge's
session objects) over the same sessions: create, list, get, resume, history, delete; bad subdirs are 400
(on /api/v1, the seed's 422 for what claude-agent-http refused)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest

from core import Agent, ConversationKey
from core.workspace import MAX_SUBDIR_CHARS, MAX_SUBDIR_DEPTH
from tests.core.test_projects import repo
from tests.fakes.anthropic_api import FakeAnthropicAPI

from .conftest import Api, running_api


async def test_create_get_list_history_delete(api: Api) -> None:
    created = await api.client.post(
        "/api/v1/sessions", json={"user_id": "alice", "subdir": "proj/x", "metadata": {"ticket": 7}}
    )
    assert created.status_code == 201, created.text
    session = created.json()
    root = api.agent.workspaces.root(ConversationKey("api", "alice"))
    assert session["user_id"] == "alice" and session["cwd"] == str(root / "proj/x") and session["subdir"] == "proj/x"
    assert session["metadata"] == {"ticket": 7} and session["status"] == "active"
    assert session["message_count"] == 0 and session["state"] == "idle" and session["default"] is False
    assert {"session_id", "id", "created_at", "last_active_at", "total_cost_usd"} <= session.keys()
    sid = session["session_id"]
    assert session["id"] == sid and (root / "proj/x").is_dir()

    got = await api.client.get(f"/api/v1/sessions/{sid}")
    assert got.status_code == 200 and got.json()["session_id"] == sid
    v2 = (await api.client.get(f"/api/v2/sessions/{sid}")).json()
    assert (v2["id"], v2["cwd"], v2["status"], v2["default"]) == (sid, "proj/x", "idle", False)

    chat = await api.client.post("/api/v1/chat", json={"text": "hello session", "user_id": "alice", "session_id": sid})
    assert chat.status_code == 200, chat.text
    assert chat.json()["session_id"] == sid and chat.json()["text"] == "echo: hello session"

    listed = await api.client.get("/api/v2/sessions", params={"user_id": "alice"})
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()["sessions"]] == [sid]
    assert listed.json()["sessions"][0]["message_count"] == 1
    assert (await api.client.get("/api/v1/sessions", params={"user_id": "alice"})).json() == [sid]

    history = await api.client.get(f"/api/v1/sessions/{sid}/history")
    assert history.status_code == 200
    turns = history.json()["turns"]
    assert [(t["user_text"], t["reply_text"], t["status"]) for t in turns] == [
        ("hello session", "echo: hello session", "ok")
    ]

    deleted = await api.client.delete(f"/api/v1/sessions/{sid}")
    assert deleted.status_code == 204
    gone = await api.client.get(f"/api/v1/sessions/{sid}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "session_not_found"
    assert (await api.client.get(f"/api/v1/sessions/{sid}/history")).status_code == 404
    assert (await api.client.delete(f"/api/v1/sessions/{sid}")).status_code == 404


@pytest.mark.parametrize(
    ("subdir", "phrase"),
    [("../escape", "'..' is not allowed"), ("/etc", "is absolute"), ("a/../../b", "'..' is not allowed")],
)
async def test_bad_subdir_is_refused_with_a_clear_message(api: Api, subdir: str, phrase: str) -> None:
    # /api/v1: claude-agent-http's 422 at body.subdir; /api/v2: ccbridge's 400 invalid_subdir.
    v1 = await api.client.post("/api/v1/sessions", json={"user_id": "bob", "subdir": subdir})
    assert v1.status_code == 422
    assert [d["loc"] for d in v1.json()["detail"]] == [["body", "subdir"]]
    assert v1.json()["error"]["fields"][0]["field"] == "subdir"
    v2 = await api.client.post("/api/v2/sessions", json={"user_id": "bob", "subdir": subdir})
    assert v2.status_code == 400
    error = v2.json()["error"]
    assert error["code"] == "invalid_subdir"
    assert error["message"].startswith("subdir: ") and phrase in error["message"]
    assert (await api.client.get("/api/v1/sessions", params={"user_id": "bob"})).json() == []


def at_the_limits() -> str:
    """MAX_SUBDIR_DEPTH directories, MAX_SUBDIR_CHARS characters in all (each name short enough for any disk)."""
    names = [c * 8 for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"[:MAX_SUBDIR_DEPTH]]
    path = "/".join(names)
    missing = MAX_SUBDIR_CHARS - len(path)
    per_name, extra = divmod(missing, MAX_SUBDIR_DEPTH)
    names = [n + n[0] * (per_name + (i < extra)) for i, n in enumerate(names)]
    return "/".join(names)


@pytest.mark.parametrize(
    ("subdir", "phrase"),
    [
        ("/".join(["d"] * 300), f"300 directories deep; the limit is {MAX_SUBDIR_DEPTH}"),
        ("/".join(["d"] * (MAX_SUBDIR_DEPTH + 1)), f"{MAX_SUBDIR_DEPTH + 1} directories deep"),
        ("x" * (MAX_SUBDIR_CHARS + 1), f"{MAX_SUBDIR_CHARS + 1} characters long; the limit is {MAX_SUBDIR_CHARS}"),
        (at_the_limits() + "x", f"{MAX_SUBDIR_CHARS + 1} characters long"),
        ("d/" * 5000, "characters long"),
        ("x" * 500_000, "500000 characters long"),  # far past the limit, still within max_body_bytes
    ],
)
async def test_a_subdir_too_deep_or_too_long_is_a_400_on_v2(api: Api, subdir: str, phrase: str) -> None:
    resp = await api.client.post("/api/v2/sessions", json={"user_id": "deep", "subdir": subdir})
    assert resp.status_code == 400, resp.text[:500]
    error = resp.json()["error"]
    assert error["code"] == "invalid_subdir" and resp.json()["detail"] == error["message"]
    assert error["message"].startswith("subdir: the path is ") and phrase in error["message"]
    assert len(resp.content) < 1000  # the message does not echo the path back
    assert (await api.client.get("/api/v2/sessions", params={"user_id": "deep"})).json() == {"sessions": []}
    assert not api.agent.workspaces.root(ConversationKey("api", "deep")).exists()  # nothing was created


async def test_a_refused_subdir_makes_no_worktree_in_a_bound_project(
    make_sections: Any, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    checkout = repo(tmp_path / "payments")
    sections = make_sections(projects={"payments": {"path": str(checkout), "places": ["api:dev"]}})
    async with Agent(sections) as agent, running_api(agent, fake_api) as api:
        for subdir in ("/".join(["d"] * 300), "x" * (MAX_SUBDIR_CHARS + 1), "../up"):
            resp = await api.client.post("/api/v2/sessions", json={"user_id": "dev", "subdir": subdir})
            assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_subdir", resp.text[:300]
        branches = await asyncio.to_thread(
            subprocess.run, ["git", "branch"], cwd=checkout, capture_output=True, text=True, check=True
        )
        assert branches.stdout.split() == ["*", "main"]  # refused before a worktree was made for it
        ok = await api.client.post("/api/v2/sessions", json={"user_id": "dev", "subdir": "src"})
        assert ok.status_code == 201, ok.text
        listed = (await api.client.get("/api/v2/sessions", params={"user_id": "dev"})).json()["sessions"]
        assert [x["id"] for x in listed] == [ok.json()["id"]]


async def test_a_subdir_at_the_limits_is_accepted_and_a_huge_body_is_still_bounded(api: Api) -> None:
    subdir = at_the_limits()
    assert len(subdir) == MAX_SUBDIR_CHARS and subdir.count("/") == MAX_SUBDIR_DEPTH - 1
    for route in ("/api/v2/sessions", "/api/v1/sessions"):
        short = "/".join(["d"] * MAX_SUBDIR_DEPTH)
        created = await api.client.post(route, json={"user_id": "edge", "subdir": short})
        assert created.status_code == 201, (route, created.text)
    created = await api.client.post("/api/v2/sessions", json={"user_id": "edge", "subdir": subdir})
    assert created.status_code == 201, created.text
    assert created.json()["cwd"] == subdir
    assert (api.agent.workspaces.root(ConversationKey("api", "edge")) / subdir).is_dir()
    huge = await api.client.post("/api/v2/sessions", json={"user_id": "edge", "subdir": "x" * (2 * 1024 * 1024)})
    assert huge.status_code == 413  # max_body_bytes bounds what is read at all


async def test_v1_keeps_the_seeds_422_for_a_long_subdir_and_a_400_for_a_deep_one(api: Api) -> None:
    # claude-agent-http refused more than 200 characters with its 422; ccbridge's depth limit is a 400 there too.
    for subdir in ("x" * (MAX_SUBDIR_CHARS + 1), "d/" * 300):
        long = await api.client.post("/api/v1/sessions", json={"user_id": "seedy", "subdir": subdir})
        assert long.status_code == 422, long.text[:500]
        assert [d["loc"] for d in long.json()["detail"]] == [["body", "subdir"]]
    deep = await api.client.post("/api/v1/sessions", json={"user_id": "seedy", "subdir": "d/" * 40})
    assert deep.status_code == 400 and deep.json()["error"]["code"] == "invalid_subdir"
    assert "40 directories deep" in deep.json()["error"]["message"]
    assert (await api.client.get("/api/v1/sessions", params={"user_id": "seedy"})).json() == []


async def test_resume_clears_an_interrupted_mark_and_the_session_continues(api: Api) -> None:
    first = await api.client.post("/api/v1/chat", json={"text": "before the crash", "user_id": "carol"})
    sid = first.json()["session_id"]
    # A restart in the middle of a turn leaves the conversation marked interrupted.
    key = ConversationKey("api", "carol")
    conv = await api.agent.store.get(key)
    assert conv is not None
    conv.status = "interrupted"
    await api.agent.store.put(conv)
    assert (await api.client.get(f"/api/v1/sessions/{sid}")).json()["state"] == "interrupted"
    assert (await api.client.get(f"/api/v2/sessions/{sid}")).json()["status"] == "interrupted"

    resumed = await api.client.post(f"/api/v1/sessions/{sid}/resume")
    assert resumed.status_code == 200
    assert resumed.json()["state"] == "idle" and resumed.json()["session_id"] == sid and resumed.json()["default"]
    v2 = await api.client.post(f"/api/v2/sessions/{sid}/resume")
    assert v2.status_code == 200 and v2.json()["status"] == "idle" and v2.json()["id"] == sid

    again = await api.client.post("/api/v1/chat", json={"text": "after", "user_id": "carol", "session_id": sid})
    assert again.json()["session_id"] == sid
    assert "before the crash" in api.fake.requests[-1].user_texts()
    missing = await api.client.post("/api/v1/sessions/nope/resume")
    assert missing.status_code == 404 and missing.json()["detail"] == "Session not found or expired"
    assert (await api.client.post("/api/v2/sessions/nope/resume")).status_code == 404


async def test_sessions_of_other_users_and_platforms_are_not_reachable(api: Api) -> None:
    sid = (await api.client.post("/api/v2/sessions", json={"user_id": "dave"})).json()["id"]
    wrong = await api.client.get(f"/api/v1/sessions/{sid}", params={"user_id": "erin"})
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"
    chat = await api.client.post("/api/v1/chat", json={"text": "hi", "user_id": "erin", "session_id": sid})
    assert chat.status_code == 403
    # A chat bot's conversation is not an API session, even with its id.
    tg = await api.agent.conversations.create(ConversationKey("telegram", "dave"))
    assert (await api.client.get(f"/api/v1/sessions/{tg.session_id}")).status_code == 404
    assert tg.session_id not in (await api.client.get("/api/v1/sessions")).json()
    assert sid in (await api.client.get("/api/v1/sessions")).json()
    foreign = await api.client.post("/api/v1/chat", json={"text": "x", "user_id": "dave", "session_id": tg.session_id})
    assert foreign.status_code == 404
