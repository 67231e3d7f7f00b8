"""``/metrics`` on the HTTP API (after real turns, parsed with prometheus-client's parser), and a user over
budget answered 429 with nothing run."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core import Agent, Sections
from tests.core.test_metrics import parse, value
from tests.fakes.anthropic_api import FakeAnthropicAPI

from .conftest import Api, running_api


async def test_metrics_need_the_api_key_and_count_the_api_turns(api: Api) -> None:
    bodies = []
    for text in ("one", "two"):
        resp = await api.client.post("/api/v1/chat", json={"text": text, "user_id": "u1"})
        assert resp.status_code == 200, resp.text
        bodies.append(resp.json())
    async with api.anonymous() as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 401  # like every route but the probes
    scraped = await api.client.get("/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    samples = parse(scraped.text)
    assert value(samples, "ccbridge_turns_total", bot="agent", outcome="ok") == 2
    assert value(samples, "ccbridge_turn_duration_seconds_count", bot="agent") == 2
    assert value(samples, "ccbridge_cost_usd_total", bot="agent") == pytest.approx(sum(b["cost_usd"] for b in bodies))
    assert value(samples, "ccbridge_pool_spawns_total", bot="agent") == 1
    assert value(samples, "ccbridge_turns_running", bot="agent") == 0


async def test_a_user_over_budget_gets_429_and_nothing_runs(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    async with Agent(make_sections(budgets={"daily_usd": 0.00001})) as agent, running_api(agent, fake_api) as api:
        first = await api.client.post("/api/v1/chat", json={"text": "one", "user_id": "spender"})
        assert first.status_code == 200, first.text
        calls = len(fake_api.requests)
        refused = await api.client.post("/api/v1/chat", json={"text": "two", "user_id": "spender"})
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["code"] == "budget_exceeded" and "daily budget" in error["message"]
        assert len(fake_api.requests) == calls  # the model was never called
        samples = parse((await api.client.get("/metrics")).text)
        assert value(samples, "ccbridge_budget_refusals_total", bot="agent", period="day") == 1
