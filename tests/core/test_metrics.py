"""Prometheus metrics after real turns (the Claude Code CLI against the fake Messages API), scraped and
parsed with prometheus-client's own parser; the ops port's /health, /ready and /metrics."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core import Agent, ApprovalRequest, ConversationKey, Decision, RateLimited, Sections, SinkError, UserRef
from core.config import OpsSettings
from core.dispatcher import Dispatcher, IncomingMessage
from core.metrics import Metrics
from core.ops import OpsServer
from tests.fakes.anthropic_api import Error, FakeAnthropicAPI, Hang, ToolCall
from tests.fakes.recording_sink import RecordingSink
from tests.helpers import eventually, immutable

REPO = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition text: (sample name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(agent: Agent) -> Samples:
    body, content_type = agent.metrics.render()
    assert content_type.startswith("text/plain")
    return parse(body.decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def say(dispatcher: Dispatcher, text: str, sink: RecordingSink | None = None, user: str = "alice") -> list[str]:
    sink = sink or RecordingSink()
    await dispatcher.handle(IncomingMessage(ConversationKey("chat", user), UserRef(user), text, sink))
    return sink.visible()


async def test_turns_latencies_cost_and_the_pool_are_counted_after_real_turns(agent: Agent) -> None:
    first = await agent.chat("one", user_id="alice")
    second = await agent.chat("two", user_id="alice")
    await agent.chat("three", user_id="bob")
    samples = scrape(agent)
    assert value(samples, "ccbridge_turns_total", bot="agent", outcome="ok") == 3
    assert value(samples, "ccbridge_turn_duration_seconds_count", bot="agent") == 3
    assert value(samples, "ccbridge_turn_duration_seconds_sum", bot="agent") > 0
    assert value(samples, "ccbridge_first_update_seconds_count", bot="agent") == 3
    assert first.cost_usd and second.cost_usd
    assert value(samples, "ccbridge_cost_usd_total", bot="agent") == pytest.approx(
        first.cost_usd + second.cost_usd + first.cost_usd  # bob's first turn costs what alice's did
    )
    assert value(samples, "ccbridge_pool_spawns_total", bot="agent") == 2  # one process per conversation
    assert value(samples, "ccbridge_pool_clients", bot="agent") == 2
    assert value(samples, "ccbridge_pool_evictions_total", bot="agent") == 0
    assert value(samples, "ccbridge_turns_running", bot="agent") == 0
    assert value(samples, "ccbridge_turns_queued", bot="agent") == 0


async def test_pool_evictions_are_counted(make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI) -> None:
    async with Agent(make_sections(agent={"pool_size": 1})) as agent:
        await agent.chat("one", user_id="alice")
        await agent.chat("two", user_id="bob")  # the pool holds one: alice's idle process makes room
        samples = scrape(agent)
    assert value(samples, "ccbridge_pool_spawns_total", bot="agent") == 2
    assert value(samples, "ccbridge_pool_evictions_total", bot="agent") == 1


async def test_approvals_are_counted_by_outcome(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    fake_api.rules["run it"] = [ToolCall("Bash", {"command": "echo hi"})]

    async def allow(request: ApprovalRequest) -> Decision:
        return Decision.ALLOW_ONCE

    async def deny(request: ApprovalRequest) -> Decision:
        return Decision.DENY

    await agent.chat("run it", user_id="alice", on_approval=allow)
    await agent.chat("run it", user_id="alice", on_approval=deny)
    samples = scrape(agent)
    assert value(samples, "ccbridge_approvals_total", bot="agent", outcome="allow_once") == 1
    assert value(samples, "ccbridge_approvals_total", bot="agent", outcome="deny") == 1


async def test_platform_rate_limits_and_errors_are_counted_by_the_platform_passed_in(agent: Agent) -> None:
    dispatcher = Dispatcher(agent)
    sink = RecordingSink()
    sink.fail("finalize", RateLimited(0.25), SinkError("boom"))  # the final text: rate limited, refused, then lands
    assert (await say(dispatcher, "hello", sink))[-1] == "echo: hello"
    samples = scrape(agent)
    assert value(samples, "ccbridge_platform_rate_limits_total", bot="agent", platform="chat") == 1
    assert value(samples, "ccbridge_platform_rate_limit_wait_seconds_total", bot="agent", platform="chat") == 0.25
    assert value(samples, "ccbridge_platform_errors_total", bot="agent", platform="chat") == 1


async def test_model_retries_count_the_status_and_a_failed_turn_its_outcome(
    make_sections: Callable[..., Sections], cli_env: dict[str, str], fake_api: FakeAnthropicAPI
) -> None:
    sections = make_sections(agent={"max_retries": 1})
    env = {k: v for k, v in sections.agent.env.items() if k != "CLAUDE_CODE_MAX_RETRIES"}
    sections = sections.model_copy(update={"agent": sections.agent.model_copy(update={"env": env})})
    overloaded = Error(529, "overloaded_error", "Overloaded", retry_after=0)
    fake_api.enqueue(overloaded, overloaded)
    async with Agent(sections) as agent:
        result = await agent.chat("hi", user_id="alice")
        assert result.is_error
        samples = scrape(agent)
    assert value(samples, "ccbridge_model_retries_total", bot="agent", status="529") == 1
    assert value(samples, "ccbridge_turns_total", bot="agent", outcome="error") == 1
    assert value(samples, "ccbridge_turns_total", bot="agent", outcome="ok") == 0


async def test_running_and_queued_turns_are_live_gauges(agent: Agent, fake_api: FakeAnthropicAPI) -> None:
    fake_api.rules["long story"] = [Hang("Once upon a time", seconds=60)]
    dispatcher = Dispatcher(agent)
    first = asyncio.create_task(say(dispatcher, "a long story"))
    await eventually(lambda: fake_api.requests, what="the first turn to reach the model")
    second = asyncio.create_task(say(dispatcher, "and then?"))

    def gauges() -> tuple[float, float]:
        samples = scrape(agent)
        return value(samples, "ccbridge_turns_running", bot="agent"), value(
            samples, "ccbridge_turns_queued", bot="agent"
        )

    await eventually(lambda: gauges() == (1, 1), what="one turn running, one queued")
    await agent.stop("alice", platform="chat")
    await asyncio.gather(first, second)
    assert gauges() == (0, 0)
    samples = scrape(agent)
    assert value(samples, "ccbridge_turns_total", bot="agent", outcome="interrupted") == 1
    assert value(samples, "ccbridge_turns_total", bot="agent", outcome="ok") == 1


async def test_store_errors_are_counted_by_operation(agent: Agent) -> None:
    dispatcher = Dispatcher(agent)
    assert await say(dispatcher, "first") == ["echo: first"]
    path = agent.store.path  # type: ignore[attr-defined]
    with immutable(path, path.with_name(path.name + "-wal")):
        shown = await say(dispatcher, "second")
    assert "store is unavailable" in shown[0]
    samples = scrape(agent)
    failed = {
        dict(labels)["operation"]: count
        for (name, labels), count in samples.items()
        if name == "ccbridge_store_errors_total" and dict(labels)["kind"] == "unavailable"
    }
    assert failed and all(count >= 1 for count in failed.values())
    assert set(failed) <= {"put", "put_turn", "put_meta", "add_meta", "claim_key"}  # writes failed, reads did not


async def test_agents_in_one_process_keep_their_own_numbers_unless_they_share_a_registry(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI
) -> None:
    shared = Metrics()
    async with (
        Agent(make_sections(), name="one", metrics=shared) as one,
        Agent(make_sections(), name="two", metrics=shared) as two,
        Agent(make_sections(), name="alone") as alone,
    ):
        await one.chat("a", user_id="u1")
        await two.chat("b", user_id="u2")
        await alone.chat("c", user_id="u3")
        samples = parse(shared.render()[0].decode())
        assert value(samples, "ccbridge_turns_total", bot="one", outcome="ok") == 1
        assert value(samples, "ccbridge_turns_total", bot="two", outcome="ok") == 1
        assert value(samples, "ccbridge_turns_total", bot="alone", outcome="ok") == 0
        assert value(samples, "ccbridge_pool_spawns_total", bot="one") == 1
        own = scrape(alone)
        assert value(own, "ccbridge_turns_total", bot="alone", outcome="ok") == 1
        assert value(own, "ccbridge_turns_total", bot="one", outcome="ok") == 0


async def test_the_ops_port_serves_health_readiness_and_metrics(agent: Agent) -> None:
    await agent.chat("hello", user_id="alice")
    async with OpsServer(OpsSettings(port=0), [agent], agent.metrics.metrics) as server:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            health = await client.get("/health")
            assert health.status_code == 200 and health.json()["status"] == "healthy"
            ready = await client.get("/ready")
            assert ready.status_code == 200
            assert ready.json() == {
                "status": "ready",
                "bots": {"agent": {"instance_id": agent.instance_id, "shared": False, "owned": 0}},
            }
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
            samples = parse(metrics.text)
            assert value(samples, "ccbridge_turns_total", bot="agent", outcome="ok") == 1
            path = agent.store.path  # type: ignore[attr-defined]
            with immutable(path, path.with_name(path.name + "-wal")):
                not_ready = await client.get("/ready")
                assert (await client.get("/health")).status_code == 200  # liveness never touches the store
            assert not_ready.status_code == 503
            assert not_ready.json()["status"] == "not ready" and "store" in not_ready.json()["problems"]["agent"][0]
            assert not_ready.json()["bots"]["agent"]["instance_id"] == agent.instance_id
            assert (await client.get("/ready")).status_code == 200  # writable again: ready without a restart


def test_the_grafana_dashboard_only_uses_metrics_that_exist() -> None:
    dashboard = json.loads((REPO / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    used = {name for expr in exprs for name in re.findall(r"\bccbridge_[a-z_]+", expr)}
    families = {family.name for family in Metrics().registry.collect()}  # counters' names lack _total
    known = {f"{name}{suffix}" for name in families for suffix in ("", "_total", "_bucket", "_sum", "_count")}
    assert used and used <= known, used - known
    assert {f.removeprefix("ccbridge_") for f in families} <= {
        name.removeprefix("ccbridge_").removesuffix(suffix)
        for name in used
        for suffix in ("_total", "_bucket", "_sum", "_count", "")
        if name.endswith(suffix)
    }, "every metric has a panel"
