"""Async mode: a task runs to completion; its signed callback reaches a receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from adapters.http_api import SIGNATURE_HEADER, TIMESTAMP_HEADER, ApiSettings, sign, verify
from adapters.http_api.callback_hosts import is_public
from adapters.http_api.callbacks import CallbackSender, Delivery
from adapters.http_api.errors import ApiError
from adapters.http_api.limits import TurnSlots
from adapters.http_api.tasks import TaskRegistry
from adapters.http_api.turns import TurnRunner, TurnSpec
from core import Agent, ConversationKey
from tests.fakes.anthropic_api import Error, FakeAnthropicAPI, Hang, ToolCall

from .conftest import KEY, SECRET, Api, CallbackReceiver, wait_until


async def poll_task(api: Api, task_id: str, path: str = "/api/v1/tasks/{}") -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        body = (await api.client.get(path.format(task_id))).json()
        return body if body["status"] in ("completed", "failed") else None

    return await wait_until(finished, what=f"task {task_id} to finish")


async def test_async_task_completes_and_the_callback_is_signed(api: Api, receiver: CallbackReceiver) -> None:
    accepted = await api.client.post(
        "/api/v1/chat/async", json={"text": "work in the background", "user_id": "t1", "callback_url": receiver.url}
    )
    assert accepted.status_code == 202, accepted.text
    task_id = accepted.json()["task_id"]
    assert accepted.json()["status_url"] == f"/api/v1/tasks/{task_id}"

    task = await poll_task(api, task_id)
    assert task["status"] == "completed" and task["error"] is None
    assert task["result"]["text"] == "echo: work in the background" and task["result"]["session_id"]
    assert task["completed_at"] and task["user_id"] == "t1"

    await wait_until(lambda: receiver.received, what="the callback")
    hit = receiver.received[0]
    assert hit.headers["X-CCBridge-Event"] == "task.completed" and hit.headers["X-CCBridge-Task-Id"] == task_id
    # The documented scheme, recomputed here: HMAC-SHA256(secret, "<timestamp>." + raw body).
    timestamp = hit.headers[TIMESTAMP_HEADER]
    assert abs(time.time() - int(timestamp)) < 600
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + hit.body, hashlib.sha256).hexdigest()
    assert hit.headers[SIGNATURE_HEADER] == f"sha256={expected}"
    assert verify(SECRET, hit.headers[TIMESTAMP_HEADER], hit.body, hit.headers[SIGNATURE_HEADER])
    assert not verify("wrong-secret", hit.headers[TIMESTAMP_HEADER], hit.body, hit.headers[SIGNATURE_HEADER])
    assert not verify(SECRET, hit.headers[TIMESTAMP_HEADER], hit.body + b" ", hit.headers[SIGNATURE_HEADER])
    payload = json.loads(hit.body)
    assert payload["task_id"] == task_id and payload["result"]["text"] == "echo: work in the background"

    delivered = await wait_until(lambda: _delivered(api, task_id), what="the delivery to be recorded")
    assert delivered["callback"]["attempts"] == 1 and delivered["callback"]["last_status"] == 200


async def _delivered(api: Api, task_id: str) -> dict[str, Any] | None:
    body = (await api.client.get(f"/api/v1/tasks/{task_id}")).json()
    return body if body["callback"] and body["callback"]["delivered"] else None


async def test_callback_is_retried_until_the_receiver_accepts(api: Api, receiver: CallbackReceiver) -> None:
    receiver.statuses = [500]
    accepted = await api.client.post(
        "/api/v1/chat/async", json={"text": "retry me", "user_id": "t2", "callback_url": receiver.url}
    )
    task_id = accepted.json()["task_id"]
    task = await wait_until(lambda: _delivered(api, task_id), what="the retried delivery")
    assert task["callback"]["attempts"] == 2 and len(receiver.received) == 2
    for hit in receiver.received:
        assert verify(SECRET, hit.headers[TIMESTAMP_HEADER], hit.body, hit.headers[SIGNATURE_HEADER])


async def test_failed_task_reports_the_error_and_the_callback_says_so(api: Api, receiver: CallbackReceiver) -> None:
    # One paid model call (a tool call), then the model is down: the failed turn cost something.
    api.fake.enqueue(ToolCall("Glob", {"pattern": "*"}), Error(500, "api_error", "model down", should_retry=False))
    accepted = await api.client.post(
        "/api/v1/chat/async", json={"text": "doomed", "user_id": "t3", "callback_url": receiver.url}
    )
    task = await poll_task(api, accepted.json()["task_id"])
    assert task["status"] == "failed" and task["result"] is None
    assert task["error"]["code"] == "agent_error" and "model down" in task["error"]["message"]
    assert task["error"]["cost_usd"] > 0
    await wait_until(lambda: receiver.received, what="the failure callback")
    assert receiver.received[0].headers["X-CCBridge-Event"] == "task.failed"


async def test_async_approval_mode_ask_shows_pending_approvals_in_the_task(api: Api) -> None:
    api.fake.enqueue(ToolCall("Bash", {"command": "touch asked.txt", "description": "make a file"}))
    accepted = await api.client.post(
        "/api/v1/chat/async", json={"text": "ask me", "user_id": "t4", "approval_mode": "ask"}
    )
    task_id = accepted.json()["task_id"]

    async def pending() -> list[dict[str, Any]]:
        return (await api.client.get(f"/api/v1/tasks/{task_id}")).json()["pending_approvals"]

    approvals = await wait_until(pending, what="the approval request to show in the task")
    assert approvals[0]["tool"] == "Bash" and approvals[0]["requested_by"] == "t4"
    answer = await api.client.post(f"/api/v1/approvals/{approvals[0]['id']}", json={"decision": "deny"})
    assert answer.status_code == 200 and answer.json()["outcome"] == "Denied by t4"
    task = await poll_task(api, task_id)
    assert task["status"] == "completed" and task["pending_approvals"] == []
    assert [(c["name"], c["is_error"]) for c in task["result"]["tool_calls"]] == [("Bash", True)]


async def test_unknown_task_and_callbacks_without_a_secret(api: Api, make_api: Any, receiver: CallbackReceiver) -> None:
    missing = await api.client.get("/api/v1/tasks/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "task_not_found"
    async with make_api(callback_secret=None) as unsigned:
        resp = await unsigned.client.post(
            "/api/v1/chat/async", json={"text": "x", "user_id": "t5", "callback_url": receiver.url}
        )
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "callbacks_disabled"
        assert "callback_secret" in resp.json()["error"]["message"]


def test_verify_refuses_old_and_future_timestamps() -> None:
    body = b'{"task_id": "t"}'
    now = int(time.time())
    fresh = str(now - 10)
    assert verify(SECRET, fresh, body, sign(SECRET, fresh, body))
    for stale in (str(now - 301), str(now + 301)):  # replayed, or from a clock far ahead
        assert not verify(SECRET, stale, body, sign(SECRET, stale, body))
        assert verify(SECRET, stale, body, sign(SECRET, stale, body), max_age=3600)
    assert not verify(SECRET, "yesterday", body, sign(SECRET, "yesterday", body))


@pytest.mark.parametrize("blank", ["", "   "])
async def test_a_blank_callback_secret_means_callbacks_are_off(
    make_api: Any, receiver: CallbackReceiver, blank: str
) -> None:
    # config.yaml.example's ${CCBRIDGE_CALLBACK_SECRET:-} is "" when the variable is unset.
    assert ApiSettings.model_validate({"api_keys": [KEY], "callback_secret": blank}).callback_secret is None
    async with make_api(callback_secret=blank) as api:
        resp = await api.client.post(
            "/api/v1/chat/async", json={"text": "x", "user_id": "t6", "callback_url": receiver.url}
        )
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "callbacks_disabled"
    assert receiver.received == []
    with pytest.raises(ValueError, match="blank"):
        CallbackSender(blank, timeout=1, retries=0)


@pytest.mark.parametrize(
    "url",
    [
        "RECEIVER",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
        "http://2130706433/hook",  # 127.0.0.1 as a number
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/hook",
        "http://[::ffff:192.168.1.1]/hook",
    ],
)
async def test_callbacks_to_this_machine_or_private_networks_are_refused_by_default(
    make_api: Any, receiver: CallbackReceiver, url: str
) -> None:
    url = receiver.url if url == "RECEIVER" else url
    async with make_api(callback_allow_private=False) as api:
        resp = await api.client.post("/api/v1/chat/async", json={"text": "x", "user_id": "t7", "callback_url": url})
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["code"] == "callback_url_forbidden" and "callback_allow_private" in error["message"]
        assert len(api.fake.requests) == 0  # no turn was started
    assert receiver.received == []


def fake_dns(table: dict[str, list[str]]) -> Any:
    """A resolver answering from ``table`` (tests cannot use real DNS)."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]

    return resolve


