"""The reply sink: the small interface every adapter implements to show a reply.

A sink is where the reply to one incoming message goes (a chat, a thread).
The :class:`~core.reply.ReplyStreamer` drives it; adapters only translate each
call into their platform's API. The contract (``tests/contracts/sink_contract.py``):

* ``post(text)`` shows a new message and returns a handle for it.
* ``edit(handle, text)`` replaces that message's text (streaming update).
  Identical text must be a no-op, not an error.
* ``finalize(handle, text)`` gives the message its final text. With
  ``handle=None`` it sends ``text`` as a new complete message (notices, the
  continuation of a split reply, or a fallback when an edit is impossible).
  Adapters with native streaming (drafts, stream APIs) end the stream here.
* ``typing()`` shows that the agent is working (repeated while it works). The first call comes
  as soon as the message is accepted, and may still be under way when the reply's first ``post``
  is made; the reply's final text waits for it (up to 5 s).
* ``show_approval(request)`` shows the approval buttons for a pending request,
  and, called again once ``request.decision`` is set, shows the decision.
* ``send_file(path, caption)`` uploads a file from the workspace.
* ``notify(text)`` shows a notice that is not part of a reply (refusals, "queued",
  hints, refused files); the default is ``finalize(None, text)``. A platform may
  show notices privately where it can (e.g. an ephemeral answer to a slash command).
* ``address()`` says where the sink answers as plain JSON data, from which another
  instance of the same bot rebuilds it (:meth:`~core.adapter.ChatAdapter.sink_at`),
  so that with several instances the one running a conversation posts its replies
  itself. None (the default): the sink cannot be rebuilt elsewhere (an interaction's
  private answer) and the instance that received the message shows the reply.

Errors: raise :class:`~core.errors.RateLimited` (with ``retry_after``) when the
platform says slow down, :class:`~core.errors.MessageGone` when a message can no
longer be edited, :class:`~core.errors.SinkError` for anything else. The
streamer waits out rate limits, coalesces updates, and never drops the final text.
"""

from __future__ import annotations

import dataclasses
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .events import ApprovalRequest

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class SinkLimits:
    """What the platform allows; the streamer respects it."""

    max_len: int = 4000  # characters of Markdown per message
    min_edit_interval: float = 1.0  # seconds between two updates of one message
    typing_interval: float = 4.0  # seconds between typing indications (0: once)
    measure: Callable[[str], int] = field(default=len)  # how the platform counts length


class ReplySink(ABC):
    limits: SinkLimits = SinkLimits()
    #: notices reach only the person who wrote (an ephemeral answer): no need to ration refusals
    private_notices: bool = False

    @abstractmethod
    async def post(self, text: str) -> Any: ...

    @abstractmethod
    async def edit(self, handle: Any, text: str) -> None: ...

    @abstractmethod
    async def finalize(self, handle: Any | None, text: str) -> None: ...

    async def typing(self) -> None:
        """Show a typing / working indicator (optional)."""

    async def show_approval(self, request: ApprovalRequest) -> None:
        """Show buttons for a pending request, or its decision once made.

        The default writes a plain message; platforms with buttons override it.
        """
        if request.pending:
            await self.finalize(None, f"🔐 Approval needed — {request.describe()}")
        else:
            await self.finalize(None, f"🔐 {request.describe()} — {request.outcome()}")

    async def notify(self, text: str) -> None:
        """A notice outside the reply (refusal, queued, hint); the default sends it as a new message."""
        await self.finalize(None, text)

    async def send_file(self, path: Path, caption: str = "") -> None:
        """Upload a file; the default only names it."""
        await self.finalize(None, f"📎 {path.name}" + (f" — {caption}" if caption else ""))

    def address(self) -> dict[str, Any] | None:
        """Where this sink answers, as JSON data its adapter's ``sink_at`` rebuilds it from (None: nowhere else)."""
        return None


class TargetedSink(ReplySink):
    """A sink whose ``target`` (a dataclass of plain values: chat, thread, message answered) says where it answers."""

    target: Any

    def address(self) -> dict[str, Any] | None:
        return dataclasses.asdict(self.target)


def target_from(cls: type[T], address: Mapping[str, Any]) -> T | None:
    """``cls`` rebuilt from a :meth:`TargetedSink.address` (None, logged, when it does not fit)."""
    try:
        return cls(**address)
    except TypeError as exc:
        log.warning("a reply address that does not fit %s: %s", cls.__name__, exc)
        return None
