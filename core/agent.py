"""The library API: embed Claude Code sessions in your own Python app.

    async with Agent.from_config("config.yaml") as agent:
        result = await agent.chat("What's in this repo?", user_id="alice")
        print(result.text)

        async for event in agent.stream("Write tests", user_id="alice"):
            ...

Conversations are keyed by user (``platform="api"`` by default, shared with the
HTTP API) and optionally a ``thread``; ``session_id`` addresses a conversation by
its Claude Code session id. Chat bots use the same object through the dispatcher.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .access import AccessPolicy
from .approvals import ApprovalBroker
from .budgets import Budgets
from .config import Sections, check_paths, load_config
from .conversations import Conversations
from .coordination import Coordination, InstanceClaim, claim_instance_id, create_coordination, default_instance_id
from .coordination.base import OwnerGone
from .errors import AccessDenied, ApprovalNotFound, CCBridgeError, ConversationNotFound, StoreError
from .events import (
    AgentEvent,
    ApprovalRequest,
    ApprovalRequested,
    Decision,
    ToolCallRecord,
    TurnError,
    TurnResult,
)
from .keys import ConversationKey, UserRef
from .metrics import Metrics
from .observe import TurnObserver
from .outcome import TurnOutcome
from .prewarm import Prewarmer
from .projects import Projects, worktrees_of
from .routing import AgentRouting
from .runtime import AgentRuntime, Attachment
from .store import ConversationStore, MemoryStore, SQLiteStore, create_store
from .tool_policy import ToolPolicy
from .transcripts import TranscriptStore, create_transcripts
from .workspace import Workspaces

log = logging.getLogger(__name__)

DEFAULT_PLATFORM = "api"
STORE_MARKER = ".ccbridge-store.json"
INSTANCE_LOCKS = ".instances"  # under agent.sessions_dir: one lock file per instance id claimed here
Approver = Callable[[ApprovalRequest], Awaitable[Decision]]


@dataclass
class ChatResult:
    text: str
    session_id: str
    key: ConversationKey
    is_error: bool = False
    error: str | None = None
    interrupted: bool = False
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    cost_usd: float | None = None  # this turn's cost
    usage: dict[str, Any] | None = None
    duration_ms: int | None = None
    timestamp: float = field(default_factory=time.time)
    session_cost_usd: float | None = None  # the session's total so far
    error_kind: str | None = None

    @classmethod
    def of(cls, outcome: TurnOutcome, key: ConversationKey) -> ChatResult:
        return cls(
            text=outcome.text,
            session_id=outcome.session_id,
            key=key,
            is_error=outcome.is_error,
            error=outcome.error,
            interrupted=outcome.interrupted,
            tool_calls=outcome.tool_calls,
            cost_usd=outcome.cost_usd,
            usage=outcome.usage,
            duration_ms=outcome.duration_ms,
            session_cost_usd=outcome.session_cost_usd,
            error_kind=outcome.error_kind,
        )


@dataclass
class Health:
    """What ``/ready`` reports."""

    ready: bool
    problems: list[str]
    instance_id: str
    shared: bool = False  #: several instances coordinate (``coordination: redis``)
    owned: int = 0  #: conversations this instance owns


class Agent:
    def __init__(
        self,
        sections: Sections | None = None,
        *,
        store: ConversationStore | None = None,
        config_path: Path | None = None,
        name: str = "agent",
        metrics: Metrics | None = None,
    ) -> None:
        sections = sections or Sections()
        if not sections.agent.sessions_dir.is_absolute():  # Sections built in code: relative to the cwd
            agent = sections.agent.model_copy(update={"sessions_dir": sections.agent.sessions_dir.resolve()})
            sections = sections.model_copy(update={"agent": agent})
        self.sections = s = sections
        self.store = store or create_store(s.store)
        # Claude Code's transcripts, mirrored to the store's backend (None: kept local only)
        self.transcripts: TranscriptStore | None = create_transcripts(s.store)
        self.name = name
        # the id this agent's turns are recorded under: coordination.instance_id as given, or the stable
        # default claimed while this agent lives (a second live agent here runs as "<default>-2")
        self._instance: InstanceClaim | None = None
        if not s.coordination.instance_id:
            self._instance = claim_instance_id(default_instance_id(), s.agent.sessions_dir / INSTANCE_LOCKS)
            weakref.finalize(self, self._instance.release)  # an agent dropped unclosed frees its id
        claimed = self._instance.instance_id if self._instance else None
        self.coordination: Coordination = create_coordination(s.coordination, self.store, name, claimed)
        self.instance_id = self.coordination.instance_id
        self.workspaces = Workspaces(s.workspace.base_dir, s.workspace.uploads_dir)
        self.approvals = ApprovalBroker(self.coordination.approvals)
        self.policy = ToolPolicy(s.agent, s.workspace.admin_paths, extra_mcp_servers=("ccbridge",))
        self.projects = Projects(s.projects, self.workspaces.base_dir, self.store)
        self.runtime = AgentRuntime(s.agent, self.policy, self.approvals)
        self.runtime.hidden = self._hidden(config_path)
        self.conversations = Conversations(
            self.store,
            self.workspaces,
            self.runtime,
            self.coordination.locks,
            instance_id=self.instance_id,
            default_model=s.agent.model,
            projects=self.projects,
        )
        self.conversations.shared = self.coordination.shared
        backend = getattr(self.coordination, "backend", None)
        if backend is not None:  # a turn checks its instance still owns the conversation before it runs
            self.conversations.still_owner = backend.still_owner
            backend.on_lost = self.conversations.lost  # a stale owner stops its turn (self-fencing)
        self.access = AccessPolicy(s.access)
        self.routing = AgentRouting(self)
        # warm processes opened ahead of the turns likely to come (after a restart, after an eviction)
        self.prewarm = Prewarmer(
            lambda: self.sections.agent, self.store, self.conversations, self.runtime, self.routing.owner
        )
        # what each turn leaves behind: metrics (``metrics``: shared by the bots of a process; else
        # a registry of this agent's own), the turn's log line, its cost on the user's budget
        self.metrics = (metrics or Metrics()).bot(name)
        self.metrics.watch(self)
        self.metrics.count_store_errors(self.store)
        self.budgets = Budgets(self.store, name, lambda: self.sections.budgets, on_refused=self.metrics.budget_refused)
        self.conversations.observer = TurnObserver(name, self.metrics, self.budgets)
        self.conversations.admit = self._budget_refusal  # checked again once a waiting turn's time comes
        self._started = False
        self._starting = asyncio.Lock()
        self._janitor: asyncio.Task[None] | None = None
        self._store_id = ""  # the store's id when this agent started (a store emptied since has another, or none)
        self._store_lost_logged = False
        self._store_down_logged = False  # health() found the store failing and said so (until it answers again)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, *, bot: str | None = None) -> Agent:
        """An agent from a config file; ``bot`` applies that bot's overrides."""
        config = load_config(path)
        return cls(config.for_bot(bot) if bot else config.resolved(), config_path=config.source)

    def _hidden(self, config_path: Path | None) -> list[Path]:
        """What sandboxed Bash commands may not even read: other workspaces, session dirs, the store, secrets
        (the operator's Claude Code login and config, which may hold transcripts from before private dirs)."""
        homes = self.runtime.homes
        hidden = [self.workspaces.base_dir, self.sections.agent.sessions_dir, homes.tmp_root]
        hidden += [homes.base_config, homes.home / ".claude.json"]
        if isinstance(self.store, SQLiteStore) and str(self.store.path) != ":memory:":
            hidden.append(self.store.path.parent)
        if config_path is not None:
            hidden += [config_path, config_path.parent / ".env"]
        hidden += [project.path for project in self.sections.projects.values()]  # their checkouts: worktrees only
        return hidden

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> Agent:
        async with self._starting:
            if self._started:
                return self
            if self._instance is not None and not self._instance.reclaim():  # started again after close()
                raise CCBridgeError(
                    f"instance id {self.instance_id} was taken by another agent while this one was closed; "
                    "build a new Agent (or set coordination.instance_id)"
                )
            await self.store.open()
            if self.transcripts is not None:
                await self.transcripts.open()
            await self._check_store_identity()
            await self.coordination.start()
            self.routing.start()
            interrupted = await self._mark_interrupted()
            if interrupted:
                log.warning("%d conversation(s) were cut off mid-turn by a restart; marked as interrupted", interrupted)
            await self.approvals.start()
            await self.runtime.start()
            self.runtime.options.transcripts = self.transcripts
            if self.projects:
                self._janitor = asyncio.create_task(self._clean_worktrees(), name="ccbridge-worktree-cleanup")
            self._started = True
            self.prewarm.start()  # in the background: start-up and the first message never wait for it
            return self

    async def _mark_interrupted(self) -> int:
        """Mark the turns a crash cut off: this instance's, and those of any other id of the same default
        that ran on this machine and whose agent is gone (each held while it is marked). Never the turns
        of a live instance."""
        marked = await self.store.mark_interrupted(self.instance_id)
        if self._instance is not None:
            for dead in self._instance.dead_siblings():
                try:
                    marked += await self.store.mark_interrupted(dead.instance_id)
                finally:
                    dead.release()
        return marked

    async def close(self) -> None:
        if not self._started:
            if self._instance is not None:
                self._instance.release()
            return
        self._started = False
        if self._janitor is not None:
            self._janitor.cancel()
        await self.prewarm.close()
        await self.conversations.shutdown()  # running turns end as "stopped", and are recorded
        await self.runtime.close()
        await self.coordination.close()
        if self.transcripts is not None:
            await self.transcripts.close()
        await self.store.close()
        if self._instance is not None:
            self._instance.release()  # last: its turns are recorded before another agent may take the id

    async def __aenter__(self) -> Agent:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _check_store_identity(self) -> None:
        """Refuse a store recreated empty while these workspaces were used with another (a lost database)."""
        if isinstance(self.store, MemoryStore):
            return
        marker = self.workspaces.base_dir / STORE_MARKER
        where = self.store.describe()
        current = await self.store.store_id()
        self._store_id = current

        def check() -> str | None:
            try:
                known = json.loads(marker.read_text())
            except (OSError, ValueError):
                known = {}
            if not isinstance(known, dict):
                known = {}
            expected = known.get(where)
            if expected and expected != current:
                return str(expected)
            if expected is None:
                known[where] = current
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(json.dumps(known, indent=2))
            return None

        expected = await asyncio.to_thread(check)
        if expected is not None:
            raise StoreError(
                f"the store ({where}) is empty, but the workspaces in {self.workspaces.base_dir} were used with "
                f"another one (id {expected}): the database was lost or replaced. Restore it; or, to start over "
                f"with an empty store, delete {marker}"
            )

    async def _budget_refusal(self, key: ConversationKey, user: UserRef, is_admin: bool) -> str | None:
        refusal = await self.budgets.refusal(key.platform, user.id, is_admin=is_admin)
        return refusal.message() if refusal is not None else None

    async def took_over(self, key: ConversationKey, dead_instance: str) -> None:
        """This instance took a conversation over from an instance that died: its cut-off turns are marked."""
        marked = await self.store.mark_interrupted(dead_instance)
        log.warning(
            "took %s over from %s, which stopped answering; %d of its conversation(s) were cut off mid-turn",
            key,
            dead_instance,
            marked,
        )

    async def clean_worktrees(self) -> int:
        """Remove the worktrees of project conversations idle past their retention (never a running one)."""
        conversations = [c for c in await self.store.list(limit=100_000) if worktrees_of(c)]
        return await self.projects.remove_idle(conversations, self._holds)

    def _holds(self, key: ConversationKey) -> bool:
        """A turn (or /new, /resume) holds ``key`` right now: asked live, at each removal."""
        return self.conversations.busy(key) or any(r.key == key for r in self.conversations.running())

    async def _clean_worktrees(self) -> None:
        while True:
            try:
                await self.clean_worktrees()
            except Exception as exc:  # a git hiccup must not stop the bot
                log.warning("could not clean up idle worktrees: %r", exc)
            retentions = [p.retention for p in self.projects.settings.values()]  # a reload may change them
            await asyncio.sleep(max(60.0, min(retentions) / 4) if retentions else 300.0)

    def reload(self, sections: Sections) -> list[str]:
        """Use a re-read configuration for new turns: access, replies, the agent's settings, projects.

        Running turns finish as they started; warm processes started with other settings are
        replaced on their next turn. New project bindings apply to new conversations and to the
        next session (``/new``) of existing ones; a running session stays where it is. The store,
        workspaces, coordination and the process pool's sizes are not changed by a reload (they
        need a restart). Returns what could not change. Raises :class:`ConfigError` (and changes
        nothing) when a project's directory does not exist.
        """
        check_paths(sections.projects)  # before anything changes
        if not sections.agent.sessions_dir.is_absolute():
            agent = sections.agent.model_copy(update={"sessions_dir": sections.agent.sessions_dir.resolve()})
            sections = sections.model_copy(update={"agent": agent})
        needs_restart = [
            name
            for name in ("store", "workspace", "coordination")
            if getattr(sections, name) != getattr(self.sections, name)
        ]
        old = self.sections.agent
        for field_name in ("pool_size", "max_processes", "max_spawns", "sessions_dir", "cli_path", "sandbox"):
            if getattr(sections.agent, field_name) != getattr(old, field_name):
                needs_restart.append(f"agent.{field_name}")
        kept = {name: getattr(self.sections, name) for name in ("store", "workspace", "coordination")}
        agent_settings = sections.agent.model_copy(
            update={
                f: getattr(old, f)
                for f in ("pool_size", "max_processes", "max_spawns", "sessions_dir", "cli_path", "sandbox")
            }
        )
        old_projects = dict(self.sections.projects)
        self.sections = sections.model_copy(update={**kept, "agent": agent_settings})
        self.access.update(self.sections.access)
        self.runtime.reconfigure(agent_settings)
        self.conversations.default_model = agent_settings.model
        projects_changed = self._reload_projects(old_projects)
        if agent_settings != old or projects_changed:
            self.runtime.pool.retire_idle()  # warm processes pick the new settings up on their next start
        return needs_restart

    def _reload_projects(self, old: dict[str, Any]) -> bool:
        """Rebuild the bindings; the sandbox hides the new checkouts (worktrees only), as at start."""
        new = self.sections.projects
        if new == old:
            return False
        self.projects.update(new)
        hidden = self.runtime.hidden  # the list the sandbox settings are built from: changed in place
        for project in old.values():
            if project.path in hidden:
                hidden.remove(project.path)
        hidden.extend(project.path for project in new.values())
        if self._started and new and (self._janitor is None or self._janitor.done()):
            self._janitor = asyncio.get_running_loop().create_task(
                self._clean_worktrees(), name="ccbridge-worktree-cleanup"
            )
        return True

    async def health(self) -> Health:
        """Readiness: the store answers and takes writes, no turn record is waiting to be written, and
        (several instances) the coordination Redis answers and this instance's heartbeat is current."""
        problems: list[str] = []
        try:
            await self.store.ping(write=True)
            if self._store_id and self.store.watch_identity and await self.store.store_id() != self._store_id:
                problem = (
                    f"store: {self.store.describe()} was emptied or replaced while running (a server restarted "
                    "without its data?): the conversations written before are not there. Restore it, or restart "
                    "ccbridge to be told what to do"
                )
                problems.append(problem)
                if not self._store_lost_logged:
                    self._store_lost_logged = True
                    log.error("%s", problem)
        except CCBridgeError as exc:
            problems.append(f"store: {exc}")
            if not self._store_down_logged:  # once per outage: a vanished data directory is loud at once
                self._store_down_logged = True
                log.error("the store fails its health check (not ready until it answers again): %s", exc)
        else:
            if self._store_down_logged:
                self._store_down_logged = False
                log.warning("the store answers again: ready")
            waiting = await self.conversations.flush_unwritten()
            if waiting:
                problems.append(f"store: {waiting} turn record(s) not written yet")
        backend = getattr(self.coordination, "backend", None)
        if backend is not None and (problem := await backend.problem()) is not None:
            problems.append(problem)
        return Health(
            ready=not problems,
            problems=problems,
            instance_id=self.instance_id,
            shared=self.coordination.shared,
            owned=self.coordination.owned,
        )

    # -- chatting --------------------------------------------------------------
    async def resolve_key(
        self,
        user_id: str,
        *,
        session_id: str | None = None,
        thread: str | None = None,
        platform: str = DEFAULT_PLATFORM,
        bot: str | None = None,
    ) -> ConversationKey:
        """The conversation a call addresses: by session id, else the user's (thread's) default.

        ``bot`` scopes the key (see :class:`ConversationKey`): a session id of another scope is not found.
        """
        if session_id:
            conv = await self.conversations.find_session(session_id)
            if conv is None or (bot is not None and conv.key.bot != bot):
                raise ConversationNotFound(f"no session {session_id}")
            if conv.key.owner != user_id:
                raise AccessDenied(f"session {session_id} belongs to another user")
            return conv.key
        return ConversationKey(platform, user_id, thread, bot)

    async def stream(
        self,
        text: str,
        *,
        user_id: str,
        session_id: str | None = None,
        thread: str | None = None,
        platform: str = DEFAULT_PLATFORM,
        user_name: str | None = None,
        attachments: list[Attachment] | None = None,
        bot: str | None = None,
    ) -> AsyncIterator[AgentEvent]:
        """Run one turn and yield its events (approval requests included).

        A user whose budget is spent (``budgets:``) gets one :class:`TurnError` of kind ``budget``; nothing runs.
        ``bot`` scopes the conversation to one configured bot (the HTTP API bot not named ``api``).
        """
        await self.start()  # a no-op once started; convenient outside ``async with``
        key = await self.resolve_key(user_id, session_id=session_id, thread=thread, platform=platform, bot=bot)
        user = UserRef(user_id, user_name)
        is_admin = self.access.is_admin(platform, user_id)
        refusal = await self.budgets.refusal(key.platform, user_id, is_admin=is_admin)
        if refusal is not None:  # the user's budget is spent: nothing runs
            yield TurnError(refusal.message(), kind="budget")
            return
        while (owner := await self.routing.owner(key)) is not None:
            # another instance runs this conversation: its events come back here
            try:
                async with aclosing(self.routing.stream(owner, key, text, user, is_admin, attachments or [])) as remote:
                    async for event in remote:
                        yield event
                return
            except OwnerGone:
                continue  # it died before taking the turn up: ask again (this instance takes over)
        events = self.conversations.turn(key, text, user, is_admin=is_admin, attachments=attachments)
        async with aclosing(events):
            async for event in events:
                yield event

    async def chat(
        self,
        text: str,
        *,
        user_id: str,
        session_id: str | None = None,
        thread: str | None = None,
        platform: str = DEFAULT_PLATFORM,
        on_approval: Approver | None = None,
        attachments: list[Attachment] | None = None,
    ) -> ChatResult:
        """Run one turn and return its outcome. Without ``on_approval``, tools needing approval are denied."""
        await self.start()
        key = await self.resolve_key(user_id, session_id=session_id, thread=thread, platform=platform)
        async with aclosing(
            self.stream(
                text, user_id=user_id, session_id=session_id, thread=thread, platform=platform, attachments=attachments
            )
        ) as events:
            async for event in events:
                if isinstance(event, ApprovalRequested):
                    decision = await on_approval(event.request) if on_approval else Decision.DENY
                    try:
                        await self.approvals.resolve(event.request.id, decision, event.request.requested_by)
                    except ApprovalNotFound:
                        pass
                elif isinstance(event, (TurnResult, TurnError)):
                    session = getattr(event, "session_id", "") or ""
                    if isinstance(event, TurnError):
                        try:
                            conv = await self.conversations.get(key)
                        except StoreError:  # the store is what failed: the error says so, without a session id
                            conv = None
                        session = conv.session_id if conv else session
                    return ChatResult.of(TurnOutcome.of(event, session), key)
        raise RuntimeError("the turn ended without a result")  # pragma: no cover - run_turn always ends one

    async def resolve_approval(self, request_id: str, decision: Decision | str, user: UserRef | str) -> ApprovalRequest:
        """Answer a pending approval as ``user`` (the requester or an admin), wherever its turn runs."""
        who = user if isinstance(user, UserRef) else UserRef(str(user))
        request = await self.approvals.find(request_id)
        if request is None:
            raise ApprovalNotFound("this approval request was already answered or has expired")
        is_admin = self.access.is_admin(request.key.platform, who.id, who.roles)
        return await self.approvals.resolve(request_id, Decision(decision), who.id, is_admin=is_admin)

    async def stop(
        self,
        user_id: str,
        *,
        session_id: str | None = None,
        thread: str | None = None,
        platform: str = DEFAULT_PLATFORM,
    ) -> bool:
        key = await self.resolve_key(user_id, session_id=session_id, thread=thread, platform=platform)
        owner = await self.routing.owner(key)
        if owner is not None:
            await self.routing.stop(owner, key)
            return True
        return await self.conversations.stop(key)
