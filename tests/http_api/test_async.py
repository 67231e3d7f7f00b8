"""Async mode: a task runs to completion; its signed callback reaches a receiver on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

from adapters.http_api import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.fakes.anthropic_api import Error, ToolCall

from .conftest import SECRET, Api, CallbackReceiver, wait_until


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
    api.fake.rules["doomed"] = [Error(500, "api_error", "model down")]
    accepted = await api.client.post(
        "/api/v1/chat/async", json={"text": "doomed", "user_id": "t3", "callback_url": receiver.url}
    )
    task = await poll_task(api, accepted.json()["task_id"])
    assert task["status"] == "failed" and task["result"] is None
    assert task["error"]["code"] == "agent_error" and "model down" in task["error"]["message"]
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
