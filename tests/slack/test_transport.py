"""How Slack's requests reach bolt (``adapters.slack.transport``), checked request by request.

The transport serves a real bolt app on 127.0.0.1 whose listeners only record what they
get, with bolt's own signature check turned off: every refusal here is the transport's.
Requests are signed the way Slack signs them (:func:`tests.slack.fake_slack.signed_headers`).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.config import SlackConfig
from adapters.slack.transport import MAX_REQUEST_BYTES, HttpTransport, SocketTransport
from core import ConfigError

from .fake_slack import APP_TOKEN, BOT_TOKEN, BOT_USER, SIGNING_SECRET, EventPoster, FakeSlack, event_callback


@dataclass
class Served:
    transport: HttpTransport
    poster: EventPoster
    events: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.poster.url

    @property
    def ran(self) -> int:
        return len(self.events) + len(self.commands) + len(self.actions)


def recording_app(fake: FakeSlack, served: Served | None = None) -> tuple[AsyncApp, Served]:
    app = AsyncApp(
        client=AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url),
        signing_secret=SIGNING_SECRET,
        request_verification_enabled=False,  # the transport's check is the only one
    )
    record = served or Served(None, EventPoster(""))  # type: ignore[arg-type]

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any]) -> None:
        record.events.append(event)

    @app.command("/claude")
    async def on_command(ack: Any, command: dict[str, Any]) -> None:
        await ack()
        record.commands.append(command)

    @app.action("ccbridge_deny")
    async def on_action(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        record.actions.append(body)

    return app, record


def config(fake: FakeSlack, **settings: Any) -> SlackConfig:
    base: dict[str, Any] = {
        "bot_token": BOT_TOKEN,
        "mode": "http",
        "signing_secret": SIGNING_SECRET,
        "host": "127.0.0.1",
        "port": 0,
        "base_url": fake.api_url,
    }
    base.update(settings)
    return SlackConfig.model_validate(base)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def serve(slack: FakeSlack) -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    started: list[HttpTransport] = []

    async def start(**settings: Any) -> Served:
        app, served = recording_app(slack)
        transport = HttpTransport(app, config(slack, **settings))
        port = await transport.start()
        started.append(transport)
        assert port == transport.listener.port and port > 0
        served.transport = transport
        served.poster = EventPoster(f"http://127.0.0.1:{port}{transport.config.path}")
        return served

    yield start
    for transport in started:
        await transport.stop()


def mention(text: str, ts: str = "1700000000.000100") -> dict[str, Any]:
    return {"type": "app_mention", "user": "U1", "text": f"<@{BOT_USER}> {text}", "channel": "C1", "ts": ts}


async def post(url: str, body: bytes | Any, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers=headers or {}) as response:
            return response.status


async def test_a_signed_event_reaches_bolt(serve: Any) -> None:
    served = await serve()
    status, _ = await served.poster.event(mention("hello"))
    assert status == 200
    assert [e["text"] for e in served.events] == [f"<@{BOT_USER}> hello"]


async def test_forged_stale_and_unsigned_requests_are_401_before_the_body_is_read(serve: Any) -> None:
    served = await serve()
    body = json.dumps(event_callback(mention("forged"))).encode()
    now = int(time.time())
    for kwargs in (
        {"secret": "not-the-secret"},
        {"timestamp": now - 6 * 60},  # older than Slack's five minutes
        {"timestamp": now + 6 * 60},
        {"headers": {"X-Slack-Signature": "v0=" + "0" * 64}},
        {"headers": {"X-Slack-Request-Timestamp": "soon"}},
    ):
        assert (await served.poster.send(body, **kwargs))[0] == 401, kwargs
    assert await post(served.url, body, {"Content-Type": "application/json"}) == 401  # no signature at all
    for garbage in (b"{not json", b"payload=%7Bnot+json", "caf\xe9".encode("latin-1"), b"[1]"):
        assert await post(served.url, garbage, {"Content-Type": "application/json"}) == 401, garbage
        assert (await served.poster.send(garbage, secret="not-the-secret"))[0] == 401, garbage
    assert served.ran == 0


async def test_a_request_signed_within_the_window_passes(serve: Any) -> None:
    served = await serve()
    status, _ = await served.poster.event(mention("late but fine"), timestamp=int(time.time()) - 4 * 60)
    assert status == 200 and len(served.events) == 1


async def test_signed_bodies_slack_never_sends_are_400_and_run_nothing(serve: Any) -> None:
    served = await serve()
    for body in (
        b"[1, 2]",
        b"null",
        b"{}",
        b"{not json",
        json.dumps({"type": "event_callback", "event": {"type": 5}}).encode(),
    ):
        status, text = await served.poster.send(body)
        assert status == 400 and "malformed request body" in text, body
    form = urlencode({"payload": "not json"}).encode()
    status, _ = await served.poster.send(form, content_type="application/x-www-form-urlencoded")
    assert status == 400
    assert served.ran == 0


async def test_a_body_over_the_limit_is_413_whether_or_not_it_says_its_length(serve: Any) -> None:
    served = await serve()
    huge = json.dumps(event_callback(mention("x" * (MAX_REQUEST_BYTES + 1)))).encode()
    status, text = await served.poster.send(huge)
    assert status == 413 and "too large" in text

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the size shows while reading
        for _ in range(5):
            yield b"x" * (1024 * 1024)

    assert await post(served.url, chunks(), {"Content-Type": "application/json"}) == 413
    assert served.ran == 0
    status, _ = await served.poster.event(mention("y" * (MAX_REQUEST_BYTES // 2)))
    assert status == 200 and len(served.events) == 1  # big, but under the limit


async def test_slacks_ssl_check_is_answered_unsigned_and_runs_nothing(serve: Any) -> None:
    served = await serve()
    probe = urlencode({"ssl_check": "1", "token": "legacy"}).encode()
    assert await post(served.url, probe, {"Content-Type": "application/x-www-form-urlencoded"}) == 200
    forged = urlencode({"ssl_check": "1", "command": "/claude", "text": "hi", "user_id": "U1"}).encode()
    assert await post(served.url, forged, {"Content-Type": "application/x-www-form-urlencoded"}) == 401
    assert served.ran == 0


async def test_slash_commands_and_button_presses_reach_bolt_as_slack_meant_them(serve: Any) -> None:
    served = await serve()
    fields = {"command": "/claude", "text": "parse this payload: a < b", "user_id": "U1", "channel_id": "C1"}
    fields |= {"team_id": "T1", "channel_name": "payload-team", "response_url": "http://127.0.0.1:9/r"}
    status, _ = await served.poster.command(fields)
    assert status == 200
    assert [c["text"] for c in served.commands] == ["parse this payload: a < b"]  # not read as a payload
    press = {
        "type": "block_actions",
        "user": {"id": "U1"},
        "team": {"id": "T1"},
        "channel": {"id": "C1"},
        "actions": [{"action_id": "ccbridge_deny", "value": "r1"}],
    }
    status, _ = await served.poster.interaction(press)
    assert status == 200 and served.actions[0]["actions"][0]["value"] == "r1"


async def test_the_query_string_and_headers_reach_bolt(serve: Any, slack: FakeSlack) -> None:
    served = await serve()
    seen: list[dict[str, Any]] = []

    @served.transport.app.middleware
    async def record(req: Any, resp: Any, next: Any) -> Any:
        seen.append({"query": req.query, "retry": req.context.get("retry_num"), "headers": req.headers})
        return await next()

    served.poster.url += "?from=test"
    status, _ = await served.poster.event(mention("again"), retry_num=2)
    assert status == 200
    assert seen and seen[0]["query"] == {"from": ["test"]}
    assert seen[0]["headers"]["x-slack-retry-num"] == ["2"]


async def test_the_health_probe_and_stopping(serve: Any) -> None:
    served = await serve()
    base = f"http://127.0.0.1:{served.transport.listener.port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200 and await response.json() == {"ok": True}
    await served.transport.stop()
    await served.transport.stop()  # twice: nothing to do
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(served.url, b"{}")


async def test_without_a_signing_secret_nothing_is_accepted(slack: FakeSlack) -> None:
    app, served = recording_app(slack)
    cfg = config(slack).model_copy(update={"signing_secret": None})
    transport = HttpTransport(app, cfg)
    port = await transport.start()
    try:
        served.poster = EventPoster(f"http://127.0.0.1:{port}{cfg.path}")
        assert (await served.poster.event(mention("hi")))[0] == 401
        assert served.ran == 0
    finally:
        await transport.stop()


async def test_socket_mode_connects_and_delivers(slack: FakeSlack) -> None:
    app, served = recording_app(slack)
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
    transport = SocketTransport(app, config(slack, mode="socket", app_token=APP_TOKEN), client, app_token_key="k")
    await transport.start()
    try:
        await slack.wait_socket()
        envelope_id = await slack.socket_send(event_callback(mention("over the socket")))
        assert await slack.wait_ack(envelope_id) == {"envelope_id": envelope_id}
        for _ in range(100):
            if served.events:
                break
            await __import__("asyncio").sleep(0.05)
        assert [e["text"] for e in served.events] == [f"<@{BOT_USER}> over the socket"]
    finally:
        await transport.stop()
        await transport.stop()


async def test_a_refused_app_token_is_a_config_error_naming_the_key(slack: FakeSlack) -> None:
    app, _ = recording_app(slack)
    client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
    slack.fail_next("apps.connections.open", "invalid_auth")
    transport = SocketTransport(
        app, config(slack, mode="socket", app_token=APP_TOKEN), client, app_token_key="bots.slack.app_token"
    )
    with pytest.raises(ConfigError) as info:
        await transport.start()
    assert str(info.value).startswith("bots.slack.app_token:") and "invalid_auth" in str(info.value)
    await transport.stop()
