"""The agent runtime: runs one turn of a conversation on a warm Claude Code client.

``run_turn`` yields the turn's normalized events (see :mod:`core.events`). Tool
permission requests from the CLI are decided by the :class:`ToolPolicy`; those
that need a person become :class:`ApprovalRequested` events in the same stream,
answered through the :class:`ApprovalBroker`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import mimetypes
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claude_agent_sdk import (
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    CLINotFoundError,
    HookMatcher,
    PermissionResultAllow,
    PermissionResultDeny,
    ResultMessage,
    ToolPermissionContext,
    create_sdk_mcp_server,
    tool,
)

from .approvals import ApprovalBroker
from .client_pool import ClientPool, ClientSpec, WarmClient
from .config import AgentSettings
from .errors import AgentUnavailable
from .events import (
    AgentEvent,
    ApprovalRequested,
    ApprovalResolved,
    Decision,
    FileOffered,
    TurnError,
    TurnResult,
)
from .keys import ConversationKey
from .tool_policy import ALLOW, ToolContext, ToolPolicy, Verdict
from .translate import TurnTranslator, summarize_tool_input
from .workspace import is_within

log = logging.getLogger(__name__)

SEND_FILE_TOOL = "mcp__ccbridge__send_file"  # checks its own path; always allowed
_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
_MAX_IMAGE_BYTES = 5 * 1024 * 1024
_MAX_SEND_BYTES = 50 * 1024 * 1024
_INTERRUPT_GRACE = 10.0
_BRIDGE_PROMPT = (
    "You are talking with people through a chat bridge (ccbridge). Keep replies readable in a chat. "
    "Your working directory is this conversation's workspace; files you create there stay there. "
    f"To hand a file to the user, call the {SEND_FILE_TOOL} tool with its path."
)


@dataclass
class Attachment:
    """A file the user sent, already saved inside the conversation's workspace."""

    path: Path
    name: str
    mime_type: str | None = None

    @property
    def is_image(self) -> bool:
        mime = self.mime_type or mimetypes.guess_type(self.name)[0]
        return mime in _IMAGE_TYPES


@dataclass
class TurnRequest:
    key: ConversationKey
    session_id: str
    resume: bool  # the session already has a transcript
    cwd: str
    root: str
    model: str | None
    text: str
    user_id: str
    is_admin: bool = False
    attachments: list[Attachment] = field(default_factory=list)
    stop_requested: bool = False  # set by /stop, even before the CLI has the prompt


@dataclass
class TurnState:
    """The running turn of a warm client: where its events go."""

    request: TurnRequest
    queue: asyncio.Queue[AgentEvent] = field(default_factory=asyncio.Queue)
    translator: TurnTranslator = field(default_factory=TurnTranslator)
    healthy: bool = True
    timed_out: bool = False

    def emit(self, event: AgentEvent) -> None:
        self.queue.put_nowait(event)


