"""The HTTP API served by a real uvicorn on 127.0.0.1, over a real agent (the Claude Code CLI
against the fake Messages API); httpx (+ httpx-sse) as the client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from aiohttp import web
from fastapi import FastAPI
from httpx_sse import aconnect_sse

from adapters.http_api import ApiSettings, create_app
from adapters.http_api.context import ApiContext, Reload
from core import Agent
from tests.fakes.anthropic_api import FakeAnthropicAPI

KEY = "test-key-0123456789"
OTHER_KEY = "second-key-9876543210"
ADMIN_KEY = "admin-key-5647382910"
SECRET = "callback-secret"


def settings(**overrides: Any) -> ApiSettings:
    base: dict[str, Any] = {
        "api_keys": [KEY, OTHER_KEY],
        "callback_secret": SECRET,
        "callback_allow_private": True,  # the callback receiver is on 127.0.0.1
        "max_concurrent_turns": 8,
        "turn_timeout": 120,
    }
    base.update(overrides)
    return ApiSettings.model_validate(base)


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or task.done(), what="uvicorn to start")
        assert not task.done(), "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait({task}, timeout=30)


async def wait_until(
    condition: Callable[[], Any] | Callable[[], Awaitable[Any]], *, timeout: float = 30.0, what: str = "condition"
) -> Any:
    """Poll ``condition`` (sync or async) until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Api:
    base_url: str
    client: httpx.AsyncClient  # authenticated
    agent: Agent
    fake: FakeAnthropicAPI
    app: FastAPI

    @property
    def ctx(self) -> ApiContext:
        return self.app.state.ctx

    def anonymous(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=60, **kwargs)


@asynccontextmanager
async def running_api(
    agent: Agent, fake: FakeAnthropicAPI, *, reload: Reload | None = None, **overrides: Any
) -> AsyncIterator[Api]:
    app = create_app(agent, settings(**overrides), reload=reload)
    async with serve(app) as base_url:
        async with httpx.AsyncClient(
            base_url=base_url, timeout=60, headers={"Authorization": f"Bearer {KEY}"}
        ) as client:
            yield Api(base_url, client, agent, fake, app)


SseEvent = tuple[str, dict[str, Any]]


async def read_sse(client: httpx.AsyncClient, url: str, body: dict[str, Any], on_event: Any = None) -> list[SseEvent]:
    """Every event of an SSE response, read by a real SSE client (httpx-sse), as (SSE event name,
    JSON data); an unnamed event is a "message" event. ``on_event`` sees each as it arrives."""
    events: list[SseEvent] = []
    async with aconnect_sse(client, "POST", url, json=body) as source:
        assert source.response.status_code == 200, await source.response.aread()
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async for sse in source.aiter_sse():
            events.append((sse.event, sse.json()))
            if on_event is not None:
                await on_event(sse.event, sse.json())
    return events


def by_type(events: list[SseEvent]) -> list[tuple[str, dict[str, Any]]]:
    """(data type, data) of each event: the same whether the stream names its events (v2) or not (v1)."""
    return [(data["type"], data) for _, data in events]


@pytest.fixture
async def api(agent: Agent, fake_api: FakeAnthropicAPI) -> AsyncIterator[Api]:
    async with running_api(agent, fake_api) as running:
        yield running


@pytest.fixture
def make_api(agent: Agent, fake_api: FakeAnthropicAPI) -> Callable[..., Any]:
    """``async with make_api(max_concurrent_turns=1) as api:`` for other settings (``reload=``: the
    callback of ``POST /admin/reload``)."""
    return lambda **overrides: running_api(agent, fake_api, **overrides)


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    target: str = ""  # the request line's target: a path, or an absolute URL when asked as a proxy


@dataclass
class CallbackReceiver:
    """A tiny webhook receiver on 127.0.0.1 recording what it gets."""

    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers for the next requests (default 200)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(await request.read(), dict(request.headers), request.raw_path))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"ok": status == 200}, status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    recv = CallbackReceiver()
    app = web.Application()
    app.router.add_post("/hook", recv.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    recv.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield recv
    finally:
        await runner.cleanup()
