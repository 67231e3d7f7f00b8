"""Console adapter: a reply sink for a terminal, and for a pipe.

On a terminal (:class:`TerminalScreen`) replies are rendered as Markdown by rich while they stream:
each block (paragraph, list, code block) is printed for good as soon as it is complete, and
only the block still being written is redrawn in place (a ``rich.live.Live`` region at the
bottom, which shows its last lines when it is taller than the screen). Piped
(:class:`PlainScreen`), each reply is printed once, complete, as plain text.

Approvals are answered by typing ``o`` (once), ``s`` (this session) or ``d`` (deny); a screen
tracks the requests waiting for an answer (``pending``) and tells the bot when one is asked.

Everything here runs on the event loop and writes to the terminal synchronously, as rich
requires; the writes are small (a screenful at most).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment
from rich.text import Text

from core import ApprovalRequest, Decision, ReplySink, SinkLimits

ANSWERS = {
    "o": Decision.ALLOW_ONCE,
    "once": Decision.ALLOW_ONCE,
    "y": Decision.ALLOW_ONCE,
    "yes": Decision.ALLOW_ONCE,
    "s": Decision.ALLOW_SESSION,
    "session": Decision.ALLOW_SESSION,
    "d": Decision.DENY,
    "deny": Decision.DENY,
    "n": Decision.DENY,
    "no": Decision.DENY,
}
APPROVAL_QUESTION = "   Allow? [o]nce / for this [s]ession / [d]eny: "


class ConsoleScreen:
    """What the console sink draws on, and the approvals waiting for an answer typed there.

    A reply belongs to its sink (``owner``): ``working`` (before any text), ``update`` (the whole
    Markdown so far), ``finish`` (the final text). ``notice`` prints anything else.
    """

    interactive = False

    def __init__(self) -> None:
        self.pending: list[ApprovalRequest] = []
        self.approval_asked = asyncio.Event()
        #: called when a pending request is decided (by the user, an admin elsewhere, or its timeout)
        self.on_settled: Callable[[ApprovalRequest], None] | None = None

    def working(self, owner: object) -> None:
        """The reply of ``owner`` has started; no text yet."""

    def update(self, owner: object, text: str) -> None:
        """The reply of ``owner`` so far (streaming)."""

    def finish(self, owner: object, text: str) -> None:
        raise NotImplementedError

    def notice(self, owner: object, text: str) -> None:
        raise NotImplementedError

    def ask(self, request: ApprovalRequest) -> None:
        self.pending.append(request)
        self.approval_asked.set()

    def settled(self, request: ApprovalRequest) -> None:
        if request in self.pending:
            self.pending.remove(request)
        if self.on_settled is not None:
            self.on_settled(request)

    def file(self, path: Path, caption: str) -> None:
        raise NotImplementedError


class PlainScreen(ConsoleScreen):
    """A pipe: each reply printed once complete, plain text (stdout carries only the conversation)."""

    def __init__(self, out: TextIO) -> None:
        super().__init__()
        self.out = out

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def finish(self, owner: object, text: str) -> None:
        self.write(text + "\n")

    def notice(self, owner: object, text: str) -> None:
        self.write(text + "\n")

    def ask(self, request: ApprovalRequest) -> None:
        self.write(f"\n🔐 Claude wants to use {request.describe()}\n{APPROVAL_QUESTION}")
        super().ask(request)

    def settled(self, request: ApprovalRequest) -> None:
        self.write(f"🔐 {request.outcome()}\n")
        super().settled(request)

    def file(self, path: Path, caption: str) -> None:
        self.write(f"📎 {path}" + (f" — {caption}" if caption else "") + "\n")


class ChatMarkdown(Markdown):
    """Markdown as chat apps show it: a line break inside a paragraph stays a line break
    (tool lines, short lists written without markers)."""

    def __init__(self, markup: str, **kwargs: Any) -> None:
        super().__init__(markup, **kwargs)
        for token in self.parsed:
            for child in token.children or ():
                if child.type == "softbreak":
                    child.type = "hardbreak"


class _Lines:
    """A renderable's lines without blank ones around them (rich starts a lone list with one),
    and only the last that fit on the screen (leaving ``reserve`` lines) when ``tail`` is set."""

    def __init__(self, renderable: RenderableType, *, tail: bool = False, reserve: int = 1) -> None:
        self.renderable = renderable
        self.tail = tail
        self.reserve = reserve

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self.renderable, options.update(height=None), pad=False)
        start, end = 0, len(lines)
        while start < end and _blank(lines[start]):
            start += 1
        while end > start and _blank(lines[end - 1]):
            end -= 1
        if self.tail:
            start = max(start, end - max(1, options.size.height - self.reserve))
        for line in lines[start:end]:
            yield from line
            yield Segment.line()


def _blank(line: list[Segment]) -> bool:
    return all(not segment.text.strip() and not segment.style for segment in line)


_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


def settled_end(text: str, start: int = 0) -> int:
    """Where the complete Markdown blocks of ``text`` (from ``start``, a block boundary) end.

    A block is complete once a blank line (or the closing fence of a code block) is followed
    by a line that starts a new block: not indented, so not a list item's continuation.
    Blank lines inside code fences never end a block.
    """
    end = start
    fence: str | None = None
    boundary = False  # the lines so far end a block, if the next line starts a new one
    pos = start
    while pos < len(text):
        newline = text.find("\n", pos)
        complete = newline != -1
        stop = newline if complete else len(text)
        line = text[pos:stop]
        if fence is None and boundary and line and not line[0].isspace():
            end = pos
        if fence is not None:
            if complete and re.fullmatch(rf" {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*", line):
                fence = None
                boundary = True
        elif opened := _FENCE.match(line):
            fence = opened.group(1)
            boundary = False
        else:
            boundary = not line.strip()
        if not complete:
            break
        pos = newline + 1
    return end


@dataclass
class _Reply:
    owner: object
    text: str = ""
    shown: int = 0  # characters of text printed for good
    posted: bool = False
    printed: bool = False  # some block printed already (the next one gets a blank line before it)
    released: list[str] = field(default_factory=list)


class TerminalScreen(ConsoleScreen):
    """A terminal: live Markdown replies (rich), one at a time, at the bottom of the screen."""

    interactive = True

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self._reply: _Reply | None = None
        self._live: Live | None = None
        self._paused = False
        self._closed = False
        self._status = ""
        self._released: dict[object, str] = {}  # replies ended before their final text: what was printed

    # -- replies -------------------------------------------------------------
    def working(self, owner: object) -> None:
        self._own(owner)
        self._redraw()

    def update(self, owner: object, text: str) -> None:
        reply = self._own(owner)
        reply.posted = True
        self._set_text(reply, text)
        if not self._paused:
            self._print_upto(reply, settled_end(reply.text, reply.shown))
        self._redraw()

    def finish(self, owner: object, text: str) -> None:
        reply = self._reply
        if reply is not None and reply.owner is owner:
            self._set_text(reply, text)
            self._print_upto(reply, len(reply.text))
            self._end(finished=True)
            return
        printed = self._released.pop(owner, None)
        if printed is not None and text.startswith(printed):
            text = text[len(printed) :]
        if text.strip():
            self._print(_Lines(ChatMarkdown(text)))
            self.console.print()

    def notice(self, owner: object, text: str) -> None:
        reply = self._reply
        if reply is not None and reply.owner is owner and not reply.posted:
            # the owner's first output: its final text (a reply that came at once), or a notice before it
            self.finish(owner, text)
            return
        self._print(_Lines(ChatMarkdown(text)))
        self.console.print()

    def line(self, text: str, style: str = "dim") -> None:
        """A line of plain text (no Markdown) above the live reply."""
        self._print(Text(text, style=style))

    def set_status(self, text: str) -> None:
        """A line under the live reply (what is typed meanwhile); '' for none."""
        if text != self._status:
            self._status = text
            self._redraw()

    # -- approvals -----------------------------------------------------------
    def ask(self, request: ApprovalRequest) -> None:
        self.pause()  # the reply so far first, then the question (answered at a prompt)
        self._print(Text(f"🔐 Claude wants to use {request.describe()}", style="bold"))
        super().ask(request)

    def settled(self, request: ApprovalRequest) -> None:
        self._print(Text(f"🔐 {request.outcome()}", style="dim"))
        super().settled(request)

    def file(self, path: Path, caption: str) -> None:
        self._print(Text(f"📎 {path}" + (f" — {caption}" if caption else "")))

    # -- the live region ---------------------------------------------------------
    def pause(self) -> None:
        """Print what is shown live for good and give the bottom of the screen up (to a prompt)."""
        if self._reply is not None:
            self._print_upto(self._reply, len(self._reply.text))
        self._stop_live()
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        if self._reply is not None:
            self._print_upto(self._reply, settled_end(self._reply.text, self._reply.shown))
        self._redraw()

    def idle(self) -> None:
        """Nothing is running any more: whatever is still live is printed for good."""
        if self._reply is not None:
            self._print_upto(self._reply, len(self._reply.text))
            self._end()
        self._status = ""

    def close(self) -> None:
        """The console has quit: from now on, only print (replies still ending say how they ended)."""
        self.idle()
        self._closed = True

    # -- internals -----------------------------------------------------------
    def _own(self, owner: object) -> _Reply:
        reply = self._reply
        if reply is not None and reply.owner is owner:
            return reply
        if reply is not None:  # another reply takes over the live region: this one is printed as it is
            self._print_upto(reply, len(reply.text))
            self._end()
        self._reply = _Reply(owner)
        return self._reply

    def _set_text(self, reply: _Reply, text: str) -> None:
        if not text.startswith(reply.text[: reply.shown]):  # not an extension (should not happen): in full
            reply.shown = 0
        reply.text = text

    def _print_upto(self, reply: _Reply, end: int) -> None:
        block = reply.text[reply.shown : end]
        reply.shown = max(reply.shown, end)
        if not block.strip():
            return
        after_another = reply.printed
        reply.printed = True
        if self._live is not None:  # what stays live once this block is printed above it (drawn with it)
            self._live.update(self._view(), refresh=True)
        rendered = _Lines(ChatMarkdown(block))
        self._print(Group(Text(), rendered) if after_another else rendered)

    def _end(self, *, finished: bool = False) -> None:
        """The live reply is off the screen's bottom: finished, or printed as it was (its final text,
        when it comes, then adds only what is new)."""
        reply, self._reply = self._reply, None
        self._stop_live()
        if reply is None:
            return
        if not finished:
            self._released[reply.owner] = reply.text
        if reply.printed:
            self.console.print()

    def _print(self, renderable: RenderableType) -> None:
        self.console.print(renderable)  # above the live region, when there is one

    def _view(self) -> Group:
        """What the live region shows: the reply's unfinished block (or that it works), the status line."""
        parts: list[RenderableType] = []
        reply = self._reply
        if reply is not None:
            rest = reply.text[reply.shown :].strip("\n")
            if rest.strip():
                if reply.printed:
                    parts.append(Text())
                parts.append(_Lines(ChatMarkdown(rest), tail=True, reserve=2 if self._status else 1))
            else:
                parts.append(Text("… working", style="dim"))
        if self._status:
            parts.append(Text(self._status, style="dim"))
        return Group(*parts)

    def _redraw(self) -> None:
        if self._paused or self._closed:
            return
        view = self._view()
        if not view.renderables:
            self._stop_live()
            return
        if self._live is None:
            self._live = Live(
                console=self.console,
                auto_refresh=False,
                transient=True,
                redirect_stdout=True,
                redirect_stderr=True,
                vertical_overflow="visible",
            )
            self._live.start()
        self._live.update(view, refresh=True)

    def _stop_live(self) -> None:
        if self._live is not None:
            live, self._live = self._live, None
            live.update(Text(), refresh=False)  # stopping draws it once more before erasing it
            live.stop()


class ConsoleSink(ReplySink):
    """One message's reply on the console: every call goes to the screen."""

    def __init__(self, screen: ConsoleScreen) -> None:
        self.screen = screen
        interval = 0.1 if screen.interactive else 0.05
        self.limits = SinkLimits(max_len=1_000_000, min_edit_interval=interval, typing_interval=0)
        self._handles = 0

    async def post(self, text: str) -> Any:
        self._handles += 1
        self.screen.update(self, text)
        return self._handles

    async def edit(self, handle: Any, text: str) -> None:
        self.screen.update(self, text)

    async def finalize(self, handle: Any | None, text: str) -> None:
        if handle is None:
            self.screen.notice(self, text)
        else:
            self.screen.finish(self, text)

    async def typing(self) -> None:
        self.screen.working(self)

    async def show_approval(self, request: ApprovalRequest) -> None:
        if request.pending:
            self.screen.ask(request)
        else:
            self.screen.settled(request)

    async def send_file(self, path: Path, caption: str = "") -> None:
        self.screen.file(path, caption)
