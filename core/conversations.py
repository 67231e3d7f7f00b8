"""Conversations: records in the store, their workspaces, their turns (one at a time).

A turn is crash-safe: its record (the user's text, status ``running``, the
instance running it) is written before Claude starts, and completed when the
turn ends; a bot killed in between leaves it ``running``, and the next start
of that instance marks it ``interrupted``. When the store cannot be written at
the end of a turn, the record is kept in memory and written as soon as the
store is back, so the reply is never lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from claude_agent_sdk import project_key_for_directory

from .attachments import Attachment
from .coordination import ConversationLocks
from .errors import CCBridgeError, ConversationNotFound, Fenced, StoreError
from .events import AgentEvent, MessagesMerged, TurnError, TurnResult, TurnWaiting
from .keys import ConversationKey, UserRef
from .observe import TurnObserver, observed
from .outcome import TurnOutcome
from .projects import Projects, Workplace
from .runtime import AgentRuntime, TurnRequest
from .store import Conversation, ConversationStore, TurnRecord
from .transcripts.base import make_key
from .workspace import Workspaces

log = logging.getLogger(__name__)

#: where a conversation works, in its metadata: its project, that project's root (a worktree), its branch
#: and repository (none of them: the conversation's own workspace)
_WORKPLACE = ("project", "root", "branch", "repository")
#: a turn that waited while another instance took its conversation over: nothing ran
MOVED = "another instance took this conversation over while your message waited; nothing was run, please send it again"


def _sessions_of(conv: Conversation) -> list[tuple[str, str]]:
    """(session id, cwd) of the conversation's session and of its earlier ones (``/new``, ``/resume``)."""
    earlier = [
        (str(note["session_id"]), str(note.get("cwd") or conv.cwd))
        for note in conv.metadata.get("sessions") or []
        if isinstance(note, dict) and note.get("session_id")
    ]
    return [(conv.session_id, conv.cwd), *earlier]


_RETRY_WRITES_EVERY = 5.0  # seconds between attempts to write records the store refused
_QUEUE_SCAN = 200  # latest turns looked at for queued messages
_NONE_QUEUED_KEPT = 4096  # conversations remembered as having none parked (the most recent; others are read)
_WAITING = "waiting:"  # a store note per queued message: ``waiting:<instance>:<turn id>`` (see ``park``)


@dataclass
class Parked:
    """What the turn record does not keep of a queued message: the speaker's name and its files."""

    name: str | None
    attachments: list[Attachment]
    batch: str  # the batch whose turn answers it ("" once a restart ended the batch)


@dataclass
class LeftWaiting:
    """A queued message this instance had not answered when it stopped (its store note)."""

    turn_id: str
    key: ConversationKey
    bot: str | None  # the bot it came to
    user: UserRef
    address: dict[str, Any] | None  # where its reply goes (``ReplySink.address()``), when the sink has one


def _waiting_note(turn_id: str, instance_id: str) -> str:
    return f"{_WAITING}{instance_id}:{turn_id}"


