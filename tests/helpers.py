"""Small test helpers: waiting for conditions without fixed sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


async def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


def claude_children(cwd: Path | None = None) -> list[int]:
    """PIDs of Claude Code CLI processes started by this test process (working in ``cwd``, if given)."""
    me = os.getpid()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and b"claude" in cmdline and (cwd is None or _cwd_of(proc) == cwd.resolve()):
            found.append(int(proc.name))
    return found


def _cwd_of(proc: Path) -> Path | None:
    try:
        return Path(os.readlink(proc / "cwd"))
    except OSError:
        return None


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "1m") -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (the tests run as root, as CI does), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Fill the filesystem of directory ``path`` (a small :func:`tmpfs`) up; returns the filler file."""
    filler = path / ".filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


@contextlib.contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """Make files read-only even for root (``chattr +i``), until the block ends."""
    names = [str(p) for p in paths if p.exists()]
    subprocess.run(["chattr", "+i", *names], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *names], check=False)


@dataclass
class BotProcess:
    """A real ``run_bot.py`` process and the lines of its log (stderr), as they arrive."""

    proc: asyncio.subprocess.Process
    log: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def logged(self, needle: str) -> str:
        """The first log line holding ``needle``, once it is written."""
        await eventually(
            lambda: any(needle in line for line in self.log) or self.proc.returncode is not None,
            what=f"{needle!r} in the log",
        )
        assert self.proc.returncode is None, "".join(self.log)
        return next(line for line in self.log if needle in line)

    async def stop(self) -> None:
        """SIGTERM (unless it already ended), then wait for it."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.proc.wait(), 30)
        if self.reader is not None:
            self.reader.cancel()


PREWARM_OFF = ("CCBRIDGE_AGENT__PREWARM", "0")  # tests' bots re-warm nothing unless a test asks


async def start_bot_process(config: Path, home: Path, *, stdin: bool = False) -> BotProcess:
    """``run_bot.py --config config`` with its own ``HOME`` (and none of this process's Anthropic,
    ccbridge or Claude variables but :data:`PREWARM_OFF`); ``stdin``: a pipe to type into (else nothing)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CCBRIDGE_", "CLAUDE_"))}
    inherited[PREWARM_OFF[0]] = PREWARM_OFF[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "run_bot.py"),
        "--config",
        str(config),
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        cwd=home,
        env={**inherited, "HOME": str(home)},
    )
    running = BotProcess(proc)

    async def read_log() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            running.log.append(line.decode(errors="replace"))

    running.reader = asyncio.create_task(read_log())
    return running


@contextlib.asynccontextmanager
async def bot_process(config: Path, home: Path) -> AsyncIterator[BotProcess]:
    """:func:`start_bot_process`, stopped with SIGTERM afterwards."""
    running = await start_bot_process(config, home)
    try:
        yield running
    finally:
        await running.stop()
