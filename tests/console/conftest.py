"""``run_bot.py`` on a real pseudo-terminal, as a person runs it.

The bot is a session leader with the pty as its controlling terminal (so Ctrl-C typed there
would send SIGINT to its whole process group, Claude Code included, if the terminal were not
in raw mode), stdin, stdout and stderr all on it, a fixed window size and ``TERM=xterm-256color``.
The harness answers cursor position requests as a terminal does. Waiting is always on output
(``Terminal.wait_for``), never on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import struct
import sys
import termios
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import PREWARM_OFF, eventually

REPO = Path(__file__).resolve().parents[2]
ROWS, COLUMNS = 30, 100
PROMPT = "you>"  # the space after it is drawn as a cursor move
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]|\r")
_CPR_REQUEST = b"\x1b[6n"

LEFT, UP = "\x1b[D", "\x1b[A"
CTRL_C, CTRL_D = "\x03", "\x04"


@dataclass
class Terminal:
    proc: asyncio.subprocess.Process
    master: int
    cwd: Path
    raw: bytearray = field(default_factory=bytearray)

    def text(self) -> str:
        """Everything written to the terminal so far, without control sequences."""
        return _ANSI.sub("", self.raw.decode("utf-8", errors="replace"))

    def shows(self, text: str) -> bool:
        return text in self.text()

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    async def wait_for(self, check: str | Callable[[], Any], what: str | None = None, timeout: float = 60) -> None:
        if isinstance(check, str):
            text = check
            await eventually(lambda: self.shows(text), timeout=timeout, what=what or repr(text))
        else:
            await eventually(check, timeout=timeout, what=what or "the terminal")

    def mark(self) -> int:
        """Where the output is now (for :meth:`prompt_after` of what comes next)."""
        return len(self.text())

    def prompt_after(self, text: str, since: int = 0) -> bool:
        """``text`` was shown (after the ``since`` mark), then the prompt again: the reply came before it."""
        screen = self.text()[since:]
        return text in screen and screen.rfind(PROMPT) > screen.rfind(text)

    async def exit_code(self, timeout: float = 60) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)

    def claude_processes(self) -> set[int]:
        """PIDs of the Claude Code CLI processes the bot has started."""
        found = set()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (proc / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.proc.pid and b"claude" in cmdline:
                found.add(int(proc.name))
        return found


def _controlling_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty (fd 0)."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


StartTerminal = Callable[..., Awaitable[Terminal]]


@pytest.fixture
async def start_terminal(tmp_path: Path, cli_env: dict[str, str]) -> AsyncIterator[StartTerminal]:
    """Start ``run_bot.py`` (no platform configured: the console bot) on a pty; ``config`` is merged in."""
    started: list[Terminal] = []
    loop = asyncio.get_running_loop()

    async def start(*args: str, **config: Any) -> Terminal:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({"agent": {"env": cli_env}, "workspace": {"base_dir": "ws"}, **config}))
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CCBRIDGE_", "CLAUDE_"))}
        env.update(HOME=str(tmp_path), TERM="xterm-256color", COLUMNS=str(COLUMNS), LINES=str(ROWS))
        env[PREWARM_OFF[0]] = PREWARM_OFF[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(REPO / "run_bot.py"),
            "--config",
            str(path),
            *args,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=tmp_path,
            env=env,
            preexec_fn=_controlling_terminal,
        )
        os.close(slave)
        term = Terminal(proc, master, tmp_path)
        started.append(term)

        def readable() -> None:
            try:
                data = os.read(master, 65536)
            except OSError:  # the other side closed
                loop.remove_reader(master)
                return
            term.raw.extend(data)
            for _ in range(data.count(_CPR_REQUEST)):
                os.write(master, f"\x1b[{ROWS};1R".encode())  # answer as a terminal would

        loop.add_reader(master, readable)
        await term.wait_for(PROMPT, what="the prompt")
        return term

    try:
        yield start
    finally:
        for term in started:
            loop.remove_reader(term.master)
            os.close(term.master)
            if term.proc.returncode is None:
                term.proc.kill()
                await term.proc.wait()
