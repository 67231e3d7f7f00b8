"""The four ways of answering a chat message that the benchmark compares.

A scenario is started once, then asked for one turn at a time (the runner
interleaves the scenarios' turns so that machine noise hits all of them alike);
each turn returns a :class:`Sample`: "message in" -> first update, -> final update.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from claude_agent_sdk import (
    ClaudeAgentOptions,
    ClaudeSDKClient,
    PermissionResultAllow,
    ResultMessage,
    StreamEvent,
    ToolPermissionContext,
)

from core import Agent, ConversationKey, Dispatcher, IncomingMessage, Sections, UserRef

from .env import BenchEnv, BenchError
from .fake_model import REPLY
from .timing import Sample, TimingSink, TurnClock

_LINE_LIMIT = 64 * 1024 * 1024  # the CLI's init line lists every tool; asyncio's default limit is 64 KiB
_PROCESS_TIMEOUT = 120.0


def prompt(i: int) -> str:
    return f"benchmark message {i}"


def is_text_delta(event: dict[str, Any]) -> bool:
    return event.get("type") == "content_block_delta" and (event.get("delta") or {}).get("type") == "text_delta"


class Scenario(ABC):
    name: ClassVar[str]
    label: ClassVar[str]

    def __init__(self, env: BenchEnv) -> None:
        self.env = env

    async def start(self) -> None:
        """Prepare (connect, open stores); no turn is run yet."""

    @abstractmethod
    async def turn(self, i: int) -> Sample:
        """Answer message number ``i`` (0 creates the conversation)."""

    async def close(self) -> None:
        """Release everything :meth:`start` and the turns acquired."""


# -- ccbridge ------------------------------------------------------------------
STAGES = [
    ("prompt written", "ccbridge: message in -> prompt written to the CLI (access, store, lanes, workspace)"),
    ("first delta read", "Claude Code CLI + fake model: prompt -> first text delta read by the SDK"),
]


class CCBridgeWarm(Scenario):
    """Dispatcher + Agent (SQLite store), the conversation's warm client reused every turn."""

    name = "ccbridge-warm"
    label = "ccbridge, warm conversation"
    key = ConversationKey("bench", "user-1")
    user = UserRef("user-1", "Bench")

    async def start(self) -> None:
        base = self.env.dir(self.name)
        sections = Sections.model_validate(
            {
                "agent": {"env": self.env.cli_env, "pool_size": 4},
                "workspace": {"base_dir": str(base / "workspaces")},
                "store": {"backend": "sqlite", "path": str(base / "ccbridge.db")},
                "access": {"allow_all": True},
            }
        )
        self.agent = await Agent(sections).start()
        self.dispatcher = Dispatcher(self.agent)

    async def before_turn(self, i: int) -> None:
        """Hook run before the clock starts."""

    async def turn(self, i: int) -> Sample:
        await self.before_turn(i)
        clock = TurnClock()  # message in
        self._observe_client(clock)
        sink = TimingSink(clock)
        await self.dispatcher.handle(IncomingMessage(self.key, self.user, prompt(i), reply=sink))
        if REPLY not in sink.text:
            raise BenchError(f"{self.name} turn {i}: unexpected reply {sink.text[:300]!r}")
        return clock.staged(STAGES, last="ccbridge: first delta -> sink.post (translate, reply engine)")

    def _observe_client(self, clock: TurnClock) -> None:
        """Timestamp, on the conversation's warm SDK client, when the prompt is written and the first delta read.

        Wraps the two methods the runtime calls on this one client object (benchmark
        instrumentation only; core is untouched). No warm client yet: no stages.
        """
        warm = self.agent.runtime.pool.get(self.key)
        client = warm.client if warm is not None else None
        if client is None:
            return
        cls = type(client)

        async def query(*args: Any, **kwargs: Any) -> None:
            await cls.query(client, *args, **kwargs)
            clock.mark("prompt written")

        async def receive_response() -> AsyncIterator[Any]:
            async for msg in cls.receive_response(client):
                if isinstance(msg, StreamEvent) and is_text_delta(msg.event):
                    clock.mark("first delta read")
                yield msg

        client.query = query  # type: ignore[method-assign]
        client.receive_response = receive_response  # type: ignore[method-assign]

    async def close(self) -> None:
        await self.agent.close()


