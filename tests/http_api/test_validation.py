"""Bad requests: clear 422/415 errors naming the field (``detail`` plus /api's ``error`` envelope, or the
compat routes' ``detail`` + ``code``); nothing reaches the model. User ids are any text without control
characters."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from core import ConversationKey

from .conftest import Api

V1_TURNS = ["/api/v1/chat", "/api/v1/chat/stream", "/api/v1/chat/async"]
COMPAT_TURNS = ["/chat", "/chat/stream", "/chat/async"]


def v1_error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    error = body["error"]
    assert error["message"]
    if status == 422:  # FastAPI's detail, as claude-agent-http answered: [{type, loc, msg}]
        assert len(body["detail"]) == len(error["fields"])
        assert all({"type", "loc", "msg"} <= d.keys() and d["loc"][0] in ("body", "query") for d in body["detail"])
    else:
        assert body["detail"] == error["message"]
    return error


def compat_error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert isinstance(body["detail"], str) and body["detail"]
    return body


async def assert_nothing_ran(api: Api, *users: str) -> None:
    assert api.fake.requests == []
    for user in users:
        assert await api.agent.store.get(ConversationKey("api", user)) is None


@pytest.mark.parametrize("text", ["", " ", "  \n\t  "])
async def test_empty_or_whitespace_text_is_a_422_naming_the_field(api: Api, text: str) -> None:
    for url in V1_TURNS:
        error = v1_error(await api.client.post(url, json={"text": text, "user_id": "v1"}), 422)
        assert error["code"] == "invalid_request" and error["message"].startswith("invalid request: text: ")
        assert [f["field"] for f in error["fields"]] == ["text"]
        error = v1_error(await api.client.post(url, json={"message": text, "session_id": "s"}), 422)
        assert [f["field"] for f in error["fields"]] == ["message"]
    for url in COMPAT_TURNS:
        body = compat_error(await api.client.post(url, json={"message": text, "user_id": "v1"}), 422)
        assert body["code"] == "invalid_request" and "message: " in body["detail"]
        assert [f["field"] for f in body["fields"]] == ["message"]
    whitespace = await api.client.post("/api/v1/chat", json={"text": " \n ", "user_id": "v1"})
    assert "only whitespace" in whitespace.json()["error"]["message"]
    await assert_nothing_ran(api, "v1")


async def test_malformed_json_is_a_422_saying_so(api: Api) -> None:
    broken = b'{"text": "hi", "user_id": '
    headers = {"Content-Type": "application/json"}
    error = v1_error(await api.client.post("/api/v1/chat", content=broken, headers=headers), 422)
    assert error["code"] == "invalid_request"
    assert error["message"].startswith("the request body is not valid JSON") and "position" in error["message"]
    assert error["fields"][0]["field"] == "body"
    body = compat_error(await api.client.post("/chat", content=broken, headers=headers), 422)
    assert body["detail"].startswith("the request body is not valid JSON")
    await assert_nothing_ran(api)


async def test_a_body_that_is_not_json_is_a_415(api: Api) -> None:
    good = b'{"text": "hi", "user_id": "ct"}'
    for headers, got in (
        ({"Content-Type": "text/plain"}, "'text/plain'"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, "'application/x-www-form-urlencoded'"),
        ({}, "no Content-Type was sent"),
    ):
        error = v1_error(await api.client.post("/api/v1/chat", content=good, headers=headers), 415)
        assert error["code"] == "unsupported_media_type"
        assert "Content-Type: application/json" in error["message"] and got in error["message"]
        compat = good.replace(b'"text"', b'"message"')
        body = compat_error(await api.client.post("/chat", content=compat, headers=headers), 415)
        assert "application/json" in body["detail"] and got in body["detail"]
    await assert_nothing_ran(api, "ct")


async def test_missing_body_and_missing_fields_are_named(api: Api) -> None:
    empty = v1_error(await api.client.post("/api/v1/chat"), 422)
    assert empty["message"] == "the request body is missing: send a JSON object"
    fields = v1_error(await api.client.post("/api/v1/chat", json={"approval_mode": "maybe"}), 422)
    assert [f["field"] for f in fields["fields"]] == ["approval_mode"]
    fields = v1_error(await api.client.post("/api/v1/chat", json={}), 422)
    assert [f["field"] for f in fields["fields"]] == ["message", "user_id"]
    assert "message: required" in fields["message"] and "user_id: required" in fields["message"]
    assert "'session_id' or 'user_id'" in fields["message"]
    both = v1_error(await api.client.post("/api/v1/chat", json={"text": "a", "message": "b", "user_id": "x"}), 422)
    assert both["fields"][0]["field"] == "text" and "differ" in both["message"]
    query = v1_error(await api.client.get("/api/v2/sessions"), 422)
    assert query["fields"] == [{"field": "user_id", "message": "required", "type": "missing"}]
    compat = compat_error(await api.client.post("/chat", json={"message": "hi"}), 422)
    assert compat["detail"] == "invalid request: user_id: required"
    await assert_nothing_ran(api)


@pytest.mark.parametrize("user_id", ["", "   ", "tab\there", "nul\x00", "bell\x07", "c1\x85", "x" * 129])
async def test_user_ids_with_control_characters_or_blank_are_refused(api: Api, user_id: str) -> None:
    error = v1_error(await api.client.post("/api/v1/chat", json={"text": "hi", "user_id": user_id}), 422)
    assert [f["field"] for f in error["fields"]] == ["user_id"]
    query = v1_error(await api.client.get("/api/v1/sessions", params={"user_id": user_id}), 422)
    assert [f["field"] for f in query["fields"]] == ["user_id"]
    body = compat_error(await api.client.post("/chat", json={"message": "hi", "user_id": user_id}), 422)
    assert body["detail"].startswith("invalid request: user_id: ")
    await assert_nothing_ran(api)


async def test_any_other_user_id_works_on_both_apis(api: Api) -> None:
    user = "José Müller/ops #1"  # claude-code-server accepted any string
    compat = await api.client.post("/chat", json={"message": "hola", "user_id": user})
    assert compat.status_code == 200, compat.text
    assert compat.json()["session_id"] == f"user_{user}" and compat.json()["content"] == "echo: hola"
    v1 = await api.client.post("/api/v1/chat", json={"text": "again", "user_id": user})
    assert v1.status_code == 200 and v1.json()["session_id"] == compat.json()["claude_session_id"]
    listed = (await api.client.get("/api/v2/sessions", params={"user_id": user})).json()["sessions"]
    assert [(s["user_id"], s["message_count"]) for s in listed] == [(user, 2)]
    history = await api.client.get(f"/session/{quote('user_' + user, safe='')}/history")
    assert history.status_code == 200 and history.json()["total_messages"] == 4
    cleared = await api.client.delete(f"/session/{quote('user_' + user, safe='')}")
    assert cleared.status_code == 200
    assert await api.agent.store.get(ConversationKey("api", user)) is None
