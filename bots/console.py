"""The console bot: chat with Claude Code in a terminal.

Interactive (stdin and stdout are a terminal): a prompt with line editing and history
(prompt_toolkit); replies rendered as Markdown while they stream (rich), then the prompt again.
While a reply runs the terminal stays in raw mode, so Ctrl-C is a key rather than a signal
(the Claude Code processes, in the same process group, never see it): it stops that reply
(the core's ``/stop``: the session is kept) and a second Ctrl-C quits, as do Ctrl-C and Ctrl-D
at the prompt (Ctrl-D during a reply quits once it is answered). What is typed during a reply is kept for the next prompt; Enter sends it (a
command such as ``/status`` runs at once, a message is queued).

Piped (stdin or stdout is not a terminal, or ``TERM=dumb``): one message per line until EOF,
each reply printed once complete, in order, as plain text, so it can be scripted.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input, create_input
from prompt_toolkit.key_binding import KeyPress
from prompt_toolkit.keys import Keys
from prompt_toolkit.output import create_output
from prompt_toolkit.patch_stdout import patch_stdout
from rich.console import Console
from rich.text import Text

from adapters.console import (
    ANSWERS,
    APPROVAL_QUESTION,
    ConsoleScreen,
    ConsoleSink,
    PlainScreen,
    TerminalScreen,
)
from core import (
    Agent,
    ApprovalError,
    ApprovalRequest,
    ConversationKey,
    Decision,
    Dispatcher,
    IncomingMessage,
    Sections,
    UserRef,
)
from core.adapter import drain_tasks

from .base import Bot, BotSettings

log = logging.getLogger(__name__)

BANNER = "Claude Code console — /help for commands. Ctrl-C stops a reply; Ctrl-D (or Ctrl-C here) quits."


class ConsoleSettings(BotSettings):
    user: str | None = None  # the local user's name (default: the OS user)
    prompt: str = "you> "
    history_file: str | None = "~/.ccbridge_history"  # lines typed at the prompt (null: not kept)


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
        self.settings: ConsoleSettings = settings
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.interactive = _is_terminal(self.stdin) and _is_terminal(self.stdout) and os.environ.get("TERM") != "dumb"
        self.user = UserRef(settings.user or _os_user())
        self.key = ConversationKey(self.platform, self.user.id)
        self.dispatcher = Dispatcher(agent)
        self.screen: ConsoleScreen
        if self.interactive:
            self.screen = TerminalScreen(Console(file=None if self.stdout is sys.stdout else self.stdout))
        else:
            self.screen = PlainScreen(self.stdout)

    @property
    def uses_terminal(self) -> bool:
        """True when the bot takes the terminal over: log lines must stay off it, and Ctrl-C is its own."""
        return self.interactive

    @classmethod
    def adjust_sections(cls, sections: Sections) -> Sections:
        # Only the terminal's owner can type here.
        access = sections.access.model_copy(update={"allow_all": True})
        return sections.model_copy(update={"access": access})

    def describe(self) -> str:
        return f"{self.name} (console, user {self.user.id})"

    def submit(self, text: str) -> asyncio.Task[None]:
        msg = IncomingMessage(key=self.key, user=self.user, text=text, reply=ConsoleSink(self.screen))
        return self.dispatcher.submit(msg)

    async def resolve(self, request: ApprovalRequest, decision: Decision) -> None:
        try:
            await self.dispatcher.resolve_approval(request.id, decision, self.user)
        except ApprovalError as exc:
            self.screen.notice(None, f"   {exc}")
        if request in self.screen.pending:
            self.screen.pending.remove(request)

    async def run(self) -> None:
        if self.interactive:
            await TerminalChat(self).run()
        else:
            await self._run_piped()

    # -- piped -------------------------------------------------------------------
    async def _run_piped(self) -> None:
        lines = _LineReader(self.stdin, asyncio.get_running_loop())
        tasks: list[asyncio.Task[None]] = []
        try:
            while (line := await lines.next()) is not None:
                if self.screen.pending:
                    await self._answer_line(line)
                elif line.strip():
                    tasks.append(self.submit(line))
                else:
                    continue
                if tasks and not tasks[-1].done():
                    await self._wait_reply_or_question(tasks[-1])
            # EOF: nobody is left to answer questions.
            await self._deny_pending()
            while any(not t.done() for t in tasks):
                await self._wait_reply_or_question(asyncio.gather(*tasks, return_exceptions=True))
                await self._deny_pending()
        finally:  # stopping (SIGTERM): the reply running is let finish; run_bot stops it after its drain
            await drain_tasks(self.drain_timeout, tasks, self.dispatcher.in_flight)

    async def _wait_reply_or_question(self, task: asyncio.Future[object]) -> None:
        """Wait until the reply is complete, or until it asks for an approval."""
        self.screen.approval_asked.clear()
        asked = asyncio.create_task(self.screen.approval_asked.wait())
        try:
            await asyncio.wait({task, asked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            asked.cancel()

    async def _answer_line(self, line: str) -> None:
        decision = ANSWERS.get(line.strip().lower())
        if decision is None:
            self.screen.notice(None, "   Please answer o (once), s (session) or d (deny).")
            return
        await self.resolve(self.screen.pending[0], decision)

    async def _deny_pending(self) -> None:
        for request in list(self.screen.pending):
            await self.resolve(request, Decision.DENY)


_INTERRUPTED = object()  # Ctrl-C at a prompt


class TerminalChat:
    """The interactive console: prompt_toolkit reads, the terminal screen shows, Ctrl-C stops.

    prompt_toolkit and rich write to the terminal synchronously on the event loop (they must);
    the history file is read and appended to synchronously by prompt_toolkit, a line at a time.
    """

    def __init__(self, bot: ConsoleBot) -> None:
        assert isinstance(bot.screen, TerminalScreen)
        self.bot = bot
        self.screen: TerminalScreen = bot.screen
        self.input: Input = create_input(bot.stdin)
        output = create_output(bot.stdout)
        self.session: PromptSession[str] = PromptSession(
            history=_history(bot.settings.history_file), input=self.input, output=output
        )
        self.asker: PromptSession[str] = PromptSession(input=self.input, output=output)  # approvals: no history
        self.tasks: set[asyncio.Task[None]] = set()
        self.typeahead = ""
        self.following = False  # a reply is running (keys go to it)
        self.stopping = False  # Ctrl-C was pressed during the current reply
        self.leaving = False  # Ctrl-D was pressed during a reply: quit once it is answered
        self.quit = asyncio.Event()
        self.wake = asyncio.Event()
        self._asking: ApprovalRequest | None = None
        self._stops: set[asyncio.Task[bool]] = set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, self.interrupt)  # `kill -INT`: the same as the key
        self.screen.on_settled = self._settled
        try:
            with self.input.raw_mode():
                self.screen.console.print(Text(BANNER, style="dim"))
                while not self.quit.is_set():
                    line = await self._prompt(self.session, self.bot.settings.prompt, default=self.typeahead)
                    self.typeahead = ""
                    if not isinstance(line, str):
                        break
                    if line.strip():
                        self._submit(line)
                        await self._follow()
                    if self.leaving:
                        break
        except asyncio.CancelledError:  # SIGTERM: the reply running is let finish (run_bot stops it after its drain)
            await drain_tasks(self.bot.drain_timeout, self.tasks, self.bot.dispatcher.in_flight)
            raise
        finally:
            self.screen.close()

    def interrupt(self) -> None:
        """Ctrl-C: stop the running reply (the session is kept); a second one, or one at the prompt, quits."""
        if self.following and self.tasks and not self.stopping:
            self.stopping = True
            self.screen.line("⏹ Stopping… (Ctrl-C again to quit)")
            stop = asyncio.ensure_future(self.bot.dispatcher.conversations.stop(self.bot.key))
            self._stops.add(stop)
            stop.add_done_callback(self._stops.discard)
            return
        self.quit.set()
        self.wake.set()
        for session in (self.session, self.asker):
            _exit_prompt(session, EOFError())

    # -- a reply -----------------------------------------------------------------
    def _submit(self, text: str) -> None:
        task = self.bot.submit(text)
        self.tasks.add(task)
        task.add_done_callback(self._answered)

    def _answered(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.stopping = False  # the next reply gets its own Ctrl-C
        self.wake.set()

    async def _follow(self) -> None:
        """Until every message sent is answered: keys go to the reply, approvals are asked for."""
        self.following = True
        try:
            while self.tasks and not self.quit.is_set():
                if self.screen.pending:
                    await self._answer(self.screen.pending[0])
                    continue
                self.wake.clear()
                self.screen.approval_asked.clear()
                with self.input.attach(self._keys_ready):
                    await _first(self.wake, self.screen.approval_asked, self.quit)
        finally:
            self.following = False
            self.screen.idle()

    def _keys_ready(self) -> None:
        for press in self.input.read_keys():
            self._key(press)
        status = f"{self.bot.settings.prompt}{self.typeahead}" if self.typeahead else ""
        self.screen.set_status(status)

    def _key(self, press: KeyPress) -> None:
        if press.key == Keys.ControlC:
            self.interrupt()
        elif press.key in (Keys.ControlM, Keys.ControlJ):
            line, self.typeahead = self.typeahead, ""
            if line.strip():
                self.screen.line(f"{self.bot.settings.prompt}{line}", style="")
                self._submit(line)
        elif press.key == Keys.ControlD and not self.typeahead and not self.leaving:
            self.leaving = True  # as at an empty prompt: EOF, but the reply running is let finish
            self.screen.line("⏏ Quitting once this reply is done (Ctrl-C stops it now).")
        elif press.key in (Keys.ControlH, Keys.Backspace):
            self.typeahead = self.typeahead[:-1]
        elif press.key == Keys.ControlU:
            self.typeahead = ""
        elif not isinstance(press.key, Keys) and press.data.isprintable():
            self.typeahead += press.data

    # -- approvals -----------------------------------------------------------------
    async def _answer(self, request: ApprovalRequest) -> None:
        self.screen.pause()
        self._asking = request
        try:
            while request in self.screen.pending and not self.quit.is_set():
                answer = await self._prompt(self.asker, APPROVAL_QUESTION)
                if request not in self.screen.pending:  # decided meanwhile (timeout, an admin)
                    break
                if answer is _INTERRUPTED:
                    await self.bot.resolve(request, Decision.DENY)
                    self.interrupt()
                elif answer is None:  # Ctrl-D
                    await self.bot.resolve(request, Decision.DENY)
                elif isinstance(answer, str) and (decision := ANSWERS.get(answer.strip().lower())) is not None:
                    await self.bot.resolve(request, decision)
                else:
                    self.screen.line("   Please answer o (once), s (session) or d (deny).", style="")
        finally:
            self._asking = None
            self.screen.resume()

    def _settled(self, request: ApprovalRequest) -> None:
        if request is self._asking:
            _exit_prompt(self.asker, None)

    async def _prompt(self, session: PromptSession[str], message: str, default: str = "") -> str | object | None:
        """A line typed at ``message``; None for Ctrl-D (or the prompt closed), ``_INTERRUPTED`` for Ctrl-C."""
        try:
            with patch_stdout(raw=True):  # output meanwhile (logs, notices) goes above the prompt
                return await session.prompt_async(
                    message, default=default, handle_sigint=False, set_exception_handler=False
                )
        except KeyboardInterrupt:
            return _INTERRUPTED
        except EOFError:
            return None


def _exit_prompt(session: PromptSession[str], exception: BaseException | None) -> None:
    app = session.app
    if app.is_running and app.future is not None and not app.future.done():
        if exception is None:
            app.exit(result="")
        else:
            app.exit(exception=exception)


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _history(path: str | None) -> History:
    """The prompt's history: ``path`` if it can be written, else kept in memory only."""
    if not path:
        return InMemoryHistory()
    file = Path(path).expanduser()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.touch()
    except OSError as exc:
        log.warning("console history not kept in %s: %s", file, exc.strerror or exc)
        return InMemoryHistory()
    return FileHistory(str(file))


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


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real file
        return False


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return "local"


BOT = ConsoleBot