class Conversations:
    """The platform-neutral heart of ccbridge, shared by chat bots, the library and the HTTP API."""

    def __init__(
        self,
        store: ConversationStore,
        workspaces: Workspaces,
        runtime: AgentRuntime,
        locks: ConversationLocks,
        *,
        instance_id: str,
        default_model: str | None = None,
        projects: Projects | None = None,
    ) -> None:
        self.projects = projects
        #: the names a conversation's place goes by in ``projects.*.places`` (a chat bot sets its own;
        #: default ``platform:owner``)
        self.places_of: Callable[[ConversationKey], list[str]] | None = None
        self.store = store
        self.workspaces = workspaces
        self.runtime = runtime
        self.locks = locks
        self.instance_id = instance_id
        self.default_model = default_model
        self._running: dict[ConversationKey, TurnRequest] = {}
        self._idle = asyncio.Event()  # set while no turn runs
        self._idle.set()
        self._unwritten: list[tuple[ConversationKey, str, TurnRecord, float | None]] = []
        self._retrier: asyncio.Task[None] | None = None
        self._parked: dict[str, Parked] = {}
        # one instance: conversations with no message parked, the most recently looked at (a bounded cache)
        self._none_queued: OrderedDict[ConversationKey, None] = OrderedDict()
        self._parks = 0  # messages parked so far (a scan overtaken by one proves nothing)
        self._started_at = time.time()
        self.fences: dict[ConversationKey, int] = {}  # this instance's fencing token per owned conversation
        self.shared = False  # several instances coordinate: turns run on the conversation's owner
        #: with several instances: whether this instance still owns a conversation under its fence
        #: (set by the agent's routing); a turn that waited while its lease lapsed does not run
        self.still_owner: Callable[[ConversationKey, int], Awaitable[bool]] | None = None
        #: why ``user`` may not start a turn now (a spent budget), asked once the turn holds the conversation
        self.admit: Callable[[ConversationKey, UserRef, bool], Awaitable[str | None]] | None = None
        self.observer: TurnObserver | None = None  # sees every turn (metrics, the turn's log line, budgets)

    # -- records -------------------------------------------------------------
    async def get(self, key: ConversationKey) -> Conversation | None:
        return await self.store.get(key)

    async def acknowledge_interruption(self, key: ConversationKey) -> None:
        """The user saw their turn cut off as it happened: the next turn need not tell them again."""
        conv = await self.store.get(key)
        if conv is not None and conv.status == "interrupted":
            conv.status = "idle"
            conv.fence = self._fence(key, conv)
            try:
                await self.store.put(conv)
            except Fenced as exc:
                log.info("not marking %s as seen: %s", key, exc)

    def _fence(self, key: ConversationKey, conv: Conversation) -> int:
        """The fence this instance writes ``conv`` with: its own lease's when it owns ``key`` (a newer
        owner's record then refuses the write), else the stored one (a single instance)."""
        return self.fences[key] if self.shared and key in self.fences else conv.fence

    async def open(
        self,
        key: ConversationKey,
        *,
        subdir: str | None = None,
        metadata: dict[str, Any] | None = None,
        places: list[str] | None = None,
    ) -> Conversation:
        """The conversation of ``key``, created (with its workspace) when new.

        Concurrent calls for a new key create it once: all of them get the same session.
        ``places`` are the names its place goes by (``slack:C0123``): a place bound to a
        project makes the new conversation work in that project.
        """
        conv = await self.store.get(key)
        if conv is not None:
            return conv
        async with self.locks.creating(key):
            conv = await self.store.get(key)
            if conv is None:
                conv = await self.create(key, subdir=subdir, metadata=metadata, places=places)
            return conv

    async def create(
        self,
        key: ConversationKey,
        *,
        subdir: str | None = None,
        metadata: dict[str, Any] | None = None,
        places: list[str] | None = None,
    ) -> Conversation:
        """A new conversation (replacing any record under ``key``), in the project its place is bound to."""
        meta = dict(metadata or {})
        project = await self.bound_project(key, places)
        if project is not None:
            place = await self._settle(key, project, meta)
            cwd = await self.workspaces.ensure_in(place.root, subdir)
        else:
            cwd = await self.workspaces.ensure(key, subdir)
        conv = Conversation(key=key, session_id=str(uuid.uuid4()), cwd=str(cwd), metadata=meta)
        await self.store.put(conv)
        return conv

    def places_for(self, key: ConversationKey) -> list[str]:
        return self.places_of(key) if self.places_of is not None else [key.place]

    async def bound_project(self, key: ConversationKey, places: list[str] | None = None) -> str | None:
        """The project ``key``'s place is bound to now (an admin's ``/project`` switch, else the config)."""
        if not self.projects:
            return None
        return await self.projects.project_for(places or self.places_for(key), key.bot)

    async def _settle(self, key: ConversationKey, project: str, meta: dict[str, Any]) -> Workplace:
        """Put the conversation in project ``project``: its worktree (or the checkout), noted in ``meta``."""
        assert self.projects is not None
        place = await self.projects.workplace(project, key)
        meta["project"] = project
        meta["root"] = str(place.root)
        if place.branch:
            meta["branch"] = place.branch
        else:
            meta.pop("branch", None)
        if place.repository is not None:
            meta["repository"] = str(place.repository)
        else:
            meta.pop("repository", None)
        return place

    def root_of(self, conv: Conversation) -> Path:
        """The directory the conversation is confined to: its project's worktree, or its workspace."""
        root = conv.metadata.get("root")
        return Path(root) if isinstance(root, str) and root else self.workspaces.root(conv.key)

    def workplace_of(self, conv: Conversation) -> Workplace:
        meta = conv.metadata
        repository = meta.get("repository")
        return Workplace(
            self.root_of(conv), meta.get("project"), meta.get("branch"), Path(repository) if repository else None
        )

    def relative(self, conv: Conversation, path: Path | str) -> str:
        """``path`` relative to the conversation's root, for display ("." for the root)."""
        try:
            return str(Path(path).relative_to(self.root_of(conv))) or "."
        except ValueError:
            return str(path)

    async def find_session(self, session_id: str) -> Conversation | None:
        return await self.store.find_session(session_id)

    async def delete(self, key: ConversationKey) -> bool:
        """Delete the conversation: its record and turns, and the transcripts of all of its sessions
        (in the conversation's private directory and, with ``transcripts: store``, in the store).
        Its workspace files stay (they are the user's)."""
        conv = await self.store.get(key)
        await self.stop(key)
        sessions = _sessions_of(conv) if conv is not None else []
        await self.runtime.erase(key, [session_id for session_id, _ in sessions])
        deleted = await self.store.delete(key)
        transcripts = self.runtime.options.transcripts if self.runtime.started else None
        for session_id, cwd in sessions if transcripts is not None else []:
            try:
                await transcripts.delete(make_key(project_key_for_directory(cwd), session_id))
            except StoreError as exc:
                log.warning("could not delete the stored transcript of session %s: %s", session_id, exc)
        return deleted

    async def reset(
        self, key: ConversationKey, *, project: str | None | bool = False
    ) -> tuple[Conversation, str | None]:
        """``/new``: stop what runs, then start a fresh session in the same place.

        The session left behind is remembered (``/sessions``, ``/resume``). The new session follows
        the place's binding as it is now (a project, or none: the conversation's own workspace);
        ``project`` (a name, or None for none) names where it goes instead.
        """
        await self.stop(key)
        async with self.locks.hold(key):
            old = await self.store.get(key)
            if old is None:
                if project is False:
                    return await self.open(key), None
                old = await self.create(key)
            self.runtime.forget(key, old.session_id)
            meta = dict(old.metadata)
            earlier = list(meta.get("sessions") or [])
            if old.message_count:
                earlier.append(await self._session_note(old))
            meta["sessions"] = earlier[-50:]
            cwd = old.cwd
            if project is False and (self.projects or meta.get("project")):
                bound = await self.bound_project(key)
                if bound != meta.get("project"):
                    project = bound  # the place was switched (or the config reloaded) since: follow it
            if project is not False:
                for name in _WORKPLACE:
                    meta.pop(name, None)
                if isinstance(project, str):
                    cwd = str((await self._settle(key, project, meta)).root)
                else:
                    cwd = str(await self.workspaces.ensure(key))
            new = Conversation(
                key=key,
                session_id=str(uuid.uuid4()),
                cwd=cwd,
                model=old.model,
                created_at=time.time(),
                metadata=meta,
            )
            await self.store.put(new)
            return new, old.session_id

    async def _session_note(self, conv: Conversation) -> dict[str, Any]:
        """What ``/sessions`` shows of a session: when, its first message, how many turns, where."""
        turns = [t for t in await self.store.turns(conv.key, 1000) if t.session_id == conv.session_id]
        first = next((t.user_text for t in turns if t.status != "merged"), "")
        return {
            "session_id": conv.session_id,
            "created_at": conv.created_at,
            "last_active_at": conv.last_active_at,
            "turns": conv.message_count,
            "first": first[:200],
            "cwd": conv.cwd,
            "cost_usd": conv.total_cost_usd,
            # where it worked: a /resume goes back there, whatever the place is bound to by then
            "workplace": {name: conv.metadata[name] for name in _WORKPLACE if name in conv.metadata},
        }

    async def resume_session(self, key: ConversationKey, session_id: str) -> Conversation:
        """``/resume``: go back to an earlier session of this conversation (the current one is remembered)."""
        await self.stop(key)
        async with self.locks.hold(key):
            conv = await self.store.get(key)
            if conv is None:
                raise ConversationNotFound("no conversation here yet")
            earlier = list(conv.metadata.get("sessions") or [])
            chosen = next((s for s in earlier if s.get("session_id") == session_id), None)
            if chosen is None:
                raise ConversationNotFound(f"no earlier session {session_id} here")
            earlier.remove(chosen)
            if conv.message_count:
                earlier.append(await self._session_note(conv))
            self.runtime.forget(key, conv.session_id)
            conv.metadata["sessions"] = earlier
            conv.session_id = str(chosen["session_id"])
            conv.created_at = float(chosen.get("created_at") or time.time())
            conv.message_count = int(chosen.get("turns") or 1)
            conv.total_cost_usd = float(chosen.get("cost_usd") or 0.0)
            conv.cli_cost_usd = conv.total_cost_usd
            conv.status = "idle"
            if isinstance(chosen.get("cwd"), str):
                conv.cwd = chosen["cwd"]
            if isinstance(chosen.get("workplace"), dict):  # its project (worktree, branch), or none
                for name in _WORKPLACE:
                    conv.metadata.pop(name, None)
                conv.metadata.update({k: v for k, v in chosen["workplace"].items() if k in _WORKPLACE})
            await self.store.put(conv)
            return conv

    async def set_cwd(self, key: ConversationKey, subdir: str) -> Conversation:
        async with self.locks.hold(key):
            conv = await self.open(key)
            conv.cwd = str(await self.workspaces.ensure_in(self.root_of(conv), subdir))
            await self.store.put(conv)
            return conv

    async def set_model(self, key: ConversationKey, model: str | None) -> Conversation:
        async with self.locks.hold(key):
            conv = await self.open(key)
            conv.model = model
            await self.store.put(conv)
            return conv

    async def history(self, key: ConversationKey, limit: int = 10) -> list[TurnRecord]:
        return await self.store.turns(key, limit)

    def model_of(self, conv: Conversation) -> str | None:
        return conv.model or self.default_model

    # -- messages waiting to be answered together ------------------------------
    async def park(
        self,
        key: ConversationKey,
        text: str,
        user: UserRef,
        attachments: list[Attachment] | None = None,
        *,
        batch: str,
        bot: str | None = None,
        address: dict[str, Any] | None = None,
    ) -> TurnRecord:
        """Record a message that the turn of ``batch`` answers together with others (``queued``).

        Besides the turn record, a note in the store keeps what a restart would lose: the
        speaker's name, the files, the bot it came to and where its reply goes (``address``),
        so an instance starting again answers it (:meth:`left_waiting`).
        """
        conv = await self.open(key)
        files = list(attachments or [])
        note = _files_note(files, conv.cwd)
        record = TurnRecord(
            key=key,
            session_id=conv.session_id,
            user_id=user.id,
            user_text=f"{text}\n\n{note}" if note and text else (text or note),
            status="queued",
            instance_id=self.instance_id,
        )
        await self.store.put_turn(record)
        self._parks += 1  # after the write: a scan under way or done before it does not count the key empty
        self._none_queued.pop(key, None)
        self._parked[record.turn_id] = Parked(user.name, files, batch)
        waiting = {
            "key": str(key),
            "bot": bot,
            "user": user.id,
            "name": user.name,
            "address": address,
            "files": [{"path": str(a.path), "name": a.name, "mime_type": a.mime_type} for a in files],
        }
        try:
            await self.store.put_meta(_waiting_note(record.turn_id, self.instance_id), json.dumps(waiting))
        except (NotImplementedError, CCBridgeError) as exc:  # the record alone is answered by the next turn
            log.debug("no note kept for the message waiting in %s: %r", key, exc)
        return record

    async def queued(self, key: ConversationKey) -> list[TurnRecord]:
        """The messages of ``key`` waiting for a turn, oldest first.

        Only this process parks messages when it is the only instance, so a conversation found with
        none is not read again until it parks one (the scan reads the latest turns of the history).
        """
        if not self.shared and key in self._none_queued:
            self._none_queued.move_to_end(key)
            return []
        parks = self._parks
        found = [t for t in await self.store.turns(key, _QUEUE_SCAN) if t.status == "queued"]
        if not found and not self.shared and parks == self._parks:  # none parked while it was read
            self._none_queued[key] = None
            if len(self._none_queued) > _NONE_QUEUED_KEPT:
                self._none_queued.popitem(last=False)
        return found

    def _answers(self, queued_turn: TurnRecord, batch: str | None) -> bool:
        """A turn of ``batch`` answers its own parked messages, and any a restart left waiting."""
        parked = self._parked.get(queued_turn.turn_id)
        return parked is None or (batch is not None and parked.batch == batch)

    async def _parked_of(self, queued_turn: TurnRecord) -> Parked | None:
        """What was parked with ``queued_turn``: in memory, or (after a restart) from its store note."""
        parked = self._parked.pop(queued_turn.turn_id, None)
        if parked is not None:
            return parked
        try:
            raw = await self.store.get_meta(_waiting_note(queued_turn.turn_id, queued_turn.instance_id or ""))
            note = json.loads(raw) if raw else None
        except (NotImplementedError, CCBridgeError, ValueError) as exc:
            log.debug("no note of the message waiting in %s: %r", queued_turn.key, exc)
            return None
        if not isinstance(note, dict):
            return None
        files = [
            Attachment(Path(f["path"]), str(f["name"]), f.get("mime_type"))
            for f in note.get("files") or []
            if isinstance(f, dict) and f.get("path") and f.get("name")
        ]
        kept = [a for a in files if await asyncio.to_thread(a.path.is_file)]
        return Parked(note.get("name"), kept, "")

    async def _forget_waiting(self, turns: list[TurnRecord]) -> None:
        for queued_turn in turns:
            try:
                await self.store.delete_meta(_waiting_note(queued_turn.turn_id, queued_turn.instance_id or ""))
            except (NotImplementedError, CCBridgeError) as exc:
                log.debug("could not forget the note of turn %s: %r", queued_turn.turn_id, exc)

    async def waiting_instances(self) -> set[str]:
        """The instances (other than this one) that have messages waiting in the store."""
        try:
            notes = await self.store.list_meta(_WAITING)
        except NotImplementedError:
            return set()
        return {name[len(_WAITING) :].rsplit(":", 1)[0] for name in notes} - {self.instance_id}

    async def left_waiting(
        self, bot: str | None, instance: str | None = None
    ) -> dict[ConversationKey, list[LeftWaiting]]:
        """The messages that came to ``bot`` and waited (debounce / merge) when this instance stopped
        (or ``instance``, gone for good).

        By conversation, oldest first; notes of messages answered since (by another instance, or
        a turn that ended as the process died) are removed.
        """
        instance = instance or self.instance_id
        try:
            notes = await self.store.list_meta(f"{_WAITING}{instance}:")
        except NotImplementedError:
            return {}
        found: dict[ConversationKey, list[LeftWaiting]] = {}
        for name, raw in notes.items():
            turn_id = name.rsplit(":", 1)[-1]
            try:
                note = json.loads(raw)
                key = ConversationKey.parse(note["key"])
                user = UserRef(str(note["user"]), note.get("name"))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("a note of a waiting message that does not parse (%s): %r", name, exc)
                await self.store.delete_meta(name)
                continue
            if note.get("bot") != bot:
                continue
            address = note.get("address") if isinstance(note.get("address"), dict) else None
            found.setdefault(key, []).append(LeftWaiting(turn_id, key, bot, user, address))
        for key, left in list(found.items()):
            queued = {t.turn_id: t for t in await self.queued(key)}
            for gone in [w for w in left if w.turn_id not in queued]:
                await self.store.delete_meta(_waiting_note(gone.turn_id, instance))
            left = sorted((w for w in left if w.turn_id in queued), key=lambda w: queued[w.turn_id].started_at)
            if left:
                found[key] = left
            else:
                del found[key]
        return found

    async def drop_batch(self, key: ConversationKey, batch: str, reason: str) -> int:
        """The messages parked for ``batch`` will not be answered (``/stop`` in the debounce window)."""
        dropped = []
        for queued_turn in await self.queued(key):
            parked = self._parked.get(queued_turn.turn_id)
            if parked is not None and parked.batch == batch:
                del self._parked[queued_turn.turn_id]
                queued_turn.status, queued_turn.error = "interrupted", reason
                queued_turn.finished_at = time.time()
                await self.store.put_turn(queued_turn)
                dropped.append(queued_turn)
        await self._forget_waiting(dropped)
        return len(dropped)

    # -- turns ---------------------------------------------------------------
    def busy(self, key: ConversationKey) -> bool:
        return self.locks.busy(key)

    def waiting(self, key: ConversationKey) -> int:
        return self.locks.waiting(key)

    def running(self) -> list[TurnRequest]:
        return list(self._running.values())

    async def lost(self, name: str) -> None:
        """Another instance took the conversation ``name`` over (this one's heartbeat lapsed): the turn
        still running here stops, and its end is not recorded over the new owner's."""
        for key in [k for k in self._running if str(k) == name]:
            log.warning("stopping the turn of %s: another instance owns the conversation now", key)
            await self.stop(key)

    async def stop(self, key: ConversationKey) -> bool:
        """Interrupt the running turn (the session is kept). True if one was running.

        Works at any point of the turn, also while its Claude Code process is still starting.
        """
        request = self._running.get(key)
        if request is None:
            return False
        request.request_stop()
        await self.runtime.interrupt(key)
        return True

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop every running turn and give them ``grace`` seconds to record how they ended."""
        for key in list(self._running):
            await self.stop(key)
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            log.warning("%d turn(s) still running after %gs at shutdown", len(self._running), grace)
        if self._retrier is not None:
            self._retrier.cancel()
        await self.flush_unwritten()

    @observed
    async def turn(
        self,
        key: ConversationKey,
        text: str,
        user: UserRef,
        *,
        is_admin: bool = False,
        attachments: list[Attachment] | None = None,
        speaker: str | None = None,
        on_queued: Callable[[], None] | None = None,
        on_start: Callable[[], Awaitable[None]] | None = None,
        batch: str | None = None,
        places: list[str] | None = None,
    ) -> AsyncIterator[AgentEvent]:
        """Run one turn in ``key`` after any turn already running there; yields its events.

        ``on_queued`` is called once the turn has its place in the conversation's line,
        ``on_start`` is awaited once it holds the conversation, before the parked messages are
        gathered (so a batch can let the messages being saved into it land). Messages parked for
        ``key`` (:meth:`park`) for ``batch`` — and any left waiting by a restart — are answered by
        this turn too, before ``text`` (which may then be empty), each with its speaker when the
        conversation is shared; a :class:`MessagesMerged` event says so.
        When the store cannot record the turn, nothing runs and the turn ends with a
        ``TurnError`` of kind ``store``.
        """
        if self.locks.busy(key):
            yield TurnWaiting("another reply in this conversation comes first", kind="conversation")
        async with self.locks.hold(key, on_queued):
            if on_start is not None:
                await on_start()
            if not await self._owns(key):
                log.warning("turn in %s not started: another instance owns the conversation now", key)
                yield TurnError(MOVED, kind="unavailable")
                return
            try:
                # a budget spent by the turns this one waited behind
                refused = await self.admit(key, user, is_admin) if self.admit is not None else None
                if refused is not None:
                    yield TurnError(refused, kind="budget")
                    return
                conv, record, request, merged = await self._begin(
                    key, text, user, is_admin, attachments, speaker, batch, places
                )
            except Fenced as exc:
                log.warning("turn in %s not started: %s", key, exc)
                yield TurnError(MOVED, kind="unavailable")
                return
            except StoreError as exc:
                log.warning("turn in %s not started: the store failed (%s)", key, exc)
                yield TurnError(
                    f"the conversation store is unavailable ({exc}); nothing was run, please try again shortly",
                    kind="store",
                )
                return
            self._running[key] = request
            self._idle.clear()
            if merged is not None:
                yield merged
            cli_total: float | None = None
            try:
                async with aclosing(self.runtime.run_turn(request)) as events:
                    async for event in events:
                        if isinstance(event, TurnResult):
                            # the runtime gives the turn's own cost and the total Claude Code reported
                            cli_total, cost = event.session_cost_usd, event.cost_usd
                            event = replace(event, session_cost_usd=conv.total_cost_usd + (cost or 0.0))
                            _fill(record, TurnOutcome.of(event, conv.session_id))
                        elif isinstance(event, TurnError):
                            _fill(record, TurnOutcome.of(event, conv.session_id))
                        yield event
            except BaseException:
                if record.status == "running":
                    record.status, record.error = "interrupted", "the turn was abandoned"
                raise
            finally:
                self._running.pop(key, None)
                if not self._running:
                    self._idle.set()
                if record.status == "running":  # ended without a terminal event
                    record.status, record.error = "interrupted", record.error or "the turn was abandoned"
                record.finished_at = time.time()
                await self._finish_turn(key, conv.session_id, record, cli_total)

    async def _begin(
        self,
        key: ConversationKey,
        text: str,
        user: UserRef,
        is_admin: bool,
        attachments: list[Attachment] | None,
        speaker: str | None,
        batch: str | None,
        places: list[str] | None = None,
    ) -> tuple[Conversation, TurnRecord, TurnRequest, MessagesMerged | None]:
        """Record the turn as running (the user's text first), and say what to run."""
        await self.flush_unwritten()
        conv = await self.open(key, places=places)
        project = conv.metadata.get("project")
        if self.projects and project in self.projects.settings:
            await self.projects.workplace(project, key)  # its worktree comes back if it was cleaned up
        waiting = [t for t in await self.queued(key) if self._answers(t, batch)]
        merged: MessagesMerged | None = None
        prompt = f"[{speaker}] {text}" if speaker and text else text
        if waiting:
            shared = speaker is not None or len({t.user_id for t in waiting}) > 1
            parts, files = [], []
            for queued_turn in waiting:
                parked = await self._parked_of(queued_turn)
                who = (parked.name if parked and parked.name else None) or queued_turn.user_id
                parts.append(f"[{who}] {queued_turn.user_text}" if shared else queued_turn.user_text)
                files += parked.attachments if parked else []
            texts = [t.user_text for t in waiting] + ([text] if text else [])
            parts += [prompt] if text else []
            prompt = "\n\n".join(p for p in parts if p)
            text = "\n\n".join(t for t in texts if t)
            attachments = files + list(attachments or [])
            # waited through a restart, or parked by an instance that went away
            restored = sum(
                1 for t in waiting if t.started_at < self._started_at or t.instance_id not in (None, self.instance_id)
            )
            merged = MessagesMerged(count=len(texts), restored=restored)
        cwd = await self._working_dir(conv)
        conv.cwd = str(cwd)
        conv.status = "running"
        conv.instance_id = self.instance_id
        conv.fence = self._fence(key, conv)
        conv.last_active_at = time.time()
        record = TurnRecord(
            key=key,
            session_id=conv.session_id,
            user_id=user.id,
            user_text=text,
            status="running",
            instance_id=self.instance_id,
        )
        await self.store.put(conv)
        await self.store.put_turn(record)  # the user's text is in the history before Claude starts
        for queued_turn in waiting:  # answered by this turn: marked once it is recorded (else they still wait)
            queued_turn.status = "merged"
            await self.store.put_turn(queued_turn)
        await self._forget_waiting(waiting)
        request = TurnRequest(
            key=key,
            session_id=conv.session_id,
            resume=conv.message_count > 0,
            cwd=str(cwd),
            root=str(self.root_of(conv)),
            repository=conv.metadata.get("repository"),
            branch=conv.metadata.get("branch"),
            model=self.model_of(conv),
            text=prompt,
            user_id=user.id,
            is_admin=is_admin,
            attachments=list(attachments or []),
            reported_total=conv.cli_cost_usd,
        )
        return conv, record, request, merged

    async def warm_request(self, conv: Conversation) -> TurnRequest | None:
        """What a turn of ``conv`` would start Claude Code with, to start it ahead of the turn (no prompt).

        None when the conversation's directory is gone (its next turn brings it back: a project's
        worktree is recreated by git, not here).
        """
        if not await asyncio.to_thread(self.root_of(conv).is_dir):
            return None
        cwd = await self._working_dir(conv)
        return TurnRequest(
            key=conv.key,
            session_id=conv.session_id,
            resume=conv.message_count > 0,
            cwd=str(cwd),
            root=str(self.root_of(conv)),
            repository=conv.metadata.get("repository"),
            branch=conv.metadata.get("branch"),
            model=self.model_of(conv),
            text="",
            user_id=conv.key.owner,
        )

    async def _working_dir(self, conv: Conversation) -> Path:
        """The conversation's directory, recreated if deleted; back to the root if it moved away."""
        rel = self.relative(conv, conv.cwd)
        if Path(rel).is_absolute():  # e.g. workspace.base_dir changed since it was stored
            log.warning("%s: stored cwd %s is outside its workspace; using the workspace root", conv.key, conv.cwd)
            rel = "."
        return await self.workspaces.ensure_in(self.root_of(conv), rel)

    async def _owns(self, key: ConversationKey) -> bool:
        """False when several instances coordinate and another one took ``key`` over (this instance's
        lease lapsed while the turn waited); True when coordination cannot tell (the fenced writes decide)."""
        if not self.shared or self.still_owner is None or key not in self.fences:
            return True
        try:
            return await self.still_owner(key, self.fences[key])
        except Exception as exc:  # noqa: BLE001 (coordination unreachable: the store's fence still guards)
            log.warning("could not check the ownership of %s (%r); the fenced writes decide", key, exc)
            return True

    async def _finish_turn(
        self, key: ConversationKey, session_id: str, record: TurnRecord, cli_total: float | None
    ) -> None:
        try:
            await self._write_finish(key, session_id, record, cli_total)
        except Fenced as exc:
            log.warning("not recording the end of a turn in %s: %s (another instance took it over)", key, exc)
        except StoreError as exc:
            log.error(
                "could not record the end of a turn in %s (%s); it is kept and written when the store is back", key, exc
            )
            self._unwritten.append((key, session_id, record, cli_total))
            if self._retrier is None or self._retrier.done():
                self._retrier = asyncio.create_task(self._retry_writes(), name="ccbridge-unwritten-turns")

    async def _write_finish(
        self, key: ConversationKey, session_id: str, record: TurnRecord, cli_total: float | None
    ) -> None:
        if not await self._owns(key):  # a stale owner: the new one's record of this turn stands
            raise Fenced(f"{key} is owned by another instance now")
        await self.store.put_turn(record)  # the history first: the reply is kept even if the rest fails
        conv = await self.store.get(key)
        if conv is not None and conv.session_id == session_id:
            conv.fence = self._fence(key, conv)  # a newer owner's record refuses this write (Fenced)
            conv.message_count += 1  # written last: a retry after a failure before it counts the turn once
            conv.total_cost_usd += record.cost_usd or 0.0
            conv.status = "idle"
            conv.last_active_at = time.time()
            if cli_total is not None:
                conv.cli_cost_usd = cli_total
            await self.store.put(conv)

    async def flush_unwritten(self) -> int:
        """Write the turn records the store refused earlier; returns how many are still waiting."""
        while self._unwritten:
            key, session_id, record, cli_total = self._unwritten[0]
            try:
                await self._write_finish(key, session_id, record, cli_total)
            except Fenced:
                pass  # another instance owns it now: its record wins
            except StoreError:
                return len(self._unwritten)
            self._unwritten.pop(0)
            log.info("recorded the delayed end of a turn in %s", key)
        return 0

    @property
    def unwritten(self) -> int:
        return len(self._unwritten)

    def unsaved(self, key: ConversationKey) -> bool:
        """True while a turn of ``key`` ended but its record waits for the store to come back."""
        return any(entry[0] == key for entry in self._unwritten)

    async def _retry_writes(self) -> None:
        while self._unwritten:
            await asyncio.sleep(_RETRY_WRITES_EVERY)
            await self.flush_unwritten()


def _fill(record: TurnRecord, outcome: TurnOutcome) -> None:
    record.reply_text = outcome.text
    record.tool_calls = outcome.tool_calls
    record.cost_usd = outcome.cost_usd
    record.duration_ms = outcome.duration_ms
    record.status = outcome.status
    record.error = outcome.error


def _files_note(attachments: list[Attachment], cwd: str) -> str:
    if not attachments:
        return ""
    names = ", ".join(str(a.path.relative_to(cwd)) if a.path.is_relative_to(cwd) else str(a.path) for a in attachments)
    return f"[attached: {names}]"
