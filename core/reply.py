"""The streaming reply engine: a turn's events -> operations on a :class:`ReplySink`.

* The first update goes out as soon as the first text arrives; later edits are
  coalesced to the sink's ``min_edit_interval``.
* A :class:`RateLimited` error pushes the next operation back by ``retry_after``;
  intermediate updates are simply coalesced, the final text is retried until it
  lands (a message that can no longer be edited gets the final text as a new one).
* Text longer than ``max_len`` is split into continuation messages without
  breaking code fences (:mod:`core.text_split`).
* Tool activity is shown compactly (``verbosity`` quiet / normal / verbose);
  an error ends the message with a clear line.
* Rate limits and refused operations are reported to ``metrics`` (a
  :class:`~core.metrics.PlatformReport`, labelled by the caller with the platform).

The rendered reply is append-only (text, tool lines, the closing line are only
ever added at the end), which is what native streaming APIs need.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from .errors import MessageGone, RateLimited, SinkError
from .events import (
    AgentEvent,
    AgentRetrying,
    ApprovalRequested,
    ApprovalResolved,
    FileOffered,
    MessagesMerged,
    TextDelta,
    ToolResult,
    ToolUse,
    TurnError,
    TurnResult,
    TurnWaiting,
)
from .metrics import UNREPORTED, PlatformReport
from .sink import ReplySink
from .text_split import cut

log = logging.getLogger(__name__)

Verbosity = Literal["quiet", "normal", "verbose"]
Terminal = TurnResult | TurnError

_FINAL_ATTEMPTS = 5  # non-rate-limit failures tolerated per final delivery
_TYPING_WAIT = 5.0  # seconds the final text waits at most for a typing call still under way
_FINAL_DEADLINE = 15 * 60.0  # seconds a final delivery keeps waiting out rate limits


@dataclass(frozen=True)
class TypingShown:
    """The typing indicator shown as the message came in (by the dispatcher): when, and the call itself."""

    at: float  # time.monotonic()
    call: asyncio.Task[None]


def _inline(text: str) -> str:
    return text.replace("`", "'")


_CANCELLED_FINAL = 3.0  # seconds a cancelled reply gets to show its final text


class ReplyStreamer:
    def __init__(
        self,
        sink: ReplySink,
        *,
        verbosity: Verbosity = "normal",
        show_cost: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        metrics: PlatformReport = UNREPORTED,
        typing_shown: TypingShown | None = None,
    ) -> None:
        self.sink = sink
        #: the indicator shown already: its first repetition waits for the sink's ``typing_interval``, and
        #: no final text goes out while its call is under way (the final text clears the indicator)
        self._typing_shown = typing_shown
        self.metrics = metrics
        self.limits = sink.limits
        self.verbosity = verbosity
        self.show_cost = show_cost
        self._clock = clock
        self._sleep = sleep
        self.doc = ""  # the whole rendered reply, append-only
        self._last_kind: Literal["none", "text", "tool"] = "none"
        self._msg_start = 0  # where the current message begins in doc
        self._prefix = ""  # reopened code fence carried into the current message
        self._handle: Any = None
        self._last_sent = ""
        self._next_allowed = 0.0
        self._edits_broken = False
        self._side_ops: deque[Callable[[], Awaitable[None]]] = deque()
        self._wake = asyncio.Event()
        self._finished = False
        self.terminal: Terminal | None = None

    # -- public --------------------------------------------------------------
    async def run(self, events: AsyncIterator[AgentEvent]) -> Terminal | None:
        """Consume a turn's events until its end; returns the terminal event."""
        flusher = asyncio.create_task(self._flush_loop())
        typing = asyncio.create_task(self._typing_loop())
        try:
            try:
                async for event in events:
                    self._apply(event)
                    self._wake.set()
                    if isinstance(event, (TurnResult, TurnError)):
                        break
            except Exception as exc:  # never leave a reply hanging
                log.exception("turn event stream failed")
                self._apply(TurnError(f"internal error: {exc!r}", kind="internal"))
            if self.terminal is None:
                self._apply(TurnError("the turn ended unexpectedly", kind="internal"))
            self._finished = True
            self._wake.set()
            await flusher
        except asyncio.CancelledError:
            await self._end_cancelled()
            raise
        finally:
            typing.cancel()
            if not flusher.done():
                flusher.cancel()
        return self.terminal

    async def _end_cancelled(self) -> None:
        """Cancelled mid-reply (a bot stopping after its drain): give what is shown its final form,
        saying it stopped, so it never stays "generating" or typing. Best effort, bounded."""
        if self._finished or self._handle is None or self._edits_broken:
            return
        self._finished = True
        self._append_block("⏹ Stopped.", "text", new_block=True)
        text = self._current_text()
        try:
            await asyncio.wait_for(self.sink.finalize(self._handle, text), _CANCELLED_FINAL)
        except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 (stopping: nothing more to do)
            log.debug("could not end a cancelled reply: %r", exc)

    # -- rendering -----------------------------------------------------------
    def _append_block(self, text: str, kind: Literal["text", "tool"], *, new_block: bool = False) -> None:
        if self.doc:
            if kind == "tool" and self._last_kind == "tool":
                sep = "" if self.doc.endswith("\n") else "\n"
            elif kind != self._last_kind or new_block:
                sep = "\n\n"
                trailing = len(self.doc) - len(self.doc.rstrip("\n"))
                sep = sep[min(trailing, 2) :]
            else:
                sep = ""
            self.doc += sep
        self.doc += text
        self._last_kind = kind

    def _apply(self, event: AgentEvent) -> None:
        if isinstance(event, TextDelta):
            if event.text:
                self._append_block(event.text, "text", new_block=event.new_block)
        elif isinstance(event, ToolUse):
            if self.verbosity != "quiet":
                line = f"🔧 {event.name}" + (f" `{_inline(event.summary)}`" if event.summary else "")
                self._append_block(line + "\n", "tool")
        elif isinstance(event, ToolResult):
            if self.verbosity == "verbose" or (self.verbosity == "normal" and event.is_error):
                mark = "✗" if event.is_error else "✓"
                summary = f" {_inline(event.summary)}" if event.summary else ""
                self._append_block(f"   ↳ {mark}{summary}\n", "tool")
        elif isinstance(event, AgentRetrying):
            self._append_block(f"⏳ {event.describe()}\n", "tool")  # shown at every verbosity
        elif isinstance(event, MessagesMerged):
            if event.restored:
                self._append_block(
                    f"ℹ️ Also answering {event.restored} message(s) that waited through a restart.\n", "tool"
                )
        elif isinstance(event, TurnWaiting):
            if event.kind == "process":
                self._append_block(f"⏳ Waiting: {event.reason}.\n", "tool")
        elif isinstance(event, (ApprovalRequested, ApprovalResolved)):
            request = event.request
            self._side_ops.append(lambda: self.sink.show_approval(request))
        elif isinstance(event, FileOffered):
            path, caption = event.path, event.caption
            self._side_ops.append(lambda: self.sink.send_file(path, caption))
        elif isinstance(event, TurnResult):
            self.terminal = event
            if event.interrupted:
                self._append_block("⏹ Stopped.", "text", new_block=True)
            elif event.is_error:
                self._append_block(f"⚠️ Error: {event.error or 'the agent reported an error'}", "text", new_block=True)
            elif not self.doc.strip():
                self._append_block("(no reply text)", "text")
            if self.show_cost and event.cost_usd is not None:
                secs = (event.duration_ms or 0) / 1000
                self._append_block(f"_${event.cost_usd:.4f} · {secs:.1f}s_", "text", new_block=True)
        elif isinstance(event, TurnError):
            self.terminal = event
            # a spent budget is no failure: its message says it all
            line = event.message if event.kind == "budget" else f"⚠️ Error: {event.message}"
            self._append_block(line, "text", new_block=True)

    # -- delivery ------------------------------------------------------------
    def _current_text(self) -> str:
        return self._prefix + self.doc[self._msg_start :]

    def _pending_text(self) -> bool:
        """True when a live update is due (never once live updates are broken)."""
        if self._edits_broken:
            return False
        text = self._current_text()
        return bool(text.strip()) and text != self._last_sent

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                if self._side_ops:
                    await self._update()
                    op = self._side_ops.popleft()
                    await self._deliver(op, what="side operation")
                    continue
                if self._finished:
                    await self._final()
                    return
                if not self._pending_text():
                    break
                wait = self._next_allowed - self._clock()
                if wait > 0:
                    await self._sleep(wait)
                    continue
                await self._update()

    async def _split_overflow(self) -> None:
        """Finalize full-size parts while the current message is too long."""
        while True:
            c = cut(self._current_text(), self.limits.max_len, self.limits.measure)
            if c is None:
                return
            await self._deliver_final(c.head)
            self._msg_start += c.consumed - len(self._prefix)
            self._prefix = c.reopen
            self._handle = None
            self._last_sent = ""

    async def _update(self) -> None:
        """Bring the current message up to date (one post/edit), honouring rate limits."""
        await self._split_overflow()
        if not self._pending_text():
            return
        wait = self._next_allowed - self._clock()
        if wait > 0:
            await self._sleep(wait)
            # text that arrived during the wait may have pushed the message past the limit
            await self._split_overflow()
            if not self._pending_text():
                return
        text = self._current_text()
        try:
            if self._handle is None:
                self._handle = await self.sink.post(text)
            else:
                await self.sink.edit(self._handle, text)
            self._last_sent = text
            self._next_allowed = self._clock() + self.limits.min_edit_interval
        except RateLimited as exc:
            self.metrics.rate_limited(exc.retry_after)
            self._next_allowed = self._clock() + exc.retry_after
        except MessageGone:
            log.info("reply message is gone; continuing in a new one")
            self._handle = None
            self._last_sent = ""
        except SinkError as exc:
            self.metrics.failed()
            log.warning("live update failed (%s); the final text will follow as a new message", exc)
            self._edits_broken = True
        except Exception:
            # A sink bug must not cost the user the answer: stop live updates, keep the final.
            log.exception("live update failed unexpectedly; the final text will follow as a new message")
            self._edits_broken = True

    async def _final(self) -> None:
        await self._split_overflow()
        text = self._current_text()
        if not text.strip():
            if self._handle is not None and self._last_sent:
                await self._deliver_final(self._last_sent)
            return
        await self._deliver_final(text)

    async def _deliver_final(self, text: str) -> None:
        """Give the current message its final text; never gives up on rate limits."""
        if self._typing_shown is not None and not self._typing_shown.call.done():
            await asyncio.wait([self._typing_shown.call], timeout=_TYPING_WAIT)
        handle = None if self._edits_broken else self._handle

        async def attempt() -> None:
            nonlocal handle
            try:
                await self.sink.finalize(handle, text)
            except MessageGone:
                if handle is None:
                    raise
                handle = None
                await self.sink.finalize(None, text)

        delivered = await self._deliver(attempt, what="final text", fallback=lambda: self.sink.finalize(None, text))
        if delivered:
            self._last_sent = text
        self._next_allowed = self._clock() + self.limits.min_edit_interval

    async def _deliver(
        self,
        op: Callable[[], Awaitable[Any]],
        *,
        what: str,
        fallback: Callable[[], Awaitable[Any]] | None = None,
    ) -> bool:
        deadline = self._clock() + _FINAL_DEADLINE
        failures = 0
        current = op
        while True:
            wait = self._next_allowed - self._clock()
            if wait > 0:
                await self._sleep(wait)
            try:
                await current()
                self._next_allowed = self._clock() + self.limits.min_edit_interval
                return True
            except RateLimited as exc:
                self.metrics.rate_limited(exc.retry_after)
                self._next_allowed = self._clock() + exc.retry_after
                if self._clock() + exc.retry_after > deadline:
                    log.error("gave up delivering the %s: rate limited for too long", what)
                    return False
            except SinkError as exc:
                self.metrics.failed()
                failures += 1
                log.warning("delivering the %s failed (%s), attempt %d", what, exc, failures)
                if failures == _FINAL_ATTEMPTS // 2 and fallback is not None and current is not fallback:
                    current = fallback
                elif failures >= _FINAL_ATTEMPTS:
                    log.error("gave up delivering the %s: %s", what, exc)
                    return False
                self._next_allowed = self._clock() + min(2.0**failures, 30.0)
            except Exception:
                log.exception("delivering the %s failed", what)
                return False

    async def _typing_loop(self) -> None:
        interval = self.limits.typing_interval
        if self._typing_shown is not None:
            if interval <= 0:
                return  # shown once, as the message came in
            await asyncio.sleep(max(0.0, self._typing_shown.at + interval - time.monotonic()))
        while not self._finished:
            try:
                await self.sink.typing()
            except Exception as exc:
                log.debug("typing indicator failed: %r", exc)
            if interval <= 0:
                return
            await asyncio.sleep(interval)


async def send_notice(sink: ReplySink, text: str, *, attempts: int = 5, final: bool = False) -> bool:
    """Send a one-off message (:meth:`ReplySink.notify`), waiting out rate limits; failures are logged, not raised.

    ``final``: the message's last word (nothing runs for it): sent as a final reply (``finalize``), so what
    the sign of life left showing (a working reaction, a status) ends with it.
    """
    for _ in range(attempts):
        try:
            await (sink.finalize(None, text) if final else sink.notify(text))
            return True
        except RateLimited as exc:
            await asyncio.sleep(exc.retry_after)
        except Exception as exc:
            log.warning("could not send a notice: %r", exc)
            return False
    log.warning("could not send a notice: still rate limited after %d attempts", attempts)
    return False
