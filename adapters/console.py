"""Console adapter: replies stream into a terminal (or print once when piped).

Approvals are answered by typing ``o`` (once), ``s`` (this session) or ``d``
(deny) on the next line; :class:`ConsoleIO` tracks the request waiting for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

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


@dataclass
class ConsoleIO:
    """The terminal shared by the console sink (output) and bot (input)."""

    out: TextIO
    interactive: bool
    pending: list[ApprovalRequest] = field(default_factory=list)
    approval_asked: asyncio.Event = field(default_factory=asyncio.Event)

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


class ConsoleSink(ReplySink):
    """Streams in place on a terminal; prints each final message once when piped."""

    def __init__(self, io: ConsoleIO) -> None:
        self.io = io
        self.limits = SinkLimits(max_len=1_000_000, min_edit_interval=0.05, typing_interval=0)
        self._shown: dict[int, str] = {}
        self._next = 0

    async def post(self, text: str) -> Any:
        handle = self._next
        self._next += 1
        self._shown[handle] = ""
        await self.edit(handle, text)
        return handle

    async def edit(self, handle: Any, text: str) -> None:
        if not self.io.interactive:
            return
        shown = self._shown.get(handle, "")
        if text.startswith(shown):
            self.io.write(text[len(shown) :])
        else:  # not an extension (should not happen): show it again in full
            self.io.write("\n" + text)
        self._shown[handle] = text

    async def finalize(self, handle: Any | None, text: str) -> None:
        if handle is None or not self.io.interactive:
            self.io.write(text + "\n")
            return
        await self.edit(handle, text)
        self.io.write("\n")
        self._shown.pop(handle, None)

    async def show_approval(self, request: ApprovalRequest) -> None:
        if request.pending:
            self.io.pending.append(request)
            self.io.approval_asked.set()
            self.io.write(
                f"\n🔐 Claude wants to use {request.describe()}\n   Allow? [o]nce / for this [s]ession / [d]eny: "
            )
        else:
            if request in self.io.pending:
                self.io.pending.remove(request)
            self.io.write(f"🔐 {request.outcome()}\n")

    async def send_file(self, path: Path, caption: str = "") -> None:
        self.io.write(f"📎 {path}" + (f" — {caption}" if caption else "") + "\n")