class CCBridgeColdResume(CCBridgeWarm):
    """As warm, but the warm client is closed before every turn: each turn starts the CLI with --resume."""

    name = "ccbridge-cold"
    label = "ccbridge, cold resume"

    async def before_turn(self, i: int) -> None:
        warm = self.agent.runtime.pool.get(self.key)
        if warm is not None:
            await warm.disconnect()  # wait until the old process is gone, so it does not compete for the CPU
        self.agent.runtime.forget(self.key)


# -- the raw SDK -----------------------------------------------------------------
class RawSDKWarm(Scenario):
    """One ClaudeSDKClient connected once; per turn query() -> first text delta, ResultMessage.

    The CLI is started the way ccbridge starts it where that changes its per-turn speed:
    the ``claude_code`` system prompt preset, no setting sources, and a ``can_use_tool``
    callback (with one, the CLI answers measurably sooner here). So the difference to
    ccbridge warm is ccbridge's own work, not CLI flags.
    """

    name = "raw-sdk-warm"
    label = "raw SDK warm client"

    async def start(self) -> None:
        async def allow(name: str, tool_input: dict[str, Any], ctx: ToolPermissionContext) -> PermissionResultAllow:
            return PermissionResultAllow()

        options = ClaudeAgentOptions(
            cwd=str(self.env.dir(self.name)),
            system_prompt={"type": "preset", "preset": "claude_code"},
            include_partial_messages=True,
            setting_sources=[],
            can_use_tool=allow,
            env=self.env.cli_env,
        )
        self.client = ClaudeSDKClient(options)
        await self.client.connect()

    async def turn(self, i: int) -> Sample:
        clock = TurnClock()
        await self.client.query(prompt(i))
        result: ResultMessage | None = None
        async for msg in self.client.receive_response():
            if isinstance(msg, StreamEvent) and msg.parent_tool_use_id is None and is_text_delta(msg.event):
                clock.mark_first()
            elif isinstance(msg, ResultMessage):
                clock.mark_final()
                result = msg
        if result is None or result.is_error or REPLY not in (result.result or ""):
            raise BenchError(f"{self.name} turn {i}: unexpected result {result!r}")
        return clock.sample()

    async def close(self) -> None:
        await self.client.disconnect()


# -- a process per message (the seeds' approach) -----------------------------------
class ProcessPerMessage(Scenario):
    """A fresh ``claude -p --resume <session> --output-format stream-json`` process per message."""

    name = "process-per-message"
    label = "claude -p --resume per message"

    async def start(self) -> None:
        self.cwd = str(self.env.dir(self.name))
        self.session_id = str(uuid.uuid4())

    async def turn(self, i: int) -> Sample:
        session = ["--session-id", self.session_id] if i == 0 else ["--resume", self.session_id]
        clock = TurnClock()
        proc = await asyncio.create_subprocess_exec(
            str(self.env.cli),
            "-p",
            *session,
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
            prompt(i),
            cwd=self.cwd,
            env=self.env.process_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        assert proc.stdout is not None and proc.stderr is not None
        stderr = asyncio.create_task(proc.stderr.read())
        result: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(_PROCESS_TIMEOUT):
                async for raw in proc.stdout:
                    line = json.loads(raw) if raw.strip() else {}
                    kind = line.get("type")
                    if (
                        kind == "stream_event"
                        and not line.get("parent_tool_use_id")
                        and is_text_delta(line.get("event") or {})
                    ):
                        clock.mark_first()
                    elif kind == "result":
                        clock.mark_final()
                        result = line
                await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        err = (await stderr).decode(errors="replace").strip()
        if proc.returncode != 0 or result is None or result.get("is_error") or REPLY not in str(result.get("result")):
            raise BenchError(f"{self.name} turn {i}: exit {proc.returncode}, result {result!r}, stderr {err[-500:]!r}")
        return clock.sample()


SCENARIOS: list[type[Scenario]] = [CCBridgeWarm, CCBridgeColdResume, RawSDKWarm, ProcessPerMessage]
