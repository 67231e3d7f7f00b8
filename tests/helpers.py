"""Small test helpers: waiting for conditions without fixed sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any


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
