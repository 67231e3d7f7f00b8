"""``/``, ``/health`` (a superset of both replaced projects' answers), ``/ready`` (which instance, what it
owns) and ``/docs`` served offline."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from core import Agent, Sections
from tests.fakes.anthropic_api import FakeAnthropicAPI

from .conftest import Api, running_api


async def test_health_answers_both_seeds_fields_and_counts_live_sessions(api: Api) -> None:
    async with api.anonymous() as client:
        before = (await client.get("/health")).json()
        assert before["status"] == "healthy" and before["version"] and before["api_version"]
        assert before["storage_type"] == "sqlite" and before["uptime_seconds"] >= 0
        assert before["claude_version"].endswith("(Claude Code)") and before["active_sessions"] == 0
        await api.client.post("/api/v1/chat", json={"text": "wake up", "user_id": "h1"})
        after = (await client.get("/health")).json()
        assert after["active_sessions"] == 1  # a warm Claude Code process for h1
        root = (await client.get("/")).json()
        assert root["version"] == before["version"] and root["health"] == "/health" and root["docs"] == "/docs"
        assert {"/api/v1", "/api/v2", "/chat"} <= root["apis"].keys()


async def test_docs_load_their_assets_from_this_server(api: Api, make_api: Any) -> None:
    async with api.anonymous() as client:
        page = await client.get("/docs")
        assert page.status_code == 200 and "swagger-ui" in page.text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text) + re.findall(
            r"""url: ?["']([^"']+)["']""", page.text
        )
        assert urls and not [u for u in urls if "//" in u]  # nothing from another host (no CDN)
        for url in urls:
            asset = await client.get(url)
            assert asset.status_code == 200 and asset.content, url
        assert "SwaggerUIBundle" in (await client.get("/docs/assets/swagger-ui-bundle.js")).text
    async with make_api(docs=False) as hidden, hidden.anonymous() as client:
        assert (await client.get("/docs")).status_code == 404
        assert (await client.get("/openapi.json")).status_code == 404
        assert (await client.get("/")).json()["docs"] is None


async def test_ready_names_the_instance_single_and_owning_nothing(api: Api) -> None:
    async with api.anonymous() as client:
        ready = (await client.get("/ready")).json()
    assert ready == {"status": "ready", "instance_id": api.agent.instance_id, "shared": False, "owned": 0}
    assert ready["instance_id"]


async def test_ready_with_redis_coordination_counts_the_conversations_this_instance_owns(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, redis_url: str
) -> None:
    coordination = {
        "backend": "redis",
        "url": redis_url,
        "instance_id": "ready-a",
        "key_prefix": f"t{uuid.uuid4().hex}:",
    }
    async with Agent(make_sections(coordination=coordination)) as agent, running_api(agent, fake_api) as api:
        async with api.anonymous() as client:
            assert (await client.get("/ready")).json() == {
                "status": "ready",
                "instance_id": "ready-a",
                "shared": True,
                "owned": 0,
            }
            reply = await api.client.post("/api/v1/chat", json={"text": "hi", "user_id": "r1"})
            assert reply.status_code == 200, reply.text
            assert (await client.get("/ready")).json()["owned"] == 1
