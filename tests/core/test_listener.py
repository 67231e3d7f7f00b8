"""core.listener: an adapter's POST routes and /healthz on one port, behind a size limit."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from core.listener import Listener

LIMIT = 1024
TOO_LARGE = {"error": "too large"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Echo:
    """A route that answers with the length of the body it was given."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, request: web.Request, raw: bytes) -> web.Response:
        self.bodies.append(raw)
        return web.json_response({"length": len(raw)})


@pytest.fixture
async def served() -> AsyncIterator[tuple[Listener, Echo, str]]:
    echo = Echo()
    listener = Listener("test", "127.0.0.1", 0, max_body=LIMIT, too_large=TOO_LARGE)
    port = await listener.start({"/in": echo})
    try:
        yield listener, echo, f"http://127.0.0.1:{port}"
    finally:
        await listener.stop()


async def test_a_route_gets_the_whole_body_up_to_the_limit(served: tuple[Listener, Echo, str]) -> None:
    listener, echo, base = served
    assert listener.port and listener.port > 0
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/in", data=b"x" * LIMIT) as response:
            assert response.status == 200 and await response.json() == {"length": LIMIT}
        async with session.post(f"{base}/in", data=b"x" * (LIMIT + 1)) as response:
            assert response.status == 413 and await response.json() == TOO_LARGE
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200 and await response.json() == {"ok": True}
    assert echo.bodies == [b"x" * LIMIT]


async def test_a_body_without_a_length_is_cut_off_at_the_limit(served: tuple[Listener, Echo, str]) -> None:
    _, echo, base = served

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(2):
            yield b"x" * LIMIT

    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/in", data=chunks()) as response:
            assert response.status == 413
    assert echo.bodies == []


async def test_it_listens_where_asked_and_stops() -> None:
    port = free_port()
    listener = Listener("test", "127.0.0.1", port, max_body=LIMIT, too_large=TOO_LARGE)
    assert listener.port is None and listener.addresses == []
    await listener.stop()  # before start: nothing to stop
    assert await listener.start({"/in": Echo()}) == port == listener.port
    assert [a[:2] for a in listener.addresses] == [("127.0.0.1", port)]
    await listener.stop()
    await listener.stop()  # a second time: nothing to do
    assert listener.addresses == []
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session:
            await session.get(f"http://127.0.0.1:{port}/healthz")


async def test_a_taken_port_raises_and_leaves_nothing_open() -> None:
    first = Listener("first", "127.0.0.1", 0, max_body=LIMIT, too_large=TOO_LARGE)
    port = await first.start({"/in": Echo()})
    try:
        second = Listener("second", "127.0.0.1", port, max_body=LIMIT, too_large=TOO_LARGE)
        with pytest.raises(OSError):
            await second.start({"/in": Echo()})
        assert second.addresses == [] and second.port is None
    finally:
        await first.stop()


async def test_without_aiohttp_start_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    listener = Listener("test", "127.0.0.1", 0, max_body=LIMIT, too_large=TOO_LARGE)
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # as if it were not installed
    with pytest.raises(ModuleNotFoundError) as info:
        await listener.start({"/in": Echo()})
    assert info.value.name == "aiohttp"


async def test_it_leaves_signals_to_the_bot_and_logs_no_requests(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: None)  # the bot's own graceful shutdown
    listener = Listener("test", "127.0.0.1", 0, max_body=LIMIT, too_large=TOO_LARGE)
    try:
        port = await listener.start({"/in": Echo()})
        with caplog.at_level(logging.DEBUG, logger="aiohttp.access"):
            async with aiohttp.ClientSession() as session:
                async with session.post(f"http://127.0.0.1:{port}/in", data=b"{}") as response:
                    assert response.status == 200
        assert [r for r in caplog.records if r.name == "aiohttp.access"] == []
    finally:
        await listener.stop()
        assert loop.remove_signal_handler(signal.SIGTERM)  # neither replaced nor removed
