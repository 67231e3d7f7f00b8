"""The HTTP API on two instances behind one load balancer (in one process, a real redis-server): a turn
received on B runs on A, its owner; deny mode, approvals and async tasks work from either instance."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from core import Agent, Sections
from tests.fakes.anthropic_api import FakeAnthropicAPI, ToolCall
from tests.helpers import eventually
from tests.http_api.conftest import Api, read_sse, running_api
from tests.servers import RedisServer


@asynccontextmanager
async def two_instances(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, redis_server: RedisServer, user: str
) -> AsyncIterator[tuple[Api, Api]]:
    """The HTTP API on instances a and b; ``user``'s conversation is started on a (a owns it)."""
    prefix = f"h{uuid.uuid4().hex[:8]}:"

    def instance(name: str) -> Agent:
        coordination = {"backend": "redis", "url": redis_server.url, "instance_id": name, "key_prefix": prefix}
        return Agent(make_sections(coordination=coordination))

    async with instance("a") as a, instance("b") as b:
        async with running_api(a, fake_api) as api_a, running_api(b, fake_api) as api_b:
            started = await api_a.client.post("/api/v1/chat", json={"text": "my name is Ada", "user_id": user})
            assert started.status_code == 200, started.text
            yield api_a, api_b


def ran_on_a(api_a: Api, api_b: Api) -> bool:
    return api_b.agent.runtime.pool.keys() == [] and len(api_a.agent.runtime.pool.keys()) == 1


async def test_deny_mode_through_another_instance_denies_at_once(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, redis_server: RedisServer
) -> None:
    async with two_instances(make_sections, fake_api, redis_server, "u1") as (api_a, api_b):
        fake_api.enqueue(ToolCall("Bash", {"command": "echo hi", "description": "say hi"}))
        answer = await api_b.client.post("/api/v1/chat", json={"text": "please run it", "user_id": "u1"})
        assert answer.status_code == 200, answer.text
        [call] = answer.json()["tool_calls"]
        assert call["name"] == "Bash" and call["is_error"]
        [result] = fake_api.requests[-1].tool_results()
        assert "approval_mode is 'deny'" in str(result)  # denied at once, not "timed out"
        assert ran_on_a(api_a, api_b)


async def test_approvals_of_a_turn_running_on_another_instance_are_listed_and_answered(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, redis_server: RedisServer
) -> None:
    async with two_instances(make_sections, fake_api, redis_server, "u2") as (api_a, api_b):
        fake_api.enqueue(ToolCall("Bash", {"command": "echo hi-$((40+2))", "description": "say it"}))
        seen: dict[str, Any] = {}

        async def approve(_: str, data: dict[str, Any]) -> None:
            if data.get("type") != "approval_request":
                return
            for name, api in (("a", api_a), ("b", api_b)):  # listed by both instances, behind the balancer
                listed = await api.client.get("/api/v1/approvals", params={"user_id": "u2"})
                seen[name] = [p["id"] for p in listed.json()["approvals"]]
            answered = await api_b.client.post(f"/api/v1/approvals/{data['id']}", json={"decision": "allow_once"})
            seen["answer"], seen["id"] = answered.status_code, data["id"]

        body = {"text": "please run", "user_id": "u2", "approval_mode": "ask"}
        events = await read_sse(api_b.client, "/api/v1/chat/stream", body, approve)
        assert seen["a"] == seen["b"] == [seen["id"]] and seen["answer"] == 200
        assert any("hi-42" in str(data) for _, data in events)  # the command ran, once allowed
        listed = await api_b.client.get("/api/v1/approvals", params={"user_id": "u2"})
        assert listed.json()["approvals"] == []  # answered: no longer listed anywhere
        assert ran_on_a(api_a, api_b)


async def test_an_async_task_is_seen_from_either_instance_with_its_pending_approvals(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, redis_server: RedisServer
) -> None:
    async with two_instances(make_sections, fake_api, redis_server, "u3") as (api_a, api_b):
        fake_api.enqueue(ToolCall("Bash", {"command": "echo hi-$((40+2))", "description": "say it"}))
        body = {"text": "please run", "user_id": "u3", "approval_mode": "ask"}
        accepted = await api_b.client.post("/api/v1/chat/async", json=body)
        assert accepted.status_code == 202, accepted.text
        url = accepted.json()["status_url"]

        async def pending(api: Api) -> list[dict[str, Any]]:
            task = await api.client.get(url)
            assert task.status_code == 200, task.text
            return task.json()["pending_approvals"]

        await eventually(lambda: pending(api_b), what="the task's approval, seen on b")
        [waiting] = await pending(api_a)  # polled through the other instance
        assert waiting == (await pending(api_b))[0]
        answered = await api_a.client.post(f"/api/v1/approvals/{waiting['id']}", json={"decision": "allow_once"})
        assert answered.status_code == 200, answered.text

        async def done(api: Api) -> dict[str, Any] | None:
            task = (await api.client.get(url)).json()
            return task if task["status"] != "running" else None

        final = await eventually(lambda: done(api_a), what="the task done, seen on a")
        assert final["status"] == "completed" and final["pending_approvals"] == []
        assert "hi-42" in str(final["result"]) and final == await done(api_b)
        compat = await api_a.client.get(f"/task/{final['task_id']}")  # claude-code-server's route, on a too
        assert compat.status_code == 200 and compat.json()["status"] == "completed"
        assert ran_on_a(api_a, api_b)
