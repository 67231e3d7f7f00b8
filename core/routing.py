"""Routing to the owner: with several instances, a conversation's turns run where its warm process is.

Any instance may receive any event. The first to see a conversation takes its
lease (:mod:`core.coordination.redis`); from then on every instance hands that
conversation's messages to the owner, after doing what only the receiver can do
(checking access, downloading files onto the shared workspace storage). The
owner runs the rest of the dispatcher's pipeline — batching, caps, the busy
policy, commands, the turn on its warm Claude Code process — and sends the
turn's events back; the receiver shows them on its platform connection through
the same reply engine as a local turn. The HTTP API and the library route their
turns the same way (:class:`AgentRouting`).

When an owner dies, its heartbeat lapses and the next message for one of its
conversations makes the receiver the owner (with the next fencing token): it
marks the turn the dead owner was running as interrupted, the user is told once,
and the session resumes from its transcript.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from .commands import parse_command
from .coordination.base import OwnerGone
from .events import AgentEvent, ApprovalRequested, FileOffered, TurnError, TurnResult, TurnWaiting
from .keys import ConversationKey, UserRef
from .reply import ReplyStreamer, send_notice
from .sink import ReplySink
from .wire import (
    Done,
    Notice,
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


async def show(replies: AsyncIterator[dict[str, Any]], sink: ReplySink, verbosity: str, show_cost: bool) -> None:
    """Show an owner's events on the receiver's sink: notices at once, a turn through the reply engine."""
    queue: asyncio.Queue[AgentEvent | None] = asyncio.Queue()
    streamer: asyncio.Task[Any] | None = None

    async def turn_events() -> AsyncIterator[AgentEvent]:
        while (event := await queue.get()) is not None:
            yield event

    try:
        async for data in replies:
            event = event_from_wire(data)
            if isinstance(event, Done):
                break
            if isinstance(event, Notice):
                await send_notice(sink, event.text)
                continue
            if isinstance(event, Typing):
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
        if streamer is None:  # nothing of the turn was shown: the message can be run elsewhere
            raise OwnerGone(gone.instance, started=False) from None
        raise
    except TimeoutError as exc:
        log.warning("a forwarded message got no answer: %s", exc)
        if streamer is None:
            await send_notice(sink, "⚠️ The instance running this conversation did not answer; please send it again.")
    finally:
        if streamer is not None:
            queue.put_nowait(
                TurnError("the instance running this conversation stopped; this reply was cut off", kind="unavailable")
            )
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
            try:
                async with aclosing(backend.replies(channel, SILENCE_TIMEOUT, sender=ownership.instance)) as replies:
                    await show(replies, msg.reply, reply.verbosity, reply.show_cost)
                return True
            except OwnerGone as gone:
                log.warning("%s stopped answering a message for %s", gone.instance, msg.key)
                if not gone.started:
                    continue  # never taken up: the next owner (likely this instance) runs it
                await self._ownership(msg.key)  # take over now; the reply shown above told the user
                await self.agent.conversations.acknowledge_interruption(msg.key)
                return True

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
        sink = RelaySink(backend, message["channel"])
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
        task = asyncio.create_task(self._run(msg, message, ticket), name=f"ccbridge-forwarded-{key}")
        self.dispatcher.track(task)

    async def _run(self, msg: IncomingMessage, message: dict[str, Any], ticket: Any) -> None:
        sink = msg.reply
        assert isinstance(sink, RelaySink)
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
            await sink.send(Done())


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
            yield TurnError(
                "the instance running this conversation stopped; this reply was cut off", kind="unavailable"
            )
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
