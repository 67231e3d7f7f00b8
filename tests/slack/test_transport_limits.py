"""The Slack HTTP transport at its edges: the size limit to the byte, what a refusal answers, where it
listens. (The request-by-request checks are in ``test_transport.py``; these cases were written
against mutants of ``adapters/slack/transport.py`` that survived ``make mutation``.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from adapters.slack.transport import MAX_REQUEST_BYTES, HttpTransport

from .fake_slack import EventPoster, FakeSlack
from .test_transport import config, recording_app


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sized(size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes (a list: signed, but not what Slack sends)."""
    return b'["' + b"x" * (size - 4) + b'"]'


async def test_the_limit_is_inclusive_and_the_413_says_it(slack: FakeSlack) -> None:
    app, served = recording_app(slack)
    transport = HttpTransport(app, config(slack))
    port = await transport.start()
    try:
        poster = EventPoster(f"http://127.0.0.1:{port}{transport.config.path}")
        status, text = await poster.send(sized(MAX_REQUEST_BYTES + 1))
        assert status == 413 and json.loads(text) == {"error": "request body too large (the limit is 4 MB)"}
        at_limit = sized(MAX_REQUEST_BYTES)
        assert len(at_limit) == MAX_REQUEST_BYTES
        status, text = await poster.send(at_limit)
        assert status == 400 and "malformed request body" in text  # read and checked: not too large
        assert served.ran == 0
    finally:
        await transport.stop()


async def test_refusals_answer_json_errors(slack: FakeSlack) -> None:
    app, served = recording_app(slack)
    transport = HttpTransport(app, config(slack))
    port = await transport.start()
    try:
        poster = EventPoster(f"http://127.0.0.1:{port}{transport.config.path}")
        status, text = await poster.send(b"{}", secret="not-the-secret")
        assert status == 401 and json.loads(text) == {"error": "invalid request"}
        status, text = await poster.send(b"[1, 2]")
        assert status == 400 and list(json.loads(text)) == ["error"]
        assert json.loads(text)["error"].startswith("malformed request body (")
        assert served.ran == 0
    finally:
        await transport.stop()


async def test_it_listens_on_the_configured_host_and_port_only(slack: FakeSlack) -> None:
    app, _ = recording_app(slack)
    port = free_port()
    transport = HttpTransport(app, config(slack, port=port))
    assert transport.listener.port is None
    await transport.stop()  # before start: nothing to stop
    assert await transport.start() == port == transport.listener.port
    try:
        assert [addr[:2] for addr in transport.listener.addresses] == [("127.0.0.1", port)]
    finally:
        await transport.stop()


async def test_the_server_leaves_signals_to_the_bot_and_logs_no_requests(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: None)  # the bot's own graceful shutdown
    try:
        app, _ = recording_app(slack)
        transport = HttpTransport(app, config(slack))
        port = await transport.start()
        with caplog.at_level(logging.DEBUG, logger="aiohttp.access"):
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    assert response.status == 200
        await transport.stop()
        assert [r for r in caplog.records if r.name == "aiohttp.access"] == []
    finally:
        assert loop.remove_signal_handler(signal.SIGTERM)  # still there: neither replaced nor removed
