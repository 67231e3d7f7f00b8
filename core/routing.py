"""Routing to the owner: with several instances, a conversation's turns run where its warm process is.

Any instance may receive any event. The first to see a conversation takes its
lease (:mod:`core.coordination.redis`); from then on every instance hands that
conversation's messages to the owner, after doing what only the receiver can do
(checking access, downloading files onto the shared workspace storage). The
owner runs the rest of the dispatcher's pipeline — batching, caps, the busy
policy, commands, the turn on its warm Claude Code process — and replies to the
platform itself: the message carries its sink's address
(:meth:`~core.sink.ReplySink.address`), from which the owner's adapter rebuilds
the sink (:meth:`~core.adapter.ChatAdapter.sink_at`). The receiver only waits
for the owner to finish (and tells the user once if the owner dies mid-reply).
Where the owner cannot post there (a sink without an address, an instance not
connected to the platform), it sends the turn's events back and the receiver
shows them through the same reply engine as a local turn. The HTTP API and the
library route their turns the same way (:class:`AgentRouting`); their events
always travel back to the instance holding the client's connection.

When an owner dies, its heartbeat lapses and the next message for one of its
conversations makes the receiver the owner (with the next fencing token): it
marks the turn the dead owner was running as interrupted, the user is told once,
and the session resumes from its transcript.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .commands import parse_command
from .coordination.base import OwnerGone
from .events import (
    AgentEvent,
    ApprovalRequest,
    ApprovalRequested,
    FileOffered,
    TurnError,
    TurnResult,
    TurnWaiting,
)
from .keys import ConversationKey, UserRef
from .reply import ReplyStreamer, send_notice
from .sink import ReplySink
from .wire import (
    Done,
    Notice,
    Posting,
    Typing,
    attachment_from_wire,
    attachment_to_wire,
    event_from_wire,
    event_to_wire,
    user_from_wire,
    user_to_wire,
)

if TYPE_CHECKING:
    from .agent import Agent
    from .coordination.redis import Ownership, RedisBackend
    from .dispatcher import Dispatcher, IncomingMessage

log = logging.getLogger(__name__)

SILENCE_TIMEOUT = 15 * 60.0  # seconds without a word from an owner before a forwarded message is given up
KEEPALIVE = 60.0  # seconds between the owner's signs of life to the receiver while it works on a message
CUT_OFF = "the instance running this conversation stopped; this reply was cut off"


class RelaySink(ReplySink):
    """The sink of a message handed over by another instance: everything goes back to it as events."""

    def __init__(self, backend: RedisBackend, channel: str) -> None:
        self.backend = backend
        self.channel = channel

    async def send(self, event: Any) -> None:
        await self.backend.reply(self.channel, event_to_wire(event))

    async def relay(self, events: AsyncIterator[AgentEvent]) -> None:
        async for event in events:
            await self.send(event)

    async def post(self, text: str) -> Any:
        await self.notify(text)

    async def edit(self, handle: Any, text: str) -> None:
        return None

    async def finalize(self, handle: Any | None, text: str) -> None:
        await self.notify(text)

    async def notify(self, text: str) -> None:
        await self.send(Notice(text))

    async def typing(self) -> None:
        await self.send(Typing())

    async def send_file(self, path: Any, caption: str = "") -> None:
        await self.send(FileOffered(path, caption))


class PostingSink(ReplySink):
    """The sink of a handed-over message whose owner posts the reply itself.

    It is the platform's sink rebuilt from the receiver's address; the receiver is told
    once (:class:`~core.wire.Posting`) when the reply begins to show, so that an owner dying
    after that is never answered twice.
    """

    def __init__(self, sink: ReplySink, relay: RelaySink) -> None:
        self.sink = sink
        self.relay = relay
        self.limits = sink.limits
        self.private_notices = sink.private_notices
        self.shown = False

    async def _showing(self) -> None:
        if not self.shown:
            self.shown = True
            await self.relay.send(Posting(shown=True))

    async def post(self, text: str) -> Any:
        await self._showing()
        return await self.sink.post(text)

    async def edit(self, handle: Any, text: str) -> None:
        await self.sink.edit(handle, text)

    async def finalize(self, handle: Any | None, text: str) -> None:
        await self._showing()
        await self.sink.finalize(handle, text)

    async def typing(self) -> None:
        await self.sink.typing()

    async def show_approval(self, request: ApprovalRequest) -> None:
        await self._showing()
        await self.sink.show_approval(request)

    async def notify(self, text: str) -> None:
        await self.sink.notify(text)  # a notice is no part of the reply: the message may still run elsewhere

    async def send_file(self, path: Path, caption: str = "") -> None:
        await self._showing()
        await self.sink.send_file(path, caption)

    def address(self) -> dict[str, Any] | None:
        return self.sink.address()


async def show(
    replies: AsyncIterator[dict[str, Any]],
    sink: ReplySink,
    verbosity: str,
    show_cost: bool,
    take_over: Callable[[], Awaitable[None]],
) -> None:
    """Show an owner's events on the receiver's sink: notices at once, a turn through the reply engine.

    When the owner dies after its reply began to show, ``take_over`` runs (the conversation
    changes hands, the cut-off turn is acknowledged) before the user is told, once.
    """
    queue: asyncio.Queue[AgentEvent | None] = asyncio.Queue()
    streamer: asyncio.Task[Any] | None = None

    async def turn_events() -> AsyncIterator[AgentEvent]:
        while (event := await queue.get()) is not None:
            yield event

    posted = shown = False  # the owner replies on the platform itself; its reply has begun to show
    try:
        async for data in replies:
            event = event_from_wire(data)
            if isinstance(event, Done):
                break
            if isinstance(event, Posting):
                posted, shown = True, shown or event.shown
                continue
            if isinstance(event, Notice):
                await send_notice(sink, event.text)
                continue
            if isinstance(event, Typing) and not posted:
                try:
                    await sink.typing()
                except Exception as exc:
                    log.debug("typing indicator failed: %r", exc)
                continue
            if isinstance(event, TurnWaiting) and event.kind == "conversation":
                await send_notice(sink, "⏳ Queued — I'll answer after the current reply.")
                continue
            if streamer is None:
                streamer = asyncio.create_task(
                    ReplyStreamer(sink, verbosity=verbosity, show_cost=show_cost).run(turn_events())  # type: ignore[arg-type]
                )
            queue.put_nowait(event)
            if isinstance(event, (TurnResult, TurnError)):
                queue.put_nowait(None)
                await streamer
                streamer = None
    except OwnerGone as gone:
        if streamer is None and not shown:  # nothing of the turn was shown: the message can be run elsewhere
            raise OwnerGone(gone.instance, started=False) from None
        log.warning("%s stopped while answering a message for this instance", gone.instance)
        await take_over()
        if streamer is None:  # the owner posted the reply itself: the notice goes below it
            await send_notice(sink, f"⚠️ {CUT_OFF[0].upper()}{CUT_OFF[1:]}.")
    except TimeoutError as exc:
        log.warning("a forwarded message got no answer: %s", exc)
        if streamer is None and not shown:
            await send_notice(sink, "⚠️ The instance running this conversation did not answer; please send it again.")
    finally:
        if streamer is not None:
            queue.put_nowait(TurnError(CUT_OFF, kind="unavailable"))
            queue.put_nowait(None)
            await streamer


class DispatchRouting:
    """A dispatcher's side of routing: hand messages to owners, and run the ones handed to it."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.agent = dispatcher.agent
        self._subscribed = False

    @property
    def backend(self) -> RedisBackend | None:
        return getattr(self.agent.coordination, "backend", None)

    def subscribe(self) -> None:
        """Run the messages other instances hand to this bot (called once, by the dispatcher)."""
        if not self._subscribed and self.backend is not None:
            self.backend.subscribe(self._on_message)
            self._subscribed = True

    async def forward(
        self,
        msg: IncomingMessage,
        text: str,
        attachments: list[Any],
        *,
        command: bool = False,
        release: Callable[[], None] | None = None,
    ) -> bool:
        """Hand ``msg`` to the instance owning its conversation; False when that is this instance.

        When the owner dies before taking the message up, the lease is asked again (this
        instance takes the conversation over once the owner's heartbeat has lapsed) and the
        message is run here; when it dies mid-answer, the user sees the reply cut off, once.
        """
        backend = self.backend
        if backend is None:
            return False
        message = {
            "type": "deliver",
            "bot": self.dispatcher.name,
            "key": str(msg.key),
            "user": user_to_wire(msg.user),
            "text": text,
            "attachments": [attachment_to_wire(a) for a in attachments],
            "command": command,
            "mentions": list(msg.mentions),
            "role_mentions": list(msg.role_mentions),
            "places": list(msg.places or self.dispatcher.places_of(msg.key)),
            "message_id": msg.message_id,
            "address": msg.reply.address(),
        }
        reply = self.agent.sections.reply
        while True:
            ownership = await self._ownership(msg.key)
            if ownership.mine:
                return False
            channel = backend.new_channel()
            await backend.send(ownership.instance, {**message, "channel": channel})
            if release is not None:
                release()  # the owner receives this conversation's messages in the order they were sent

            async def take_over() -> None:  # the user is told of the cut-off as it happens: not again later
                await self._ownership(msg.key)
                await self.agent.conversations.acknowledge_interruption(msg.key)

            try:
                async with aclosing(backend.replies(channel, SILENCE_TIMEOUT, sender=ownership.instance)) as replies:
                    await show(replies, msg.reply, reply.verbosity, reply.show_cost, take_over)
                return True
            except OwnerGone as gone:  # never taken up: the next owner (likely this instance) runs it
                log.warning("%s stopped before answering a message for %s; running it again", gone.instance, msg.key)

    async def _ownership(self, key: ConversationKey) -> Ownership:
        backend = self.backend
        assert backend is not None
        ownership = await backend.owner(key)
        if ownership.taken_from is not None:
            await self.agent.took_over(key, ownership.taken_from)
        if ownership.mine:
            self.agent.conversations.fences[key] = ownership.fence
        return ownership

    async def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") != "deliver" or message.get("bot") != self.dispatcher.name:
            return
        from .dispatcher import IncomingMessage

        backend = self.backend
        assert backend is not None
        key = ConversationKey.parse(message["key"])
        relay = RelaySink(backend, message["channel"])
        sink: ReplySink = relay
        address, adapter = message.get("address"), self.dispatcher.adapter
        if address and adapter is not None:
            try:
                posting = adapter.sink_at(address)
            except Exception:
                log.exception("could not rebuild the reply sink of a message handed over for %s", key)
                posting = None
            if posting is not None:
                sink = PostingSink(posting, relay)
        msg = IncomingMessage(
            key=key,
            user=user_from_wire(message["user"]),
            text=message["text"],
            reply=sink,
            mentioned=True,
            message_id=message.get("message_id"),
            mentions=list(message.get("mentions") or []),
            role_mentions=list(message.get("role_mentions") or []),
            places=list(message.get("places") or []),
        )
        ticket = self.dispatcher.reserve(key)  # inbox order is arrival order
        task = asyncio.create_task(self._run(msg, message, ticket, relay), name=f"ccbridge-forwarded-{key}")
        self.dispatcher.track(task)

    async def _run(self, msg: IncomingMessage, message: dict[str, Any], ticket: Any, relay: RelaySink) -> None:
        sink = msg.reply
        keepalive = asyncio.create_task(self._keepalive(sink, relay)) if isinstance(sink, PostingSink) else None
        try:
            if message.get("command"):
                ticket.release()
                command = parse_command(msg.text)
                if command is not None:
                    await self.dispatcher.run_command(msg, command)
                return
            if ticket.previous is not None:
                await asyncio.wait([ticket.previous])
            attachments = [attachment_from_wire(a) for a in message.get("attachments") or []]
            await self.dispatcher.deliver(msg, message["text"], attachments, ticket.release)
        except Exception:
            log.exception("a message handed over for %s failed", msg.key)
            await sink.notify("⚠️ Something went wrong on our side; the error was logged.")
        finally:
            ticket.release()
            if keepalive is not None:
                keepalive.cancel()
            await relay.send(Done())

    @staticmethod
    async def _keepalive(sink: PostingSink, relay: RelaySink) -> None:
        """Tell the receiver this instance replies itself, and keep telling it while it works."""
        while True:
            await relay.send(Posting(shown=sink.shown))
            await asyncio.sleep(KEEPALIVE)


