"""A sign of life at once: the typing indicator of an accepted message comes before any agent work.

The real Claude Code CLI against the fake Messages API; the order of events is recorded in one
log: the sink's ``typing`` call, the pool's ``lease`` of a client, the CLI's start (``spawn``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from core import (
    Agent,
    AgentEvent,
    ConversationKey,
    Dispatcher,
    IncomingMessage,
    ReplyStreamer,
    Sections,
    SinkLimits,
    TextDelta,
    TurnResult,
    UserRef,
)
from core.intake import IncomingFile
from core.reply import TypingShown
from tests.fakes.anthropic_api import FakeAnthropicAPI, Hang
from tests.fakes.recording_sink import RecordingSink
from tests.helpers import eventually

DM = ConversationKey("chat", "alice")


class LoggingSink(RecordingSink):
    """A recording sink that also writes its calls into a log shared with the agent's hooks."""

    def __init__(self, log: list[str], name: str) -> None:
        super().__init__(limits=SinkLimits(max_len=4000, min_edit_interval=0.05, typing_interval=0))
        self.log = log
        self.name = name

    async def typing(self) -> None:
        self.log.append(f"typing {self.name}")
        await super().typing()

    async def finalize(self, handle: Any | None, text: str) -> None:
        await super().finalize(handle, text)
        self.log.append(f"finalize {self.name}")


@pytest.fixture
async def observed(make_sections: Callable[..., Sections]) -> AsyncIterator[tuple[Dispatcher, list[str]]]:
    """A dispatcher whose pool leases and CLI starts are written into the log it returns."""
    log: list[str] = []
    async with Agent(make_sections()) as agent:
        runtime, pool = agent.runtime, agent.runtime.pool
        lease, connect = pool.lease, runtime._connect

        async def logged_lease(*args: Any, **kwargs: Any) -> Any:
            log.append("lease")
            return await lease(*args, **kwargs)

        async def logged_connect(warm: Any, request: Any) -> None:
            log.append("spawn")  # the CLI process is started in here
            await connect(warm, request)

        pool.lease = logged_lease  # type: ignore[method-assign]
        runtime._connect = logged_connect  # type: ignore[method-assign]
        yield Dispatcher(agent), log


def message(text: str, log: list[str], name: str) -> IncomingMessage:
    return IncomingMessage(key=DM, user=UserRef("alice", "Alice"), text=text, reply=LoggingSink(log, name))


def ops(msg: IncomingMessage) -> list[str]:
    return [op.name for op in msg.reply.ops]  # type: ignore[attr-defined]


async def test_the_indicator_comes_before_the_cli_starts_cold_and_before_the_lease_warm(
    observed: tuple[Dispatcher, list[str]],
) -> None:
    dispatcher, log = observed
    cold = message("hello", log, "cold")
    await dispatcher.handle(cold)
    assert cold.reply.visible() == ["echo: hello"]  # type: ignore[attr-defined]
    assert log[:3] == ["typing cold", "lease", "spawn"]
    assert ops(cold)[0] == "typing" and ops(cold).count("typing") == 1  # the reply does not repeat it

    log.clear()
    warm = message("again", log, "warm")
    await dispatcher.handle(warm)
    assert warm.reply.visible() == ["echo: again"]  # type: ignore[attr-defined]
    assert log == ["typing warm", "lease", "finalize warm"]  # the warm client: no CLI started
    assert ops(warm)[0] == "typing"


async def test_the_indicator_comes_before_the_files_are_downloaded(observed: tuple[Dispatcher, list[str]]) -> None:
    dispatcher, log = observed

    async def fetch(limit: int) -> bytes:
        log.append("download")
        return b"some notes"

    msg = message("read this", log, "files")
    msg.files = [IncomingFile("notes.txt", "text/plain", 10, fetch)]
    await dispatcher.handle(msg)
    assert msg.reply.visible()[-1].startswith("echo: read this")  # type: ignore[attr-defined]
    assert log[:4] == ["typing files", "download", "lease", "spawn"]


async def test_a_message_queued_behind_a_running_turn_shows_the_indicator_at_once(
    observed: tuple[Dispatcher, list[str]], fake_api: FakeAnthropicAPI
) -> None:
    dispatcher, log = observed
    fake_api.rules["long job"] = [Hang("working", seconds=60)]
    first, second = message("long job", log, "first"), message("quick one", log, "second")
    running = dispatcher.submit(first)
    await eventually(lambda: first.reply.visible(), what="the first reply streaming")  # type: ignore[attr-defined]
    queued = dispatcher.submit(second)
    await eventually(lambda: "typing second" in log, what="the queued message's indicator")
    assert log.count("lease") == 1 and "finalize first" not in log  # the first turn still runs
    assert ops(second)[0] == "typing"
    await dispatcher.conversations.stop(DM)
    await asyncio.wait_for(asyncio.gather(running, queued), 60)
    assert second.reply.visible()[-1] == "echo: quick one"  # type: ignore[attr-defined]
    assert log.index("typing second") < log.index("finalize first") < log.index("lease", log.index("typing second"))


async def test_a_command_or_a_refusal_shows_no_indicator(
    make_sections: Callable[..., Sections],
) -> None:
    async with Agent(make_sections(access={"allow_all": False, "allowlist": ["chat:alice"]})) as agent:
        dispatcher = Dispatcher(agent)
        log: list[str] = []
        command = message("/status", log, "command")
        outsider = IncomingMessage(
            key=ConversationKey("chat", "eve"), user=UserRef("eve"), text="hi", reply=LoggingSink(log, "outsider")
        )
        for msg in (command, outsider):
            await dispatcher.handle(msg)
        assert "typing" not in ops(command) and command.reply.visible()  # type: ignore[attr-defined]
        assert "typing" not in ops(outsider) and "allowlist" in outsider.reply.visible()[0]  # type: ignore[attr-defined]
        assert log == ["finalize command", "finalize outsider"]


async def test_the_final_text_waits_for_a_typing_call_still_under_way() -> None:
    # the final text clears the indicator on some platforms (a reaction taken off): a typing call
    # confirmed after it would leave the indicator on for good
    log: list[str] = []
    sink = LoggingSink(log, "reply")
    confirmed = asyncio.Event()

    async def slow_typing() -> None:
        log.append("typing sent")
        await confirmed.wait()
        log.append("typing confirmed")

    async def turn() -> AsyncIterator[AgentEvent]:
        yield TextDelta("hello")
        yield TurnResult(text="hello", session_id="s")

    shown = TypingShown(time.monotonic(), asyncio.create_task(slow_typing()))
    streamer = ReplyStreamer(sink, typing_shown=shown)
    running = asyncio.create_task(streamer.run(turn()))
    await eventually(lambda: streamer.terminal is not None, what="the turn's end")
    for _ in range(20):  # let the reply engine do all it can
        await asyncio.sleep(0)
    assert not running.done() and "finalize reply" not in log
    confirmed.set()
    await running
    assert log == ["typing sent", "typing confirmed", "finalize reply"]
    assert sink.visible() == ["hello"] and "typing" not in [op.name for op in sink.ops]  # interval 0: not repeated