async def test_delivery_resolves_the_host_and_refuses_private_addresses(receiver: CallbackReceiver) -> None:
    port = urlsplit(receiver.url).port
    dns = fake_dns({"hooks.test": ["127.0.0.1"], "mixed.test": ["93.184.216.34", "10.1.2.3"]})
    guarded = CallbackSender(SECRET, timeout=5, retries=2, backoff=0, resolver=dns)
    try:
        for host, address in (("hooks.test", "127.0.0.1"), ("mixed.test", "10.1.2.3")):
            delivery = await guarded.send(
                Delivery(f"http://{host}:{port}/hook"), b"{}", event="task.completed", task_id="t"
            )
            assert not delivery.delivered and delivery.attempts == 1  # refused, not retried
            assert delivery.last_error is not None
            assert f"resolves to {address}" in delivery.last_error and "callback_allow_private" in delivery.last_error
    finally:
        await guarded.aclose()
    assert receiver.received == []


async def test_delivery_goes_to_the_address_that_was_checked(
    receiver: CallbackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = urlsplit(receiver.url).port
    connects: list[Any] = []
    guarded_connect = socket.socket.connect  # the suite's loopback-only guard

    def recording(self: socket.socket, address: Any) -> Any:
        connects.append(address[0] if isinstance(address, tuple) else address)
        return guarded_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", recording)
    dns = fake_dns({"hooks.test": ["127.0.0.1"], "public.test": ["93.184.216.34"]})
    sender = CallbackSender(SECRET, timeout=5, retries=0, allow_private=True, resolver=dns)
    public_only = CallbackSender(SECRET, timeout=5, retries=0, resolver=dns)
    try:
        delivery = await sender.send(
            Delivery(f"http://hooks.test:{port}/hook"), b'{"n": 1}', event="task.completed", task_id="t"
        )
        assert delivery.delivered and receiver.received[0].headers["Host"] == f"hooks.test:{port}"
        assert receiver.received[0].body == b'{"n": 1}'
        assert connects == ["127.0.0.1"]
        # A public name is allowed; the connection goes to the address that was checked
        # (and no further here: the suite's network guard refuses it).
        public = await public_only.send(
            Delivery(f"http://public.test:{port}/hook"), b"{}", event="task.completed", task_id="t"
        )
        assert not public.delivered and public.last_error and "ConnectError" in public.last_error
        assert connects == ["127.0.0.1", "93.184.216.34"]
        unknown = await public_only.send(
            Delivery(f"http://nowhere.test:{port}/hook"), b"{}", event="task.completed", task_id="t"
        )
        assert not unknown.delivered and "unknown host nowhere.test" in (unknown.last_error or "")
        assert len(connects) == 2
    finally:
        await sender.aclose()
        await public_only.aclose()
    assert len(receiver.received) == 1


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("2002:a00:1::", False),  # 6to4 around 10.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 around 10.0.0.1
        ("64:ff9b::5db8:d822", True),  # NAT64 around 93.184.216.34
        ("fe80::1", False),
        ("2606:4700::1111", True),
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public(address) is public


async def test_delivery_tries_each_checked_address_in_turn(
    receiver: CallbackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = urlsplit(receiver.url).port
    connects: list[Any] = []
    guarded_connect = socket.socket.connect

    def recording(self: socket.socket, address: Any) -> Any:
        connects.append(address[0])
        return guarded_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", recording)
    dns = fake_dns({"two.test": ["127.0.0.2", "127.0.0.1"]})  # nothing listens on 127.0.0.2
    sender = CallbackSender(SECRET, timeout=5, retries=0, allow_private=True, resolver=dns)
    try:
        delivery = await sender.send(Delivery(f"http://two.test:{port}/hook"), b"{}", event="e", task_id="t")
    finally:
        await sender.aclose()
    assert delivery.delivered and delivery.attempts == 1
    assert connects == ["127.0.0.2", "127.0.0.1"]


async def test_behind_a_proxy_the_callback_goes_by_name(
    receiver: CallbackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = receiver.url.removesuffix("/hook")  # the receiver plays the proxy: it sees the absolute URL
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", proxy)
    dns = fake_dns({"public.test": ["93.184.216.34"], "private.test": ["10.0.0.7"]})
    sender = CallbackSender(SECRET, timeout=5, retries=0, resolver=dns)
    try:
        delivery = await sender.send(Delivery("http://public.test:8000/hook"), b"{}", event="e", task_id="t")
        refused = await sender.send(Delivery("http://private.test:8000/hook"), b"{}", event="e", task_id="t")
    finally:
        await sender.aclose()
    assert delivery.delivered
    assert receiver.received[0].target == "http://public.test:8000/hook"  # by name, for the proxy to resolve
    assert not refused.delivered and "resolves to 10.0.0.7" in (refused.last_error or "")
    assert len(receiver.received) == 1


async def test_a_full_registry_refuses_a_task_before_its_turn_starts(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    fake_api.enqueue(Hang("busy ", seconds=60))
    slots = TurnSlots(4)
    registry = TaskRegistry(max_tasks=1, ttl=60)
    started: list[str] = []

    def start(text: str, user: str) -> TurnRunner:
        started.append(text)
        key = ConversationKey("api", user)
        spec = TurnSpec(key=key, text=text, user_id=user, session_id=None, approval_mode="deny", timeout=60)
        return TurnRunner(agent, spec, slots.acquire().release).start()

    try:
        first = registry.submit(lambda: start("hold", "r1"), "r1")
        assert registry.get(first.id) is first and first.status == "running"
        with pytest.raises(ApiError) as refused:
            registry.submit(lambda: start("one more", "r2"), "r2")
        assert refused.value.status_code == 429 and refused.value.code == "too_many_tasks"
        assert started == ["hold"] and slots.in_use == 1 and len(registry) == 1
    finally:
        await registry.shutdown()
    assert slots.in_use == 0
