"""API keys, the user allowlist, CORS, size limits, concurrency and timeouts, probes, settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from adapters.http_api.auth import ApiKeys
from bots import load_bot_class
from core import ConfigError, ConversationKey
from tests.fakes.anthropic_api import Hang

from .conftest import KEY, OTHER_KEY, Api, wait_until

PUBLIC = {"/", "/health", "/ready", "/docs", "/openapi.json"}


def error_code(resp: httpx.Response) -> str:
    """The error code in either shape: /api/v1's envelope or the compat routes' ``detail``."""
    body = resp.json()
    if resp.request.url.path.startswith("/api/") or resp.request.url.path == "/metrics":
        return body["error"]["code"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body["code"]


async def test_every_route_needs_a_key(api: Api) -> None:
    schema = (await api.client.get("/openapi.json")).json()
    calls = [(method.upper(), path) for path, ops in schema["paths"].items() if path not in PUBLIC for method in ops]
    assert len(calls) >= 18
    async with api.anonymous() as anonymous:
        for method, path in calls:
            url = (
                path.replace("{session_id}", "s1")
                .replace("{task_id}", "t1")
                .replace("{approval_id}", "a1")
                .replace("{path}", "f.txt")
            )
            for headers in (
                {},
                {"Authorization": "Bearer wrong-key"},
                {"X-API-Key": "wrong-key"},
                {"X-API-Key": ""},
                {"Authorization": "Bearer"},
            ):
                resp = await anonymous.request(method, url, json={}, headers=headers)
                assert resp.status_code == 401, (method, path, headers)
                assert error_code(resp) == "unauthorized"
                assert resp.headers["www-authenticate"] == "Bearer"


async def test_blank_api_keys_are_ignored_and_never_authenticate(make_api: Any) -> None:
    # ${CCBRIDGE_API_KEY:-} is "" when the variable is unset.
    async with make_api(api_keys=[KEY, "", "   "]) as api, api.anonymous() as client:
        for headers in ({"X-API-Key": ""}, {"Authorization": "Bearer"}, {"Authorization": "Bearer  x"}, {}):
            resp = await client.get("/api/v1/sessions", params={"user_id": "k"}, headers=headers)
            assert resp.status_code == 401, headers
        assert (await client.get("/api/v1/sessions", params={"user_id": "k"}, headers={"X-API-Key": KEY})).is_success
    with pytest.raises(ValueError, match="blank"):
        ApiKeys([KEY, ""])


async def test_bearer_and_x_api_key_and_several_keys(api: Api) -> None:
    async with api.anonymous() as client:
        for headers in (
            {"Authorization": f"Bearer {KEY}"},
            {"Authorization": f"Bearer {OTHER_KEY}"},
            {"X-API-Key": OTHER_KEY},
        ):
            resp = await client.get("/api/v1/sessions", params={"user_id": "k"}, headers=headers)
            assert resp.status_code == 200, headers


async def test_probes_need_no_key_and_ready_checks_the_store(api: Api) -> None:
    async with api.anonymous() as client:
        assert (await client.get("/health")).json()["status"] == "healthy"
        assert (await client.get("/ready")).json()["status"] == "ready"
        db = api.agent.store.path  # type: ignore[attr-defined]
        saved = db.read_bytes()
        for suffix in ("", "-wal", "-shm"):
            db.with_name(db.name + suffix).unlink(missing_ok=True)
        down = await client.get("/ready")
        assert down.status_code == 503 and down.json()["error"]["code"] == "store_unavailable"
        assert "deleted" in down.json()["error"]["message"] and down.json()["detail"].startswith("not ready: ")
        assert down.json()["error"]["instance_id"] == api.agent.instance_id  # which instance is not ready
        assert (await client.get("/health")).status_code == 200
        db.write_bytes(saved)  # restored: ready again without a restart
        assert (await client.get("/ready")).json()["status"] == "ready"


async def test_user_allowlist(make_api: Any) -> None:
    async with make_api(allowed_users=["alice"]) as api:
        ok = await api.client.post("/api/v1/chat", json={"text": "hi", "user_id": "alice"})
        assert ok.status_code == 200
        task = await api.client.post("/api/v1/chat/async", json={"text": "later", "user_id": "alice"})
        task_id = task.json()["task_id"]
        # bob's conversation exists (made before the allowlist, say), but the API may not touch it.
        bob = await api.agent.conversations.create(ConversationKey("api", "bob"))
        for method, url, body in [
            ("POST", "/api/v1/chat", {"text": "hi", "user_id": "bob"}),
            ("POST", "/api/v1/sessions", {"user_id": "bob"}),
            ("GET", "/api/v1/sessions?user_id=bob", None),
            ("GET", f"/api/v1/sessions/{bob.session_id}", None),
            ("GET", "/api/v1/approvals?user_id=bob", None),
            ("GET", f"/api/v1/tasks/{task_id}?user_id=bob", None),
            ("POST", "/chat", {"message": "hi", "user_id": "bob"}),
            ("POST", "/chat/async", {"message": "hi", "user_id": "bob"}),
            ("GET", "/session/user_bob/history", None),
            ("GET", f"/session/{bob.session_id}/history", None),
            ("GET", "/session/user_bob/history?user_id=bob", None),
            ("DELETE", "/session/user_bob", None),
            ("DELETE", f"/session/{bob.session_id}", None),
        ]:
            resp = await api.client.request(method, url, json=body)
            assert resp.status_code == 403, url
            assert error_code(resp) == "user_not_allowed", url
            assert "bob" in resp.text, url
        assert await api.agent.store.get(bob.key) is not None  # nothing was deleted
        every_id = (await api.client.get("/api/v1/sessions")).json()  # claude-agent-http's "all sessions"
        assert bob.session_id not in every_id and len(every_id) == 1
        assert (await api.client.get(f"/api/v1/tasks/{task_id}?user_id=alice")).status_code == 200


async def test_cors_is_configurable(make_api: Any) -> None:
    async with make_api(cors_origins=["https://app.example"]) as api, api.anonymous() as client:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        allowed = await client.options("/api/v1/chat", headers={"Origin": "https://app.example", **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        denied = await client.options("/api/v1/chat", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in denied.headers
        simple = await client.get("/health", headers={"Origin": "https://app.example"})
        assert simple.headers["access-control-allow-origin"] == "https://app.example"
    async with make_api() as api, api.anonymous() as client:
        resp = await client.get("/health", headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in resp.headers


async def test_request_body_limit(make_api: Any) -> None:
    async with make_api(max_body_bytes=2000) as api:
        big = await api.client.post("/api/v1/chat", json={"text": "x" * 5000, "user_id": "big"})
        assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
            yield b'{"text": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'", "user_id": "big"}'

        streamed = await api.client.post("/api/v1/chat", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "payload_too_large"
        assert await api.agent.store.turns(ConversationKey("api", "big"), 5) == []
        small = await api.client.post("/api/v1/chat", json={"text": "fits", "user_id": "big"})
        assert small.status_code == 200


async def test_max_concurrent_turns_is_a_429_with_retry_after(make_api: Any) -> None:
    async with make_api(max_concurrent_turns=1) as api:
        api.fake.enqueue(Hang("holding ", seconds=60))
        async with aconnect_sse(
            api.client, "POST", "/api/v1/chat/stream", json={"text": "hold", "user_id": "c1"}
        ) as source:
            async for sse in source.aiter_sse():
                if sse.json()["type"] == "text_delta":
                    break
            busy = await api.client.post("/api/v1/chat", json={"text": "me too", "user_id": "c2"})
            assert busy.status_code == 429 and busy.headers["retry-after"].isdigit()
            assert busy.json()["error"]["code"] == "too_many_turns"
            assert "max_concurrent_turns" in busy.json()["error"]["message"]
            queued = await api.client.post("/api/v1/chat/async", json={"text": "me too", "user_id": "c2"})
            assert queued.status_code == 429

        async def accepted() -> httpx.Response | None:
            resp = await api.client.post("/api/v1/chat", json={"text": "my turn", "user_id": "c2"})
            return resp if resp.status_code == 200 else None

        resp = await wait_until(accepted, what="the slot to be free again")
        assert resp.json()["text"] == "echo: my turn"


async def test_turn_timeout_is_a_504_and_an_error_event(make_api: Any) -> None:
    async with make_api(turn_timeout=3) as api:
        api.fake.rules["slow"] = [Hang("thinking ", seconds=60)]
        sync = await api.client.post("/api/v1/chat", json={"text": "slow sync", "user_id": "tt"})
        assert sync.status_code == 504
        error = sync.json()["error"]
        assert error["code"] == "turn_timeout" and "longer than 3s" in error["message"]
        assert "thinking ".startswith(error["text"])  # whatever arrived before the deadline
        events: list[tuple[str, Any]] = []
        body = {"text": "slow stream", "user_id": "tt"}
        async with aconnect_sse(api.client, "POST", "/api/v2/chat/stream", json=body) as source:
            async for sse in source.aiter_sse():
                events.append((sse.event, sse.json()))
        assert events[-1][0] == "error" and events[-1][1]["code"] == "turn_timeout"
        sessions = (await api.client.get("/api/v1/sessions", params={"user_id": "tt"})).json()
        history = (await api.client.get(f"/api/v1/sessions/{sessions[0]}/history")).json()["turns"]
        assert [t["status"] for t in history] == ["interrupted", "interrupted"]


def test_settings_refuse_to_start_without_keys() -> None:
    bot = load_bot_class("http_api")
    with pytest.raises(ConfigError) as err:
        bot.parse_settings("api", {})
    assert (
        "bots.api" in str(err.value) and "api_keys is empty" in str(err.value) and "allow_anonymous" in str(err.value)
    )
    for blank in ([""], ["", "  "]):  # e.g. an unset ${CCBRIDGE_API_KEY:-}: no key at all
        with pytest.raises(ConfigError, match="api_keys is empty"):
            bot.parse_settings("api", {"api_keys": blank})
    with pytest.raises(ConfigError, match="bots.api.max_body_bytes"):
        bot.parse_settings("api", {"api_keys": ["k" * 32], "max_body_bytes": 0})
    assert bot.parse_settings("api", {"allow_anonymous": True}).anonymous


async def test_anonymous_mode_serves_without_keys(make_api: Any) -> None:
    async with make_api(api_keys=[], allow_anonymous=True) as api, api.anonymous() as client:
        resp = await client.post("/api/v1/chat", json={"text": "open", "user_id": "anon"})
        assert resp.status_code == 200 and resp.json()["text"] == "echo: open"
