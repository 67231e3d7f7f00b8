"""The console bot: chat with Claude Code in a terminal.

Interactive: replies stream in place; you may type ``/stop`` while it works.
Piped (stdin is not a terminal): one message per line until EOF, each reply
printed once it is complete, in order, so it can be scripted.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import sys
import threading
from typing import TextIO

from adapters.console import ANSWERS, ConsoleIO, ConsoleSink
from core import Agent, ApprovalError, ConversationKey, Dispatcher, IncomingMessage, Sections, UserRef

from .base import Bot, BotSettings

log = logging.getLogger(__name__)


class ConsoleSettings(BotSettings):
    user: str | None = None  # the local user's name (default: the OS user)
    prompt: str = "you> "


class ConsoleBot(Bot):
    kind = "console"
    platform = "console"
    Settings = ConsoleSettings
    chat_platform = False

    def __init__(
        self,
        name: str,
        agent: Agent,
        settings: ConsoleSettings,
        *,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
    ) -> None:
        super().__init__(name, agent, settings)
        self.stdin = stdin or sys.stdin
        self.io = ConsoleIO(stdout or sys.stdout, interactive=self.stdin.isatty())
        self.user = UserRef(settings.user or _os_user())
        self.dispatcher = Dispatcher(agent)
        self._lines: _LineReader | None = None

    @classmethod
    def adjust_sections(cls, sections: Sections) -> Sections:
        # Only the terminal's owner can type here.
        access = sections.access.model_copy(update={"allow_all": True})
        return sections.model_copy(update={"access": access})

    def describe(self) -> str:
        return f"{self.name} (console, user {self.user.id})"

    async def _readline(self) -> str | None:
        if self._lines is None:
            self._lines = _LineReader(self.stdin, asyncio.get_running_loop())
        return await self._lines.next()

    async def run(self) -> None:
        key = ConversationKey(self.platform, self.user.id)
        if self.io.interactive:
            self.io.write("Claude Code console — /help for commands, Ctrl-D to quit.\n")
        tasks: list[asyncio.Task[None]] = []
        try:
            while True:
                if self.io.interactive and not self.io.pending:
                    self.io.write(self.settings.prompt)
                line = await self._readline()
                if line is None:
                    break
                if self.io.pending:
                    await self._answer(line)
                elif line.strip():
                    msg = IncomingMessage(key=key, user=self.user, text=line, reply=ConsoleSink(self.io))
                    tasks.append(self.dispatcher.submit(msg))
                else:
                    continue
                if not self.io.interactive and tasks and not tasks[-1].done():
                    await self._wait_reply_or_question(tasks[-1])
            # EOF: nobody is left to answer questions.
            for request in list(self.io.pending):
                await self._resolve(request.id, "deny")
            while any(not t.done() for t in tasks):
                await self._wait_reply_or_question(asyncio.gather(*tasks, return_exceptions=True))
                for request in list(self.io.pending):
                    await self._resolve(request.id, "deny")
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()

    async def _wait_reply_or_question(self, task: asyncio.Future[object]) -> None:
        """Wait until the reply is complete, or until it asks for an approval."""
        self.io.approval_asked.clear()
        asked = asyncio.create_task(self.io.approval_asked.wait())
        try:
            await asyncio.wait({task, asked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            asked.cancel()

    async def _answer(self, line: str) -> None:
        request = self.io.pending[0]
        decision = ANSWERS.get(line.strip().lower())
        if decision is None:
            self.io.write("   Please answer o (once), s (session) or d (deny): ")
            return
        await self._resolve(request.id, decision.value)

    async def _resolve(self, request_id: str, decision: str) -> None:
        try:
            await self.dispatcher.resolve_approval(request_id, decision, self.user)
        except ApprovalError as exc:
            self.io.write(f"   {exc}\n")
        self.io.pending[:] = [r for r in self.io.pending if r.id != request_id]


class _LineReader:
    """Lines of a blocking text stream, read by a daemon thread.

    A read blocked in ``asyncio.to_thread`` cannot be cancelled and would keep
    ``asyncio.run`` from returning after Ctrl-C until Enter is pressed; a daemon
    thread does not hold the process up.
    """

    def __init__(self, stream: TextIO, loop: asyncio.AbstractEventLoop) -> None:
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = loop
        self._stream = stream
        threading.Thread(target=self._pump, name="console-stdin", daemon=True).start()

    def _pump(self) -> None:
        while True:
            try:
                line = self._stream.readline()
            except (OSError, ValueError):  # closed under us
                line = ""
            try:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, line.rstrip("\r\n") if line else None)
            except RuntimeError:  # the loop is closed: the bot has stopped
                return
            if not line:
                return

    async def next(self) -> str | None:
        return await self._queue.get()


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return "local"


BOT = ConsoleBot