class AgentRuntime:
    def __init__(self, settings: AgentSettings, policy: ToolPolicy, approvals: ApprovalBroker) -> None:
        self.settings = settings
        self.policy = policy
        self.approvals = approvals
        self.pool = ClientPool(settings.pool_size, settings.idle_timeout)
        self._session_allowed: dict[str, set[str]] = {}

    async def start(self) -> None:
        self.pool.start()

    async def close(self) -> None:
        await self.pool.close()

    # -- conversation control ------------------------------------------------
    def is_running(self, key: ConversationKey) -> bool:
        warm = self.pool.get(key)
        return bool(warm and warm.turn)

    async def interrupt(self, key: ConversationKey, reason: str = "turn stopped") -> bool:
        """Stop the running turn of ``key`` (the session is kept). True if one was running."""
        warm = self.pool.get(key)
        turn = warm.turn if warm else None
        if warm is None or turn is None or warm.client is None:
            return False
        turn.translator.interrupt_requested = True
        self.approvals.deny_all(key, reason)
        try:
            await asyncio.wait_for(warm.client.interrupt(), _INTERRUPT_GRACE)
        except Exception as exc:
            log.warning("interrupt of %s failed (%r); closing its process", key, exc)
            turn.healthy = False
            self.pool.discard(key)
        return True

    def forget(self, key: ConversationKey, session_id: str | None = None) -> None:
        """Close the warm client of ``key`` (after /new, or when it is deleted)."""
        self.pool.discard(key)
        if session_id:
            self._session_allowed.pop(session_id, None)

    # -- turns ---------------------------------------------------------------
    async def run_turn(self, request: TurnRequest) -> AsyncIterator[AgentEvent]:
        """Run one turn; yields events and ends with a TurnResult or TurnError."""
        spec = ClientSpec(request.session_id, request.cwd, request.model)
        if request.stop_requested:
            yield _stopped(request)
            return
        try:
            warm = await self.pool.lease(request.key, spec, lambda w: self._connect(w, request.resume))
        except AgentUnavailable as exc:
            yield TurnError(str(exc), kind="unavailable")
            return
        state = TurnState(request)
        warm.turn = state
        pump = asyncio.create_task(self._pump(warm, state), name=f"ccbridge-turn-{request.key}")
        deadline = time.monotonic() + self.settings.turn_timeout if self.settings.turn_timeout else None
        try:
            while True:
                event = await self._next_event(warm, state, deadline)
                if event is None:  # the turn timed out: interrupted, wait for its end
                    deadline = None
                    continue
                if state.timed_out and isinstance(event, TurnResult):
                    event = TurnError(
                        f"the turn took longer than {self.settings.turn_timeout:g}s and was stopped",
                        kind="timeout",
                        text=event.text,
                        tool_calls=event.tool_calls,
                    )
                yield event
                if isinstance(event, (TurnResult, TurnError)):
                    break
        finally:
            await self._finish(warm, state, pump)

    async def _next_event(self, warm: WarmClient, state: TurnState, deadline: float | None) -> AgentEvent | None:
        if deadline is None:
            return await state.queue.get()
        try:
            return await asyncio.wait_for(state.queue.get(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            state.timed_out = True
            await self.interrupt(warm.key, reason="turn timed out")
            return None

    async def _finish(self, warm: WarmClient, state: TurnState, pump: asyncio.Task[None]) -> None:
        if not pump.done():
            # The consumer left early (a client disconnected): stop the turn cleanly.
            await self.interrupt(warm.key, reason="turn abandoned")
            try:
                await asyncio.wait_for(asyncio.shield(pump), _INTERRUPT_GRACE)
            except (TimeoutError, asyncio.CancelledError):
                pump.cancel()
                state.healthy = False
        self.approvals.deny_all(warm.key, "turn ended")
        self.pool.release(warm, healthy=state.healthy)

    async def _pump(self, warm: WarmClient, state: TurnState) -> None:
        """Send the prompt and translate the CLI's messages into the turn's queue."""
        translator = state.translator
        try:
            client = warm.client
            if client is None:
                raise AgentUnavailable("the Claude Code process is gone")
            if state.request.stop_requested:  # stopped while the CLI was starting
                state.emit(_stopped(state.request))
                return
            message = await _user_message(state.request)
            await client.query(_one(message))
            if state.request.stop_requested:
                translator.interrupt_requested = True
                await client.interrupt()
            async for msg in client.receive_response():
                for event in translator.feed(msg):
                    state.emit(event)
                if isinstance(msg, ResultMessage):
                    return
            state.healthy = False
            state.emit(
                TurnError(
                    "Claude Code ended the turn without a result", "unavailable", translator.text, translator.tool_calls
                )
            )
        except asyncio.CancelledError:
            state.healthy = False
            raise
        except (ClaudeSDKError, AgentUnavailable) as exc:
            state.healthy = False
            detail = _last_line(warm.stderr_tail) or _first_line(str(exc))
            log.warning("turn of %s failed: %s", warm.key, detail)
            state.emit(
                TurnError(
                    f"Claude Code stopped unexpectedly ({detail}). Send your message again to continue the session.",
                    "unavailable",
                    translator.text,
                    translator.tool_calls,
                )
            )
        except Exception as exc:
            state.healthy = False
            log.exception("turn of %s failed", warm.key)
            state.emit(TurnError(f"internal error: {exc!r}", "internal", translator.text, translator.tool_calls))

    # -- connecting ----------------------------------------------------------
    async def _connect(self, warm: WarmClient, resume: bool) -> None:
        """Start the CLI for a conversation; falls back between resume and new once."""
        for attempt, use_resume in enumerate((resume, not resume)):
            warm.stderr_tail.clear()
            client = ClaudeSDKClient(self._options(warm, use_resume))
            try:
                await client.connect()
            except CLINotFoundError as exc:
                raise AgentUnavailable(
                    f"the Claude Code CLI was not found ({exc}); reinstall claude-agent-sdk or set agent.cli_path"
                ) from exc
            except ClaudeSDKError as exc:
                detail = " ".join([str(exc), *warm.stderr_tail])
                mismatch = "No conversation found" in detail or "already in use" in detail
                if attempt == 0 and mismatch:
                    log.info(
                        "session %s: %s; retrying as %s",
                        warm.spec.session_id,
                        "not found" if use_resume else "exists",
                        "new" if use_resume else "resume",
                    )
                    continue
                raise AgentUnavailable(
                    f"could not start Claude Code: {_last_line(warm.stderr_tail) or _first_line(str(exc))}"
                ) from exc
            except OSError as exc:
                raise AgentUnavailable(f"could not start Claude Code: {exc}") from exc
            warm.client = client
            return

    def _options(self, warm: WarmClient, resume: bool) -> ClaudeAgentOptions:
        s = self.settings
        spec = warm.spec
        append = _BRIDGE_PROMPT + (f"\n\n{s.system_prompt}" if s.system_prompt else "")
        mcp_servers: dict[str, Any] = {**s.mcp_servers, "ccbridge": self._bridge_server(warm)}

        async def can_use_tool(name: str, tool_input: dict[str, Any], ctx: ToolPermissionContext) -> Any:
            return await self._can_use_tool(warm, name, tool_input)

        async def pre_tool_use(hook_input: Any, tool_use_id: str | None, ctx: Any) -> Any:
            return await self._pre_tool_use(warm, hook_input)

        def on_stderr(line: str) -> None:
            warm.stderr_tail.append(line.rstrip())
            log.debug("claude[%s]: %s", warm.key, line.rstrip())

        return ClaudeAgentOptions(
            cwd=spec.cwd,
            model=spec.model,
            resume=spec.session_id if resume else None,
            session_id=None if resume else spec.session_id,
            system_prompt={"type": "preset", "preset": "claude_code", "append": append},
            permission_mode=s.permission_mode,
            disallowed_tools=list(s.disallowed_tools),
            can_use_tool=can_use_tool,
            # The policy decides every tool call, whatever Claude Code's own rules would do:
            # allow / deny here; "ask" falls through to can_use_tool, which asks the user.
            hooks={"PreToolUse": [HookMatcher(matcher=None, hooks=[pre_tool_use], on_failure="block")]},
            include_partial_messages=True,
            max_turns=s.max_turns,
            max_budget_usd=s.max_budget_usd,
            mcp_servers=mcp_servers,
            env=dict(s.env),
            setting_sources=list(s.setting_sources),
            cli_path=s.cli_path,
            stderr=on_stderr,
        )

    # -- permissions ---------------------------------------------------------
    async def _verdict(self, warm: WarmClient, name: str, tool_input: dict[str, Any]) -> Verdict:
        state = warm.turn
        if state is None:
            return Verdict("deny", "no turn is running")
        if name == SEND_FILE_TOOL:
            return ALLOW
        req = state.request
        allowed = self._session_allowed.setdefault(req.session_id, set())
        ctx = ToolContext(root=Path(req.root), cwd=Path(req.cwd), is_admin=req.is_admin, session_allowed=allowed)
        return await self.policy.evaluate(name, tool_input, ctx)

    async def _pre_tool_use(self, warm: WarmClient, hook_input: Any) -> dict[str, Any]:
        name = str(hook_input.get("tool_name", ""))
        tool_input = hook_input.get("tool_input") or {}
        verdict = await self._verdict(warm, name, tool_input if isinstance(tool_input, dict) else {})
        output: dict[str, Any] = {"hookEventName": "PreToolUse", "permissionDecision": verdict.action}
        if verdict.reason:
            output["permissionDecisionReason"] = verdict.reason
        return {"hookSpecificOutput": output}

    async def _can_use_tool(self, warm: WarmClient, name: str, tool_input: dict[str, Any]) -> Any:
        verdict = await self._verdict(warm, name, tool_input)
        if verdict.action == "allow":
            return PermissionResultAllow()
        if verdict.action == "deny":
            return PermissionResultDeny(message=verdict.reason)
        state = warm.turn
        assert state is not None  # a verdict other than deny implies a running turn
        req = state.request
        allowed = self._session_allowed.setdefault(req.session_id, set())
        approval = self.approvals.open(
            req.key,
            req.user_id,
            name,
            summarize_tool_input(name, tool_input),
            tool_input,
            self.settings.approval_timeout,
        )
        state.emit(ApprovalRequested(approval))
        approval = await self.approvals.wait(approval)
        state.emit(ApprovalResolved(approval))
        if approval.decision is Decision.ALLOW_SESSION:
            allowed.add(name)
        if approval.decision is not None and approval.decision.allowed:
            return PermissionResultAllow()
        return PermissionResultDeny(message=f"The user did not allow {name} ({approval.outcome()}).")

    def _bridge_server(self, warm: WarmClient) -> Any:
        @tool(
            "send_file",
            "Send a file from the workspace to the user in the chat (as a document or image).",
            {
                "type": "object",
                "properties": {
                    "path": {
                        "type": "string",
                        "description": "Path of the file, relative to the working directory or absolute.",
                    },
                    "caption": {"type": "string", "description": "Optional short caption."},
                },
                "required": ["path"],
            },
        )
        async def send_file(args: dict[str, Any]) -> dict[str, Any]:
            state = warm.turn
            if state is None:
                return _tool_error("no turn is running")
            req = state.request

            def check() -> tuple[Path, str | None]:
                raw = Path(str(args.get("path", ""))).expanduser()
                path = raw if raw.is_absolute() else Path(req.cwd) / raw
                if not is_within(path, Path(req.root)):
                    return path, f"{path} is outside this conversation's workspace"
                if not path.is_file():
                    return path, f"{path} does not exist or is not a file"
                if path.stat().st_size > _MAX_SEND_BYTES:
                    return path, f"{path.name} is larger than {_MAX_SEND_BYTES // (1024 * 1024)} MB"
                return path.resolve(), None

            path, problem = await asyncio.to_thread(check)
            if problem:
                return _tool_error(problem)
            state.emit(FileOffered(path, str(args.get("caption") or "")))
            return {"content": [{"type": "text", "text": f"{path.name} was sent to the user."}]}

        return create_sdk_mcp_server(name="ccbridge", tools=[send_file])


def _stopped(request: TurnRequest) -> TurnResult:
    return TurnResult(text="", session_id=request.session_id, interrupted=True)


def _tool_error(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "is_error": True}


async def _user_message(request: TurnRequest) -> dict[str, Any]:
    """The user message for the CLI: text, a note on attached files, images inline."""
    text = request.text
    if request.attachments:
        names = ", ".join(_display_path(a.path, request.cwd) for a in request.attachments)
        note = f"[The user attached files, saved in the workspace: {names}]"
        text = f"{text}\n\n{note}" if text else note
    content: list[dict[str, Any]] = [{"type": "text", "text": text or "(empty message)"}]
    for attachment in request.attachments:
        if not attachment.is_image:
            continue
        data = await asyncio.to_thread(attachment.path.read_bytes)
        if len(data) > _MAX_IMAGE_BYTES:
            continue
        mime = attachment.mime_type or mimetypes.guess_type(attachment.name)[0] or "image/png"
        content.append(
            {"type": "image", "source": {"type": "base64", "media_type": mime, "data": base64.b64encode(data).decode()}}
        )
    return {"type": "user", "message": {"role": "user", "content": content}, "parent_tool_use_id": None}


def _display_path(path: Path, cwd: str) -> str:
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        return str(path)


async def _one(message: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    yield message


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _last_line(lines: Any) -> str:
    for line in reversed(list(lines)):
        if line.strip():
            return line.strip()
    return ""
