"""The dispatcher: a normalized incoming chat message -> access, commands, one turn.

Adapters build an :class:`IncomingMessage` (with the :class:`ReplySink` to answer
on) and hand it to :meth:`Dispatcher.submit` (background) or
:meth:`Dispatcher.handle` (awaits the whole reply). One conversation's failure
is reported in that conversation only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .commands import CommandRunner, parse_command
from .errors import CCBridgeError
from .events import ApprovalRequest, Decision
from .keys import ConversationKey, UserRef
from .reply import ReplyStreamer, send_notice
from .runtime import Attachment
from .sink import ReplySink

if TYPE_CHECKING:  # the agent imports nothing from here; avoid the cycle at run time
    from .agent import Agent

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 100_000
REFUSAL_COOLDOWN = 3600.0
_REFUSED_PRUNE_AT = 1024  # remembered refusals before old ones are dropped


@dataclass
class IncomingMessage:
    """One chat message, as every adapter reports it."""

    key: ConversationKey
    user: UserRef
    text: str
    reply: ReplySink
    attachments: list[Attachment] = field(default_factory=list)
    mentioned: bool = True  # addressed to the bot (a DM, a mention, a reply to it, a command)
    message_id: str | None = None

    @property
    def platform(self) -> str:
        return self.key.platform


class Dispatcher:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.conversations = agent.conversations
        self.access = agent.access
        self.commands = CommandRunner(agent.conversations)
        self._tasks: set[asyncio.Task[None]] = set()
        self._refused: dict[tuple[str, str], float] = {}

    # -- entry points ----------------------------------------------------------
    def submit(self, msg: IncomingMessage) -> asyncio.Task[None]:
        """Handle ``msg`` in the background (adapters must acknowledge events fast)."""
        task = asyncio.create_task(self.handle(msg), name=f"ccbridge-msg-{msg.key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for messages in flight (at shutdown)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def handle(self, msg: IncomingMessage) -> None:
        try:
            await self._handle(msg)
        except asyncio.CancelledError:
            raise
        except CCBridgeError as exc:
            log.info("message in %s failed: %s", msg.key, exc)
            await self._notify(msg.reply, f"⚠️ {exc}")
        except Exception:
            log.exception("message in %s failed", msg.key)
            await self._notify(msg.reply, "⚠️ Something went wrong on our side; the error was logged.")

    def resolve_approval(self, request_id: str, decision: Decision | str, user_id: str) -> ApprovalRequest:
        """Answer an approval request for a button press by ``user_id``.

        Raises :class:`~core.errors.ApprovalNotFound` / :class:`~core.errors.ApprovalForbidden`.
        """
        return self.agent.resolve_approval(request_id, Decision(decision), user_id)

    # -- the pipeline ----------------------------------------------------------
    async def _handle(self, msg: IncomingMessage) -> None:
        if not msg.mentioned and await self.conversations.get(msg.key) is None:
            log.debug("ignoring a message in %s: not addressed to the bot", msg.key)
            return
        if not self.access.allows(msg.platform, msg.user.id):
            await self._refuse(msg)
            return
        text = msg.text.strip()
        command = parse_command(text)
        if command is not None:
            await self._notify(msg.reply, await self.commands.run(msg.key, command))
            return
        if not text and not msg.attachments:
            await self._notify(msg.reply, "Send me a message (or /help).")
            return
        if len(text) > MAX_MESSAGE_CHARS:
            await self._notify(
                msg.reply,
                f"⚠️ That message is {len(text):,} characters long; the limit is {MAX_MESSAGE_CHARS:,}. "
                "Send it as a file instead.",
            )
            return
        await self._run_turn(msg, text)

    async def _run_turn(self, msg: IncomingMessage, text: str) -> None:
        key = msg.key
        if self.conversations.busy(key):
            if self.agent.sections.access.busy_policy == "interrupt":
                await self.conversations.stop(key)
                await self._notify(msg.reply, "⏹ Stopped the previous reply to answer this one.")
            else:
                ahead = self.conversations.waiting(key) + 1
                await self._notify(msg.reply, f"⏳ Queued — I'll answer after the current reply ({ahead} ahead).")
        conv = await self.conversations.get(key)
        if conv is not None and conv.status == "interrupted":
            await self._notify(msg.reply, "ℹ️ Your previous request was cut off by a restart; the session continues.")
        speaker = str(msg.user) if key.owner != msg.user.id else None
        events = self.conversations.turn(
            key,
            text,
            msg.user,
            is_admin=self.access.is_admin(msg.platform, msg.user.id),
            attachments=msg.attachments,
            speaker=speaker,
        )
        reply = self.agent.sections.reply
        async with aclosing(events):
            await ReplyStreamer(msg.reply, verbosity=reply.verbosity, show_cost=reply.show_cost).run(events)

    async def _refuse(self, msg: IncomingMessage) -> None:
        who = (msg.platform, msg.user.id)
        now = time.monotonic()
        last = self._refused.get(who)
        log.info("refused %s:%s (not on the allowlist)", *who)
        if last is not None and now - last < REFUSAL_COOLDOWN:
            return
        if len(self._refused) >= _REFUSED_PRUNE_AT:  # forget refusals older than the cooldown
            self._refused = {k: t for k, t in self._refused.items() if now - t < REFUSAL_COOLDOWN}
        self._refused[who] = now
        await self._notify(msg.reply, self.access.settings.refusal)

    @staticmethod
    async def _notify(sink: ReplySink, text: str) -> None:
        await send_notice(sink, text)