class AgentRouting:
    """The library's and the HTTP API's side: a turn whose conversation another instance owns runs there."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._subscribed = False
        self._running: dict[str, asyncio.Task[None]] = {}

    @property
    def backend(self) -> RedisBackend | None:
        return getattr(self.agent.coordination, "backend", None)

    def start(self) -> None:
        if not self._subscribed and self.backend is not None:
            self.backend.subscribe(self._on_message)
            self._subscribed = True

    async def owner(self, key: ConversationKey) -> str | None:
        """The instance owning ``key`` when it is another one (None: run it here)."""
        backend = self.backend
        if backend is None:
            return None
        ownership = await backend.owner(key)
        if ownership.taken_from is not None:
            await self.agent.took_over(key, ownership.taken_from)
        if ownership.mine:
            self.agent.conversations.fences[key] = ownership.fence
            return None
        return ownership.instance

    async def stream(
        self, instance: str, key: ConversationKey, text: str, user: UserRef, is_admin: bool, attachments: list[Any]
    ) -> AsyncIterator[AgentEvent]:
        backend = self.backend
        assert backend is not None
        channel = backend.new_channel()
        await backend.send(
            instance,
            {
                "type": "stream",
                "channel": channel,
                "key": str(key),
                "text": text,
                "user": user_to_wire(user),
                "is_admin": is_admin,
                "attachments": [attachment_to_wire(a) for a in attachments],
            },
        )
        finished = False
        started = False
        try:
            async with aclosing(backend.replies(channel, SILENCE_TIMEOUT, sender=instance)) as replies:
                async for data in replies:
                    event = event_from_wire(data)
                    if isinstance(event, Done):
                        finished = True
                        return
                    if isinstance(event, (Notice, Typing)):
                        continue
                    started = True
                    yield event
                    if isinstance(event, (TurnResult, TurnError)):
                        finished = True
        except OwnerGone as gone:
            finished = True
            if not started:
                raise OwnerGone(gone.instance, started=False) from None
            await self.owner(key)  # take the conversation over; the caller is told here, once
            await self.agent.conversations.acknowledge_interruption(key)
            yield TurnError(CUT_OFF, kind="unavailable")
        finally:
            if not finished:  # the caller left (an HTTP client went away): stop the turn over there
                await backend.send(instance, {"type": "stop", "key": str(key)})

    async def stop(self, instance: str, key: ConversationKey) -> None:
        backend = self.backend
        assert backend is not None
        await backend.send(instance, {"type": "stop", "key": str(key)})

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "stop":
            await self.agent.conversations.stop(ConversationKey.parse(message["key"]))
        elif kind == "stream":
            task = asyncio.create_task(self._stream(message), name="ccbridge-forwarded-stream")
            self._running[message["channel"]] = task
            task.add_done_callback(lambda _: self._running.pop(message["channel"], None))

    async def _stream(self, message: dict[str, Any]) -> None:
        backend = self.backend
        assert backend is not None
        sink = RelaySink(backend, message["channel"])
        try:
            events = self.agent.conversations.turn(
                ConversationKey.parse(message["key"]),
                message["text"],
                user_from_wire(message["user"]),
                is_admin=bool(message.get("is_admin")),
                attachments=[attachment_from_wire(a) for a in message.get("attachments") or []],
            )
            async with aclosing(events):
                async for event in events:
                    if isinstance(event, ApprovalRequested):
                        pass  # answered through the approval bus, wherever the answer lands
                    await sink.send(event)
        except Exception:
            log.exception("a forwarded turn failed")
            await sink.send(TurnError("internal error on the instance running this conversation", kind="internal"))
        finally:
            await sink.send(Done())
