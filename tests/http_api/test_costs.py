"""``cost_usd`` is the turn's own cost everywhere the API shows it (the chat response, the stream's done,
the history, claude-code-server's metadata), on a warm client, after a restart and after the pool evicted
the client; a session's total is the sum of its turns."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from core import Agent, Sections
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.helpers import claude_children, eventually

from .conftest import Api, by_type, read_sse, running_api


async def chat(api: Api, user: str, text: str = "the same question") -> dict[str, Any]:
    resp = await api.client.post("/api/v1/chat", json={"text": text, "user_id": user})
    assert resp.status_code == 200, resp.text
    return resp.json()


async def history(api: Api, session_id: str) -> dict[str, Any]:
    return (await api.client.get(f"/api/v1/sessions/{session_id}/history", params={"limit": 100})).json()


def same(values: list[float], expected: float) -> bool:
    return all(v == pytest.approx(expected) for v in values)


async def test_each_turn_reports_its_own_cost_on_a_warm_client(api: Api) -> None:
    turns = [await chat(api, "spender") for _ in range(4)]
    cost = turns[0]["cost_usd"]
    assert cost > 0
    assert same([t["cost_usd"] for t in turns], cost)  # not 1x, 2x, 3x, 4x
    assert [t["session_cost_usd"] for t in turns] == pytest.approx([cost, 2 * cost, 3 * cost, 4 * cost])
    sid = turns[0]["session_id"]

    done = by_type(await read_sse(api.client, "/api/v1/chat/stream", {"text": "the same question", "session_id": sid}))
    assert done[-1][0] == "done" and done[-1][1]["cost_usd"] == pytest.approx(cost)
    assert done[-1][1]["session_cost_usd"] == pytest.approx(5 * cost)
    compat = (await api.client.post("/chat", json={"message": "the same question", "user_id": "spender"})).json()
    assert compat["metadata"]["cost_usd"] == pytest.approx(cost)
    assert compat["metadata"]["session_cost_usd"] == pytest.approx(6 * cost)

    h = await history(api, sid)
    assert same([t["cost_usd"] for t in h["turns"]], cost) and len(h["turns"]) == 6
    assert h["total_cost_usd"] == pytest.approx(sum(t["cost_usd"] for t in h["turns"]))
    session = (await api.client.get(f"/api/v1/sessions/{sid}")).json()
    assert session["total_cost_usd"] == pytest.approx(6 * cost)


async def test_costs_stay_per_turn_when_the_pool_evicted_the_client_and_after_a_restart(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    sections = make_sections(agent={"pool_size": 1})
    async with Agent(sections) as agent, running_api(agent, fake_api) as api:
        first = await chat(api, "evicted")  # one turn only: a new process's first total equals it
        cost, sid = first["cost_usd"], first["session_id"]
        other = await chat(api, "evictor")  # takes the only warm slot: "evicted"'s client is closed
        assert [k.owner for k in agent.runtime.pool.keys()] == ["evictor"]
        back = await chat(api, "evicted")
        assert same([other["cost_usd"], back["cost_usd"]], cost)
        assert back["session_cost_usd"] == pytest.approx(2 * cost)
    async with Agent(sections) as agent, running_api(agent, fake_api) as api:  # a restart
        later = [await chat(api, "evicted") for _ in range(2)]
        assert [t["session_id"] for t in later] == [sid, sid]
        assert same([t["cost_usd"] for t in later], cost)
        assert [t["session_cost_usd"] for t in later] == pytest.approx([3 * cost, 4 * cost])
        h = await history(api, sid)
        assert same([t["cost_usd"] for t in h["turns"]], cost) and len(h["turns"]) == 4
        assert h["total_cost_usd"] == pytest.approx(4 * cost)
        session = (await api.client.get(f"/api/v1/sessions/{sid}")).json()
        assert session["total_cost_usd"] == pytest.approx(4 * cost)


async def test_a_claude_code_process_killed_between_turns_leaves_the_next_turn_its_own_cost(api: Api) -> None:
    # A process saves the session's total only when it exits cleanly: one killed leaves the next process
    # starting from an older total, which must not make the next turn look free.
    turns = [await chat(api, "crashy") for _ in range(2)]
    for key in list(api.agent.runtime.pool.keys()):
        await api.agent.runtime.pool.close_client(key)  # a clean exit: the total of two turns is saved
    turns.append(await chat(api, "crashy"))  # a new process, which will not save its total of three
    cost = turns[0]["cost_usd"]
    assert same([t["cost_usd"] for t in turns], cost)
    for pid in claude_children():
        os.kill(pid, signal.SIGKILL)
    await eventually(lambda: not claude_children(), what="the killed Claude Code gone")
    await asyncio.sleep(0.2)
    replies = []
    for _ in range(3):
        resp = await api.client.post("/api/v1/chat", json={"text": "after the crash", "user_id": "crashy"})
        replies.append(resp)
    assert all(r.status_code in (200, 503) for r in replies) and replies[-1].status_code == 200
    ok = [r.json() for r in replies if r.status_code == 200]  # the first may meet the dead process (503)
    assert len(ok) >= 2
    assert same([t["cost_usd"] for t in ok], cost)
    sid = turns[0]["session_id"]
    h = await history(api, sid)
    assert h["total_cost_usd"] == pytest.approx(sum(t["cost_usd"] or 0 for t in h["turns"]))
    assert h["total_cost_usd"] == pytest.approx((3 + len(ok)) * cost)
