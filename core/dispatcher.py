"""The dispatcher: a normalized incoming chat message -> one decision -> at most one turn.

Adapters (:mod:`core.adapter`) build an :class:`IncomingMessage` and hand it to
:meth:`Dispatcher.submit` (returns at once; the work runs in the background) or
:meth:`Dispatcher.handle` (awaits the whole reply). Every rule about *whether*
and *how* to answer lives here, in this order, before anything is downloaded:

1. not addressed to the bot (no mention) and no conversation there yet -> ignored
2. not on the allowlist -> one polite refusal per cooldown, nothing runs
3. a command (``/new``, ``/stop``, ...) -> runs at once, never queued;
   anything else that may start a turn shows the typing indicator at once (a sign of life
   before any file is downloaded, any process started or any turn ahead has finished)
4. an empty message -> a hint; an oversized one -> refused with the limit; a user whose
   budget is spent (``budgets:``, :mod:`core.budgets`) -> one message saying so, nothing runs
5. files -> downloaded and saved in the conversation's ``uploads/`` (one size
   limit); a refused file refuses the message, the user is told which and why
6. ``access.debounce``: a first message waits that long for more from the same person
   (the typing indicator shows at once) and they are answered in one turn;
   ``busy_policy: merge``: what arrives while a reply runs is answered together in one
   next turn (the user is told once; while a reply runs, everyone's messages join one
   batch). Both park the messages in the store first (``queued``, with a note of their
   files and reply address), so a restart loses none: :meth:`Dispatcher.answer_left_waiting`
   answers them once the adapter is back (or the next message does). ``/stop`` inside the
   window drops the waiting messages.
7. the user's running turns over ``access.max_running_per_user`` -> waits (told once)
8. a turn already running -> queued (told) or, with ``busy_policy: interrupt``, it stops
9. the turn streams into the message's :class:`~core.sink.ReplySink`

Messages of one conversation keep their order even when an earlier one is
still downloading its files. One conversation's failure is reported in that
conversation only.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .approvals import EXPIRED
from .commands import NOTHING_RUNNING, CommandContext, CommandRunner, parse_command
from .errors import ApprovalNotFound, CCBridgeError, StoreError
from .events import ApprovalRequest, Decision
from .grants import AccessGrants
from .intake import FileIntake, IncomingFile
from .keys import ConversationKey, UserRef
from .reply import ReplyStreamer, TypingShown, send_notice
from .routing import DispatchRouting, RelaySink
from .sink import ReplySink

if TYPE_CHECKING:  # the agent imports nothing from here; avoid the cycle at run time
    from .adapter import ChatAdapter
    from .agent import Agent

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 100_000
CLAIM_TTL = 120.0  # with several instances: a delivery claimed but not yet accepted is free again after this
_claims: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("ccbridge_claims", default=())
REFUSAL_COOLDOWN = 3600.0
DEDUPE_TTL = 6 * 3600.0  # how long a delivered event id is remembered (platforms retry within minutes)


def empty_hint(command_prefix: str = "/") -> str:
    """What an empty message addressed to the bot (a bare mention) gets instead of a turn."""
    return f"👋 Send me a question or a task ({command_prefix}help lists the commands)."


STORE_DOWN = "⚠️ The conversation store is unavailable right now, so nothing was run. Please try again in a moment."
REPLY_UNSAVED = (
    "⚠️ The conversation store became unavailable during this reply: the reply above is kept, "
    "and it is saved to the history once the store is back."
)


@dataclass
class IncomingMessage:
    """One chat message, as every adapter reports it."""

    key: ConversationKey
    user: UserRef
    text: str
    reply: ReplySink
    files: list[IncomingFile] = field(default_factory=list)
    mentioned: bool = True  # addressed to the bot (a DM, a mention, a reply to it, a command)
    message_id: str | None = None
    command_prefix: str = "/"  # how commands are typed on this platform (Slack: "!")
    places: list[str] = field(default_factory=list)  # names its place goes by ("slack:C0123"), for projects
    mentions: list[str] = field(default_factory=list)  # platform ids of the users it mentions (not the bot)
    role_mentions: list[str] = field(default_factory=list)  # role ids it mentions (Discord)
    #: the typing indicator the dispatcher showed for it (its reply repeats it from there)
    typing_shown: TypingShown | None = field(default=None, repr=False, compare=False)

    @property
    def platform(self) -> str:
        return self.key.platform


@dataclass
class Ticket:
    """A message's place in its conversation's line (see :meth:`Dispatcher.reserve`)."""

    key: ConversationKey
    previous: asyncio.Future[None] | None
    handed_over: asyncio.Future[None]

    def release(self) -> None:
        """Let the next message of the conversation go (also: give the place up)."""
        if not self.handed_over.done():
            self.handed_over.set_result(None)


class _Batch:
    """Messages answered together by one turn: its id, how many, and when the last one came."""

    _ids = itertools.count(1)

    def __init__(self) -> None:
        self.id = f"batch-{next(self._ids)}"
        self.started = self.last = time.monotonic()
        self.count = 0
        self.in_window = False  # waiting out the debounce window (``/stop`` drops it then)
        self.dropped = False  # ``/stop`` came inside the window: nothing runs
        self.woken = asyncio.Event()  # the window ends early: dropped, or the bot is stopping
        self._joining = 0  # messages being saved into the batch right now
        self._settled = asyncio.Event()
        self._settled.set()

    @asynccontextmanager
    async def joining(self) -> AsyncIterator[None]:
        """A message is being saved into the batch: its turn waits for the save before it gathers."""
        self._joining += 1
        self._settled.clear()
        try:
            yield
        finally:
            self._joining -= 1
            if not self._joining:
                self._settled.set()

    async def settled(self) -> None:
        """Every message that joined the batch is saved (or failed to be)."""
        await self._settled.wait()

    def touch(self) -> None:
        self.count += 1
        self.last = time.monotonic()

    async def quiet(self, window: float, longest: float) -> None:
        """Wait until nothing came for ``window`` seconds (at most ``longest`` in all), or the batch is woken."""
        self.in_window = True
        try:
            while not self.woken.is_set():
                remaining = min(self.last + window, self.started + longest) - time.monotonic()
                if remaining <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.woken.wait(), remaining)
        finally:
            self.in_window = False


class _UserTurns:
    """Counts each user's running turns; a user at the cap waits in line.

    The cap is read on every check, so a reloaded ``access.max_running_per_user`` applies to new turns.
    """

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self._running: dict[tuple[str, str], int] = {}
        self._freed = asyncio.Condition()

    @property
    def limit(self) -> int:
        return self._limit()

    def full(self, who: tuple[str, str]) -> bool:
        return self._running.get(who, 0) >= self.limit

    @asynccontextmanager
    async def hold(self, who: tuple[str, str]) -> AsyncIterator[None]:
        async with self._freed:
            await self._freed.wait_for(lambda: not self.full(who))
            self._running[who] = self._running.get(who, 0) + 1
        try:
            yield
        finally:
            async with self._freed:
                left = self._running.get(who, 1) - 1
                if left:
                    self._running[who] = left
                else:
                    self._running.pop(who, None)
                self._freed.notify_all()


class Dispatcher:
    def __init__(self, agent: Agent, *, name: str | None = None) -> None:
        self.agent = agent
        self.name = name or "bot"  # scopes this bot's delivery ids
        self.conversations = agent.conversations
        self.access = agent.access
        self.grants = AccessGrants(agent.store, self.name)
        self.commands = CommandRunner(agent.conversations, agent.access, self.grants, budgets=agent.budgets)
        self.intake = FileIntake(agent.workspaces, int(agent.sections.workspace.max_upload_mb * 1024 * 1024))
        self._tasks: set[asyncio.Task[None]] = set()
        self._intake_order: dict[ConversationKey, asyncio.Future[None]] = {}
        self._ahead: dict[ConversationKey, int] = {}
        self._user_turns = _UserTurns(lambda: self.agent.sections.access.max_running_per_user)
        self._batches: dict[tuple[ConversationKey, str | None], _Batch] = {}
        self._closing = False  # the adapter is stopping (see end_windows)
        self._orphans: asyncio.Task[None] | None = None  # answers what instances gone for good left waiting
        #: the bot's adapter (it registers itself): rebuilds the sinks of messages other instances hand over
        self.adapter: ChatAdapter[Any] | None = None
        self.routing = DispatchRouting(self)
        self.routing.subscribe()

    # -- entry points ----------------------------------------------------------
    def reserve(self, key: ConversationKey) -> Ticket:
        """A place in ``key``'s line now, for a message submitted later (a photo album still arriving)."""
        previous = self._intake_order.get(key)
        handed_over: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._intake_order[key] = handed_over
        self._ahead[key] = self._ahead.get(key, 0) + 1

        def forget(done: asyncio.Future[None]) -> None:
            if self._intake_order.get(key) is done:
                del self._intake_order[key]
            left = self._ahead.get(key, 1) - 1
            if left:
                self._ahead[key] = left
            else:
                self._ahead.pop(key, None)

        handed_over.add_done_callback(forget)
        return Ticket(key, previous, handed_over)

    def submit(self, msg: IncomingMessage, ticket: Ticket | None = None) -> asyncio.Task[None]:
        """Handle ``msg`` in the background (adapters must acknowledge events fast).

        Messages of one conversation reach their turn in the order they were submitted
        (or reserved: ``ticket``).
        """
        if ticket is None or ticket.key != msg.key:
            if ticket is not None:
                ticket.release()
            ticket = self.reserve(msg.key)
        claims, _ = _claims.get(), _claims.set(())  # the deliveries this message came in (accepted below)
        task = asyncio.create_task(
            self._handle_safely(msg, ticket.previous, ticket.release, claims), name=f"ccbridge-msg-{msg.key}"
        )
        task.add_done_callback(lambda _: ticket.release())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def handle(self, msg: IncomingMessage) -> None:
        """Handle ``msg`` and wait until its reply is complete."""
        claims, _ = _claims.get(), _claims.set(())
        await self._handle_safely(msg, None, lambda: None, claims)

    @property
    def in_flight(self) -> set[asyncio.Task[None]]:
        """The messages in flight (a live set: local ones and the ones other instances handed over)."""
        return self._tasks

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for messages in flight (at shutdown)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def first_delivery(self, event_id: str, ttl: float = DEDUPE_TTL) -> bool:
        """True the first time this bot sees ``event_id`` (platform retries and replays are False).

        If the memory of deliveries is unreachable, the event is handled (a rare duplicate
        answer is better than a lost message).
        """
        seen = self.agent.coordination.seen
        key = f"{self.name}:{event_id}"
        try:
            if not self.agent.coordination.shared:
                return await seen.first_time(key, ttl)
            # Several instances: claim it briefly; keep it once accepted (an instance dying in between
            # leaves the delivery free for the platform's retry to be answered).
            first = await seen.first_time(key, CLAIM_TTL)
            if first:
                _claims.set((*_claims.get(), key))
            return first
        except CCBridgeError as exc:
            log.warning("could not check delivery %s for repeats (%s); handling it", event_id, exc)
            return True

    async def resolve_approval(
        self,
        request_id: str,
        decision: Decision | str,
        user: UserRef | str,
        *,
        conversation: ConversationKey | str | None = None,
    ) -> ApprovalRequest:
        """Answer an approval request for a button press by ``user``.

        ``conversation``: the conversation the pressed button was posted in, when the platform's button
        payload carries it; a button naming another conversation than the request's answers nothing.
        Raises :class:`~core.errors.ApprovalNotFound` / :class:`~core.errors.ApprovalForbidden`.
        """
        if conversation is not None:
            pending = await self.agent.approvals.find(request_id)
            if pending is not None and str(conversation) != str(pending.key):
                log.warning("a button for approval %s names another conversation (%s)", request_id, conversation)
                raise ApprovalNotFound(EXPIRED)
        return await self.agent.resolve_approval(request_id, Decision(decision), user)

    async def admits(self, platform: str, user: UserRef) -> bool:
        """Whether ``user`` may use the bot (for adapters that must decide before showing anything)."""
        await self.refresh_grants()
        return self.access.allows(platform, user.id, user.roles)

    # -- the pipeline ----------------------------------------------------------
    async def _handle_safely(
        self,
        msg: IncomingMessage,
        previous: asyncio.Future[None] | None,
        release: Callable[[], None],
        claims: tuple[str, ...] = (),
    ) -> None:
        try:
            await self._handle(msg, previous, release, claims)
        except asyncio.CancelledError:
            raise
        except StoreError as exc:
            log.warning("message in %s not handled: the store failed (%s)", msg.key, exc)
            await send_notice(msg.reply, STORE_DOWN)
        except CCBridgeError as exc:
            log.info("message in %s failed: %s", msg.key, exc)
            await send_notice(msg.reply, f"⚠️ {exc}")
        except Exception:
            log.exception("message in %s failed", msg.key)
            await send_notice(msg.reply, "⚠️ Something went wrong on our side; the error was logged.")
        finally:
            release()

    async def _accept(self, claims: tuple[str, ...]) -> None:
        """The message was taken on: its deliveries are remembered for good (see :meth:`first_delivery`)."""
        for key in claims:
            await self.agent.coordination.seen.confirm(key, DEDUPE_TTL)

    async def _handle(
        self,
        msg: IncomingMessage,
        previous: asyncio.Future[None] | None,
        release: Callable[[], None],
        claims: tuple[str, ...] = (),
    ) -> None:
        if not msg.mentioned and await self.conversations.get(msg.key) is None:
            log.debug("ignoring a message in %s: not addressed to the bot", msg.key)
            await self._accept(claims)
            return
        await self.refresh_grants()
        if not self.access.allows(msg.platform, msg.user.id, msg.user.roles):
            await self._accept(claims)
            await self._refuse(msg)
            return
        await self._accept(claims)
        text = msg.text.strip()
        command = parse_command(text)
        if command is not None:
            release()  # commands act at once, never behind queued messages
            if await self.routing.forward(msg, text, [], command=True):
                return
            await self._command(msg, command)
            return
        if not text and not msg.files:
            await send_notice(msg.reply, empty_hint(msg.command_prefix))
            return
        if len(text) > MAX_MESSAGE_CHARS:
            await send_notice(
                msg.reply,
                f"⚠️ That message is {len(text):,} characters long; the limit is {MAX_MESSAGE_CHARS:,}. "
                "Send it as a file instead.",
            )
            return
        await self._sign_of_life(msg)
        is_admin = self.access.is_admin(msg.platform, msg.user.id, msg.user.roles)
        refusal = await self.agent.budgets.refusal(msg.platform, msg.user.id, is_admin=is_admin)
        if refusal is not None:  # the user's budget is spent: one message, nothing downloaded, nothing run
            await send_notice(msg.reply, refusal.message(msg.command_prefix), final=True)
            return
        attachments = []
        if msg.files:
            conv = await self.conversations.open(msg.key, places=msg.places or self.places_of(msg.key))
            folder = self.conversations.root_of(conv) / self.agent.workspaces.uploads_dir
            taken = await self.intake.take(msg.key, msg.files, folder=folder)
            if taken.refused:
                if previous is not None:  # downloads run side by side; what the user is told comes in order
                    await asyncio.wait([previous])
                await send_notice(msg.reply, taken.notice())
                return
            attachments = taken.attachments
        if previous is not None:
            await asyncio.wait([previous])  # the conversation's earlier messages go first
        if await self.routing.forward(msg, text, attachments, release=release):
            return  # another instance owns the conversation: it answered, through us
        await self.deliver(msg, text, attachments, release)

    @property
    def places_of(self) -> Callable[[ConversationKey], list[str]]:
        """The names a conversation's place goes by (``slack:C0123``): the conversations' own policy,
        which a bot sets here (default ``platform:owner``)."""
        return self.conversations.places_for

    @places_of.setter
    def places_of(self, policy: Callable[[ConversationKey], list[str]]) -> None:
        self.conversations.places_of = policy

    def answer_left_waiting(self) -> None:
        """Once the adapter is started: answer the messages this instance left waiting when it stopped.

        Messages waiting out the debounce window or a running reply (``busy_policy: merge``) are
        kept in the store (:meth:`~core.conversations.Conversations.park`). Where the adapter can
        rebuild their reply's sink (``sink_at``), they are answered now, in one turn per
        conversation; elsewhere (a sink without an address) the next message there answers them
        too, and its reply says so.
        """
        self._closing = False
        self.track(asyncio.create_task(self._answer_left_waiting(), name=f"ccbridge-left-waiting-{self.name}"))
        if self.routing.backend is not None and self._orphans is None:
            self._orphans = asyncio.create_task(self._answer_orphans(), name=f"ccbridge-orphans-{self.name}")

    async def _answer_orphans(self) -> None:
        """With several instances: answer the messages another instance left waiting when it went away
        for good (scaled down, or back under another id), once its heartbeat is gone; one live
        instance claims each conversation's."""
        backend = self.routing.backend
        assert backend is not None
        while True:
            await asyncio.sleep(backend.lease_ms / 1000)
            try:
                gone = [i for i in await self.conversations.waiting_instances() if not await backend.alive(i)]
            except Exception as exc:  # noqa: BLE001 (a store or Redis hiccup: looked at again next time)
                log.debug("could not look for messages left waiting by instances gone: %r", exc)
                continue
            for instance in gone:
                await self._answer_left_waiting(instance, claim=self.agent.coordination.seen.first_time)

    async def _answer_left_waiting(
        self, instance: str | None = None, claim: Callable[[str, float], Awaitable[bool]] | None = None
    ) -> None:
        try:
            left = await self.conversations.left_waiting(self.name, instance)
        except CCBridgeError as exc:
            log.warning("could not look for messages left waiting by a restart: %s", exc)
            return
        for key, waiting in left.items():
            if claim is not None and not await claim(f"orphans:{instance}:{key}:{waiting[-1].turn_id}", 3600):
                continue  # another live instance answers them
            address = next((w.address for w in waiting if w.address is not None), None)
            sink = self.adapter.sink_at(address) if self.adapter is not None and address is not None else None
            if sink is None:
                log.warning(
                    "%d message(s) in %s waited through a restart; the next message there answers them too",
                    len(waiting),
                    key,
                )
                continue
            log.info("answering %d message(s) in %s that waited through a restart", len(waiting), key)
            msg = IncomingMessage(key, waiting[0].user, "", sink, places=self.places_of(key))
            ticket = self.reserve(key)  # messages arriving now come after these
            task = asyncio.create_task(self._answer_restored(msg, ticket), name=f"ccbridge-restored-{key}")
            self.track(task)

    async def _answer_restored(self, msg: IncomingMessage, ticket: Ticket) -> None:
        try:
            if await self.routing.forward(msg, "", [], release=ticket.release):
                return  # another instance owns the conversation now: it answers them
            async with self._user_turns.hold((msg.platform, msg.user.id)):
                await self._run_turn(msg, "", [], ticket.release)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("could not answer the messages left waiting in %s: %r", msg.key, exc)
            await send_notice(msg.reply, "⚠️ Messages you sent before the bot restarted could not be answered.")
        finally:
            ticket.release()

    async def _sign_of_life(self, msg: IncomingMessage) -> None:
        """Show the typing indicator now, without waiting for the platform to confirm it."""
        call = asyncio.create_task(_show_typing(msg.reply), name=f"ccbridge-typing-{msg.key}")
        msg.typing_shown = TypingShown(time.monotonic(), call)
        self.track(call)
        await asyncio.sleep(0)  # the call goes out before anything else of the message is done

    def track(self, task: asyncio.Task[None]) -> None:
        """Count ``task`` among the messages in flight (drained at shutdown)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run_command(self, msg: IncomingMessage, command: Any) -> None:
        await self._command(msg, command)

    async def _command(self, msg: IncomingMessage, command: Any) -> None:
        """Run a command for this instance's conversation and answer it."""
        ctx = CommandContext(
            msg.key,
            msg.user,
            is_admin=self.access.is_admin(msg.platform, msg.user.id, msg.user.roles),
            mentions=list(msg.mentions),
            role_mentions=list(msg.role_mentions),
            places=msg.places or self.places_of(msg.key),
        )
        dropped = self._drop_windows(msg.key) if command.name == "stop" else 0
        answer = await self.commands.answer(ctx, command)
        text = answer.text
        if dropped:
            note = f"⏹ Stopped: the {dropped} message(s) waiting here will not be answered."
            text = note if text == NOTHING_RUNNING else f"{text}\n{note}"
        await send_notice(msg.reply, text)
        if answer.file is not None:
            try:
                await msg.reply.send_file(answer.file, "")
            except Exception as exc:
                log.warning("could not send %s: %r", answer.file.name, exc)
                await send_notice(msg.reply, f"⚠️ I couldn't send {answer.file.name} ({exc}).")

    async def deliver(self, msg: IncomingMessage, text: str, attachments: list, release: Callable[[], None]) -> None:
        """The admitted message, on the instance owning its conversation: batching, caps, the turn."""
        access = self.agent.sections.access
        merging = access.busy_policy == "merge" and self.conversations.busy(msg.key)
        # While a reply runs, everyone's messages join one batch (one next turn, in order); otherwise
        # the debounce window gathers one person's burst.
        shared_batch = (msg.key, None)
        if merging or shared_batch in self._batches:
            await self._gather(msg, text, attachments, release, shared_batch)
            return
        if access.debounce > 0:
            await self._gather(msg, text, attachments, release, (msg.key, msg.user.id))
            return
        who = (msg.platform, msg.user.id)
        if self._user_turns.full(who):
            limit = self._user_turns.limit
            await send_notice(
                msg.reply, f"⏳ You have {limit} request(s) running already; this one starts when one of them ends."
            )
        async with self._user_turns.hold(who):
            await self._run_turn(msg, text, attachments, release)

    async def _gather(
        self,
        msg: IncomingMessage,
        text: str,
        attachments: list,
        release: Callable[[], None],
        batch_key: tuple[ConversationKey, str | None],
    ) -> None:
        """Park the message; the first of a batch waits (debounce) and runs the turn answering them all."""
        access = self.agent.sections.access
        address = msg.reply.address()
        batch = self._batches.get(batch_key)
        if batch is not None:  # a turn will answer this one together with the others
            async with batch.joining():  # the turn starting meanwhile waits for this save
                await self.conversations.park(
                    msg.key, text, msg.user, attachments, batch=batch.id, bot=self.name, address=address
                )
                batch.touch()
            return
        batch = self._batches[batch_key] = _Batch()
        try:
            await self.conversations.park(
                msg.key, text, msg.user, attachments, batch=batch.id, bot=self.name, address=address
            )
            batch.touch()
            release()  # the conversation's next messages may join the batch now
            if access.debounce > 0:
                if msg.typing_shown is None:  # a sign of life while it waits for more
                    await _show_typing(msg.reply)
                typing = asyncio.create_task(_keep_typing(msg.reply), name=f"ccbridge-window-typing-{msg.key}")
                try:
                    await batch.quiet(access.debounce, longest=4 * access.debounce)
                finally:
                    typing.cancel()
                if batch.dropped:  # /stop inside the window: nothing runs
                    self._close_batch(batch_key, batch)
                    await batch.settled()  # a message being saved into it is dropped with it
                    await self.conversations.drop_batch(msg.key, batch.id, "dropped by /stop before it was answered")
                    return
                if self._closing:  # the bot stops: the messages stay parked, the next start answers them
                    return
            burst_only = batch_key[1] is not None and access.busy_policy != "merge"
            if burst_only:  # the window is over: what comes next is a message of its own (queued or interrupting)
                self._close_batch(batch_key, batch)
            elif access.busy_policy == "merge" and self.conversations.busy(msg.key):
                await send_notice(msg.reply, "⏳ I'll answer your messages together once the current reply is done.")

            async def started() -> None:  # no one joins from now on; those joining are saved first
                self._close_batch(batch_key, batch)
                await batch.settled()

            who = (msg.platform, msg.user.id)
            async with self._user_turns.hold(who):
                await self._run_turn(
                    msg, "", [], release, batch=batch.id, on_start=started, busy_policy_applies=burst_only
                )
        finally:
            self._close_batch(batch_key, batch)

    def _drop_windows(self, key: ConversationKey) -> int:
        """``/stop``: the batches of ``key`` still in their debounce window run nothing; how many messages."""
        dropped = 0
        for (batch_of, _), batch in list(self._batches.items()):
            if batch_of == key and batch.in_window and not batch.dropped:
                batch.dropped = True
                batch.woken.set()
                dropped += batch.count
        return dropped

    def end_windows(self) -> None:
        """The adapter stops: messages waiting out a debounce window stay parked for the next start.

        (Their turns do not run now, so stopping never waits for a window.)
        """
        self._closing = True
        if self._orphans is not None:
            self._orphans.cancel()
            self._orphans = None
        for batch in self._batches.values():
            if batch.in_window:
                batch.woken.set()

    def _close_batch(self, batch_key: tuple[ConversationKey, str | None], batch: _Batch) -> None:
        if self._batches.get(batch_key) is batch:
            del self._batches[batch_key]

    async def _run_turn(
        self,
        msg: IncomingMessage,
        text: str,
        attachments: list,
        release: Callable[[], None],
        *,
        batch: str | None = None,
        on_start: Callable[[], Awaitable[None]] | None = None,
        busy_policy_applies: bool = False,
    ) -> None:
        """Run the turn answering ``msg`` (or its ``batch``); ``busy_policy`` applies to a lone message or a
        debounced burst (``busy_policy_applies``), not to the messages merged while a reply ran."""
        key = msg.key
        if self.conversations.busy(key) and (batch is None or busy_policy_applies):
            if self.agent.sections.access.busy_policy == "interrupt":
                await self.conversations.stop(key)
                await send_notice(msg.reply, "⏹ Stopped the previous reply to answer this one.")
            else:
                ahead = self.conversations.waiting(key) + 1
                await send_notice(msg.reply, f"⏳ Queued — I'll answer after the current reply ({ahead} ahead).")
        conv = await self.conversations.get(key)
        if conv is not None and conv.status == "interrupted":
            await send_notice(
                msg.reply,
                "ℹ️ Your previous request was cut off (the bot restarted or the instance running it stopped); the session continues.",
            )
        speaker = str(msg.user) if key.owner != msg.user.id else None
        events = self.conversations.turn(
            key,
            text,
            msg.user,
            is_admin=self.access.is_admin(msg.platform, msg.user.id, msg.user.roles),
            attachments=attachments,
            speaker=speaker,
            on_queued=release,
            on_start=on_start,
            batch=batch,
            places=msg.places or self.places_of(key),
        )
        reply = self.agent.sections.reply
        async with aclosing(events):
            if isinstance(msg.reply, RelaySink):  # a forwarded message: the receiving instance shows the reply
                await msg.reply.relay(events)
            else:
                metrics = self.agent.metrics.platform(msg.platform)
                streamer = ReplyStreamer(
                    msg.reply,
                    verbosity=reply.verbosity,
                    show_cost=reply.show_cost,
                    metrics=metrics,
                    typing_shown=msg.typing_shown,
                )
                await streamer.run(events)
        if self.conversations.unsaved(key):  # the end of the turn could not be written: say so, keep it
            await send_notice(msg.reply, REPLY_UNSAVED)

    async def refresh_grants(self) -> None:
        """Bring the access granted in the chat up to date (a store read every few seconds at most)."""
        try:
            await self.grants.refresh()
        except NotImplementedError:
            return  # a store without named values: only the config file's allowlist
        except CCBridgeError as exc:
            log.warning("could not read the access granted in the chat (%s); using the last known", exc)
        self.access.granted = self.grants.entries

    async def _refuse(self, msg: IncomingMessage) -> None:
        who = f"{self.name}:{msg.platform}:{msg.user.id}"
        log.info("refused %s:%s (not on the allowlist)", msg.platform, msg.user.id)
        # In a shared chat an outsider is told once per cooldown; a private answer can be given every time.
        if msg.reply.private_notices or await self.agent.coordination.refusals.should_notify(who, REFUSAL_COOLDOWN):
            await send_notice(msg.reply, self.access.settings.refusal)


async def _keep_typing(sink: ReplySink) -> None:
    """The typing indicator renewed while messages wait out their debounce window (platforms let it
    fade after a few seconds)."""
    every = sink.limits.typing_interval
    if every <= 0:
        return
    while True:
        await asyncio.sleep(every)
        await _show_typing(sink)


async def _show_typing(sink: ReplySink) -> None:
    try:
        await sink.typing()
    except Exception as exc:
        log.debug("typing indicator failed: %r", exc)
