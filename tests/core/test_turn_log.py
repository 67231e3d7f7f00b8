"""Logs: one line per turn (INFO, structured fields), agent failures at WARNING with the reason, the
JSON format of ``ccbridge`` itself, and the HTTP API's access log on by default."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from core import Agent, AgentEvent, ConversationKey, Sections, TextDelta, UserRef
from core.dispatcher import Dispatcher, IncomingMessage
from tests.fakes.anthropic_api import Error, FakeAnthropicAPI, Hang
from tests.fakes.recording_sink import RecordingSink
from tests.helpers import claude_children, eventually

from .test_run_bot import run_bot, write_config


def turn_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "core.observe" and getattr(r, "event", None) == "turn"]


async def test_each_turn_logs_one_info_line_with_its_facts(agent: Agent, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="core.observe")
    result = await agent.chat("hello", user_id="alice")
    await Dispatcher(agent).handle(
        IncomingMessage(ConversationKey("chat", "room", "t1"), UserRef("bob", "Bob"), "hi there", RecordingSink())
    )
    first, second = turn_records(caplog)
    assert first.levelno == logging.INFO
    assert (first.bot, first.conversation, first.user, first.outcome) == ("agent", "api:alice", "api:alice", "ok")  # type: ignore[attr-defined]
    assert first.cost_usd == pytest.approx(result.cost_usd) and first.cost_usd > 0  # type: ignore[attr-defined]
    assert first.duration_s > 0 and first.first_update_s <= first.duration_s  # type: ignore[attr-defined]
    assert first.session_id == result.session_id and first.error is None  # type: ignore[attr-defined]
    message = first.getMessage()
    assert message.startswith("turn ended: bot=agent conversation=api:alice user=api:alice outcome=ok duration=")
    assert message.endswith(f"cost=${result.cost_usd:.4f}")
    assert (second.conversation, second.user, second.user_name) == ("chat:room:t1", "chat:bob", "Bob")  # type: ignore[attr-defined]


async def test_an_overloaded_model_is_a_warning_naming_the_reason(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sections = make_sections(agent={"max_retries": 1})
    env = {k: v for k, v in sections.agent.env.items() if k != "CLAUDE_CODE_MAX_RETRIES"}
    sections = sections.model_copy(update={"agent": sections.agent.model_copy(update={"env": env})})
    overloaded = Error(529, "overloaded_error", "Overloaded", retry_after=0)
    fake_api.enqueue(overloaded, overloaded)
    async with Agent(sections) as agent:
        await agent.chat("hi", user_id="alice")
    [turn] = turn_records(caplog)
    assert turn.levelno == logging.WARNING and turn.outcome == "error"  # type: ignore[attr-defined]
    assert "overloaded" in turn.error.lower() and "reason=" in turn.getMessage()  # type: ignore[attr-defined]
    retry = next(r for r in caplog.records if r.name == "core.translate" and "retries" in r.getMessage())
    assert retry.levelno == logging.WARNING and "529" in retry.getMessage()


async def test_a_dead_cli_is_a_warning_naming_the_reason(
    agent: Agent, fake_api: FakeAnthropicAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake_api.enqueue(Hang("working", seconds=60))
    events: list[AgentEvent] = []

    async def run() -> None:
        async for event in agent.stream("long", user_id="alice"):
            events.append(event)

    task = asyncio.create_task(run())
    await eventually(lambda: any(isinstance(e, TextDelta) for e in events), what="streamed text")
    for pid in claude_children():
        os.kill(pid, signal.SIGKILL)
    await asyncio.wait_for(task, 30)
    [turn] = turn_records(caplog)
    assert turn.levelno == logging.WARNING and turn.outcome == "unavailable"  # type: ignore[attr-defined]
    assert "stopped unexpectedly" in turn.error and "stopped unexpectedly" in turn.getMessage()  # type: ignore[attr-defined]


async def test_the_ccbridge_command_writes_the_turn_line_as_json_fields(
    tmp_path: Path, cli_env: dict[str, str], fake_api: FakeAnthropicAPI
) -> None:
    config = write_config(
        tmp_path,
        cli_env,
        log_level="INFO",
        log_format="json",
        bots={"me": {"kind": "console", "user": "alice"}},
    )
    code, out, err = await run_bot("--config", str(config), stdin="hello json\n", cwd=tmp_path)
    assert code == 0, err
    assert out.splitlines() == ["echo: hello json"]
    records = [json.loads(line) for line in err.splitlines()]
    [turn] = [r for r in records if r.get("event") == "turn"]
    assert turn["level"] == "INFO" and turn["logger"] == "core.observe"
    assert (turn["bot"], turn["user"], turn["outcome"]) == ("me", "console:alice", "ok")
    assert turn["conversation"].startswith("console:")
    assert turn["cost_usd"] > 0 and turn["duration_s"] > 0 and turn["session_id"]
    assert turn["message"].startswith("turn ended: bot=me conversation=console:")


async def test_the_http_api_logs_each_request_by_default(agent: Agent, caplog: pytest.LogCaptureFixture) -> None:
    from bots.http_api import HttpApiBot, HttpApiSettings

    caplog.set_level(logging.INFO, logger="uvicorn.access")
    settings = HttpApiSettings.model_validate({"api_keys": ["a-key-long-enough-0123"], "port": 0})
    assert settings.access_log is True
    server = HttpApiBot("api", agent, settings).server()
    serving = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started, what="uvicorn to start")
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/health")).status_code == 200
        await eventually(
            lambda: any(r.name == "uvicorn.access" and "GET /health" in r.getMessage() for r in caplog.records),
            what="the access log line",
        )
    finally:
        server.should_exit = True
        await asyncio.wait({serving}, timeout=30)
