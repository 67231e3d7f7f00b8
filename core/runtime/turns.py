"""The agent runtime: runs one turn of a conversation on a warm Claude Code client.

``run_turn`` yields the turn's normalized events (see :mod:`core.events`). Tool
permission requests from the CLI are decided in :mod:`.permissions`; the CLI's
options are built in :mod:`.options`; processes are pooled (:mod:`.pool`),
capped (:mod:`.processes`) and isolated from each other (:mod:`.isolation`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import mimetypes
import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from claude_agent_sdk import ClaudeSDKClient, ClaudeSDKError, CLINotFoundError, ResultMessage

from ..approvals import ApprovalBroker
from ..config import AgentSettings
from ..errors import AgentUnavailable, StoreUnavailable
from ..events import AgentEvent, TurnError, TurnResult, TurnWaiting
from ..keys import ConversationKey
from ..projects import sandbox_git
from ..tool_policy import ToolPolicy
from .costs import restored_total, turn_cost
from .isolation import SandboxStatus, SessionHomes, probe_sandbox
from .npm_probe import npm_probe_dir
from .options import OptionsBuilder
from .permissions import Permissions
from .pool import ClientPool, ClientSpec, LeaseAborted, WarmClient
from .processes import Launcher, ProcessSlots
from .state import TurnRequest, TurnState

log = logging.getLogger(__name__)

_MAX_IMAGE_BYTES = 5 * 1024 * 1024
_INTERRUPT_GRACE = 10.0


class AgentRuntime:
    def __init__(
        self,
        settings: AgentSettings,
        policy: ToolPolicy,
        approvals: ApprovalBroker,
        *,
        hidden_paths: list[Path] | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.approvals = approvals
        self.permissions = Permissions(policy, approvals, settings.approval_timeout)
        # the pool's size caps the Claude Code processes alive (plus the ones being closed)
        self.slots = ProcessSlots(settings.process_limit, settings.max_spawns)
        self.launcher = Launcher(settings.sessions_dir, settings.cli_path)
        self.homes = SessionHomes(settings.sessions_dir, settings.env, user_settings="user" in settings.setting_sources)
        self.pool = ClientPool(settings.process_limit, settings.idle_timeout, self.slots, on_closed=self._closed)
        self.slots.load = self.pool.turns_of  # the next process slot goes to the user with the fewest turns going
        self.hidden = list(hidden_paths or [])
        self.sandbox = SandboxStatus(False, "not started")
        self._options: OptionsBuilder | None = None
        self._npm_probe: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._options is not None:
            return
        cli_path = await asyncio.to_thread(self.launcher.prepare)
        killed = await asyncio.to_thread(self.launcher.reap_orphans)
        if killed:
            log.warning("killed %d Claude Code process(es) left running by a previous run", killed)
        self.sandbox = await asyncio.to_thread(probe_sandbox, self.settings.sandbox)
        if self.sandbox.active:
            log.info("Bash sandbox: %s", self.sandbox.reason)
        elif self.settings.sandbox != "off":
            log.warning("Bash sandbox is not active: %s (approved commands run unconfined)", self.sandbox.reason)
        self._options = OptionsBuilder(
            self.settings, self.permissions, cli_path=cli_path, sandbox=self.sandbox, hidden=self.hidden
        )
        if self.sandbox.active:  # the sandbox's start-up asks npm where global packages are: ask once, aside
            self._npm_probe = asyncio.create_task(self._answer_npm_probe(), name="ccbridge-npm-probe")
        self.pool.start()

    async def _answer_npm_probe(self) -> None:
        path = self.settings.env.get("PATH") or os.environ.get("PATH", os.defpath)
        found = await asyncio.to_thread(npm_probe_dir, self.settings.sessions_dir / ".npm-probe", path)
        if found is not None and self._options is not None:
            self._options.npm_probe = found
            log.debug("Claude Code's npm root -g is answered from %s", found)

    async def close(self) -> None:
        if self._npm_probe is not None:
            self._npm_probe.cancel()
            await asyncio.gather(self._npm_probe, return_exceptions=True)
        await self.pool.close()

    def reconfigure(self, settings: AgentSettings) -> None:
        """New agent settings for the turns to come (a config reload)."""
        self.settings = settings
        self.policy.settings = settings
        self.permissions.approval_timeout = settings.approval_timeout
        if self._options is not None:
            self._options.settings = settings

    @property
    def started(self) -> bool:
        return self._options is not None

    @property
    def options(self) -> OptionsBuilder:
        if self._options is None:
            raise AgentUnavailable("the agent runtime is not started")
        return self._options

    def _closed(self, warm: WarmClient) -> None:
        spawn_id, warm.spawn_id = warm.spawn_id, None
        if spawn_id:
            asyncio.get_running_loop().run_in_executor(None, self.launcher.forget, spawn_id)

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
            self.permissions.forget_session(session_id)

    async def erase(self, key: ConversationKey, session_ids: list[str]) -> None:
        """A deleted conversation: its process ended, its approvals forgotten, its private directories removed."""
        await self.pool.close_client(key)  # nothing writes into the directories while they are removed
        for session_id in session_ids:
            self.permissions.forget_session(session_id)
        await self.homes.remove(key)

    async def prewarm(self, request: TurnRequest) -> bool:
        """Start the conversation's Claude Code ahead of its turn, when there is room (see :meth:`ClientPool.prewarm`).

        ``request`` is what its turn would start the CLI with (its text is not sent).
        """
        spec = ClientSpec(request.session_id, request.cwd, request.model)
        return await self.pool.prewarm(request.key, spec, lambda w: self._connect(w, request))

    # -- turns ---------------------------------------------------------------
    async def run_turn(self, request: TurnRequest) -> AsyncIterator[AgentEvent]:
        """Run one turn; yields events and ends with a TurnResult or TurnError.

        When every Claude Code process allowed is busy, a :class:`TurnWaiting` comes first.
        """
        spec = ClientSpec(request.session_id, request.cwd, request.model)
        if request.stop_requested:
            yield _stopped(request)
            return
        waiting = asyncio.Event()
        leasing = asyncio.ensure_future(self._lease(request, spec, waiting))
        try:
            told = asyncio.ensure_future(waiting.wait())
            await asyncio.wait({leasing, told}, return_when=asyncio.FIRST_COMPLETED)
            told.cancel()
            if not leasing.done():
                yield TurnWaiting("every Claude Code process is busy; your turn starts as soon as one is free")
            warm = await leasing
        except AgentUnavailable as exc:
            yield TurnError(str(exc), kind="unavailable")
            return
        except StoreUnavailable as exc:
            yield TurnError(f"{exc}; nothing was run, please try again shortly", kind="store")
            return
        except BaseException:  # the consumer left while the turn waited for a process
            leasing.cancel()
            result = await asyncio.gather(leasing, return_exceptions=True)
            if isinstance(result[0], WarmClient):
                self.pool.release(result[0])
            raise
        if warm is None:  # stopped while waiting for a process
            yield _stopped(request)
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

    async def _lease(self, request: TurnRequest, spec: ClientSpec, waiting: asyncio.Event) -> WarmClient | None:
        """A warm client for the turn; None when /stop came while it waited for a process."""
        try:
            return await self.pool.lease(
                request.key,
                spec,
                lambda w: self._connect(w, request),
                owner=request.user_id,
                abort=request.stopped,
                waiting=waiting,
            )
        except LeaseAborted:
            return None

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
                    state.emit(_own_cost(warm, state.request, event) if isinstance(event, TurnResult) else event)
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
            log.warning("turn of %s failed: Claude Code stopped (%s)", warm.key, detail)
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
    async def _connect(self, warm: WarmClient, request: TurnRequest) -> None:
        """Start the CLI for a conversation; falls back between resume and new once."""
        home = await self.homes.prepare(request.key, warm.spec.session_id)
        # this turn counts itself: more than one means the user has another turn going
        nice = self.settings.busy_user_nice if self.pool.turns_of(request.user_id) > 1 else 0
        writable, read_only = await sandbox_git(request.repository, request.branch)  # at each start only
        for attempt, use_resume in enumerate((request.resume, not request.resume)):
            warm.stderr_tail.clear()
            spawn_id, spawn_env = self.launcher.spawn_env(nice)
            warm.spawn_id = spawn_id
            options = self.options.build(
                warm,
                use_resume,
                home,
                spawn_env,
                Path(request.root),
                writable,
                read_only,
            )
            client = ClaudeSDKClient(options)
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
            except RuntimeError as exc:
                if "SessionStore" not in str(exc):
                    raise
                # the SDK could not read the session's transcript from the store to resume it
                raise StoreUnavailable(f"the session's transcript could not be read from the store ({exc})") from exc
            warm.client = client
            warm.cli_cost_usd = (
                await asyncio.to_thread(restored_total, home.config_dir, warm.spec.session_id) if use_resume else 0.0
            )
            return


def _own_cost(warm: WarmClient, request: TurnRequest, result: TurnResult) -> TurnResult:
    """The result with this turn's own cost (``cost_usd``) and the session's total Claude Code reported
    (``session_cost_usd``; the conversation replaces it with its own sum)."""
    reported = result.cost_usd
    if reported is None:
        return result
    started_from = warm.cli_cost_usd
    if started_from is None:  # where this process started is unknown: count from the last total reported
        started_from = request.reported_total if reported >= request.reported_total else 0.0
    warm.cli_cost_usd = reported
    return replace(result, cost_usd=turn_cost(reported, started_from), session_cost_usd=reported)


def _stopped(request: TurnRequest) -> TurnResult:
    return TurnResult(text="", session_id=request.session_id, interrupted=True)


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
