"""Claude Code processes: how many may live, who gets the next one, and that none outlives the bot.

* :class:`ProcessSlots` caps the processes alive at once (``agent.pool_size``: the
  warm pool's clients and the ones starting; a process being closed has given its
  slot back) and those starting at once (``agent.max_spawns``). A turn that needs
  a new process and finds the cap reached first asks the pool to close an idle
  one; otherwise it waits. Waiters are served round-robin by
  user, so one user opening 24 threads cannot starve everybody else, and a
  burst of new conversations queues instead of thrashing the machine.
* :class:`Launcher` starts every CLI through a tiny shell launcher that records
  its pid and, on Linux, has the kernel stop it when the bot dies
  (``setpriv --pdeathsig TERM``: the CLI shuts down cleanly and takes its own
  helpers, e.g. the sandbox's network proxies, with it). Anything a killed bot
  still left behind (a CLI that ignored the signal, its children) is killed when
  the next one starts: every such process carries the launcher's
  ``CCBRIDGE_PIDFILE`` in its environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path

log = logging.getLogger(__name__)


class ProcessSlots:
    """A counting semaphore over live processes with per-owner round-robin hand-over.

    A slot is handed out only when a process may also start at once (fewer than ``spawns``
    starting): a turn that would only wait for a start waits in the fair line instead, so it
    neither holds a slot an idle warm process could keep nor jumps the line of other users.
    With ``load`` (an owner -> its turns in progress), the next slot goes to the waiting owner
    with the fewest, round-robin among equals: a user with turns running already lets a user
    with none start first.
    """

    def __init__(self, limit: int, spawns: int, load: Callable[[str], int] | None = None) -> None:
        self.limit = limit
        self.spawns = spawns
        self.load = load
        self.alive = 0  # processes starting, running or idle (one being closed has given its slot back)
        self.starting = 0  # slots handed out whose process has not finished starting
        self._queues: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    @property
    def short(self) -> bool:
        """Turns wait in line and every process allowed is alive: one must end for them."""
        return bool(self._queues) and self.alive >= self.limit

    def _free(self) -> bool:
        return self.alive < self.limit and self.starting < self.spawns

    @contextlib.asynccontextmanager
    async def spawning(self) -> AsyncIterator[None]:
        """Hold while the process of a slot just taken starts (``async with slots.spawning():``)."""
        try:
            yield
        finally:
            self._started()

    def _started(self) -> None:
        self.starting = max(0, self.starting - 1)
        self._hand_over()

    def try_acquire(self, *, spare: int = 0) -> bool:
        """Take a slot only if one is free now and nobody waits for one (work that may give way), leaving
        ``spare`` start lanes free for the turns that may come meanwhile."""
        if self._free() and not self._queues and self.starting + spare < self.spawns:
            self.alive += 1
            self.starting += 1
            return True
        return False

    async def acquire(
        self, owner: str, make_room: Callable[[], bool], on_queue: Callable[[], None] | None = None
    ) -> None:
        """Take a slot for a new process of ``owner``; ``make_room()`` closes an idle process if it can.

        ``on_queue`` is called when the caller has to wait in line for a process to end (not merely
        for others to finish starting). Hold :meth:`spawning` while the
        process starts; a slot given up before its process started goes back with :meth:`abandon`.
        """
        tried = False
        if not self._queues and self.alive >= self.limit:
            tried = True  # every slot is taken and nobody waits: an idle process gives its slot back at once
            make_room()
        if self._free() and not self._queues:
            self.alive += 1
            self.starting += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(owner, deque()).append(future)
        if self.alive >= self.limit:
            if not tried:
                make_room()  # its slot goes to the next in line (this caller, or one queued before)
        else:  # room, but others were queued first (or a start is under way): serve them in order
            self._hand_over()
        if on_queue is not None and not future.done() and self.alive + self.waiting > self.limit:
            on_queue()  # the line needs more processes than may live: some wait for one to end
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # handed a slot while being cancelled
                self.abandon()
            else:
                self._drop(owner, future)
            raise

    def abandon(self) -> None:
        """A slot handed out is given back before its process started."""
        self.starting = max(0, self.starting - 1)
        self.release()

    def release(self) -> None:
        """A process is gone: hand its slot to the next waiter, or free it."""
        if self.starting < self.spawns and self._hand_over_one():
            self.starting += 1
        else:
            self.alive = max(0, self.alive - 1)
            self._hand_over()

    def _hand_over(self) -> None:
        while self._free() and self._queues:
            self.alive += 1
            self.starting += 1
            if not self._hand_over_one():
                self.alive -= 1
                self.starting -= 1
                return

    def _hand_over_one(self) -> bool:
        while self._queues:
            owner = min(self._queues, key=self.load) if self.load is not None else next(iter(self._queues))
            queue = self._queues.pop(owner)
            while queue:
                future = queue.popleft()
                if not future.done():
                    if queue:
                        self._queues[owner] = queue  # the owner goes to the back of the line
                    future.set_result(None)
                    return True
        return False

    def _drop(self, owner: str, future: asyncio.Future[None]) -> None:
        queue = self._queues.get(owner)
        if queue is not None:
            try:
                queue.remove(future)
            except ValueError:
                pass
            if not queue:
                self._queues.pop(owner, None)


_LAUNCHER = """#!/bin/sh
# ccbridge's Claude Code launcher: records the CLI's pid, and (Linux) has the kernel kill it when the bot dies.
[ -n "$CCBRIDGE_PIDFILE" ] && echo "$$ $PPID" > "$CCBRIDGE_PIDFILE"
{exec_line}
"""


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def write_script(path: Path, text: str, mode: int) -> None:
    """Put an executable script in place at once (a CLI starting meanwhile sees the old or the new one), unless
    it already says ``text`` (blocking)."""
    if path.is_file() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def bundled_cli() -> Path | None:
    """The Claude Code CLI shipped in the claude-agent-sdk wheel."""
    import claude_agent_sdk

    path = Path(claude_agent_sdk.__file__).parent / "_bundled" / ("claude.exe" if os.name == "nt" else "claude")
    return path if path.is_file() else None


class Launcher:
    """Starts CLIs through a launcher script; keeps their pidfiles; cleans up after a crashed bot."""

    def __init__(self, state_dir: Path, cli_path: str | None) -> None:
        self.state_dir = state_dir
        self.pid_dir = state_dir / ".pids"
        self.script = state_dir / ".launch-claude.sh"
        self.cli = cli_path
        self.enabled = os.name == "posix"

    def prepare(self) -> str | None:
        """Write the launcher (blocking); returns the ``cli_path`` to give the SDK (None: the SDK's own)."""
        if not self.enabled:
            return self.cli
        real = self.cli or (str(bundled_cli()) if bundled_cli() else shutil.which("claude"))
        if real is None:
            return self.cli  # the SDK reports a missing CLI in its own words
        setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
        nice = shutil.which("nice")
        quoted = _sh_quote(real)
        # CCBRIDGE_NICE (a number, from spawn_env): the CLI and its helpers start at that lower CPU priority
        prefix = f"${{CCBRIDGE_NICE:+{_sh_quote(nice)} -n $CCBRIDGE_NICE}} " if nice else ""
        exec_line = (
            f'exec {prefix}{setpriv} --pdeathsig TERM -- {quoted} "$@"' if setpriv else f'exec {prefix}{quoted} "$@"'
        )
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        text = _LAUNCHER.format(exec_line=exec_line)
        write_script(self.script, text, 0o700)
        return str(self.script)

    def spawn_env(self, nice: int = 0) -> tuple[str, dict[str, str]]:
        """A spawn id and the environment the launcher reads for it; ``nice`` > 0 lowers the CLI's CPU priority."""
        spawn_id = uuid.uuid4().hex
        if not self.enabled:
            return spawn_id, {}
        env = {"CCBRIDGE_PIDFILE": str(self.pid_dir / f"{spawn_id}.pid")}
        if nice > 0:
            env["CCBRIDGE_NICE"] = str(int(nice))
        return spawn_id, env

    def forget(self, spawn_id: str | None) -> None:
        """The process ended normally (blocking: unlinks a file)."""
        if spawn_id and self.enabled:
            try:
                (self.pid_dir / f"{spawn_id}.pid").unlink()
            except OSError:
                pass

    def reap_orphans(self) -> int:
        """Kill what a previous (killed) run of this bot left behind; returns how many (blocking)."""
        if not self.enabled or not self.pid_dir.is_dir():
            return 0
        owners: dict[Path, int] = {}
        for pidfile in self.pid_dir.glob("*.pid"):
            try:
                owners[pidfile] = int(pidfile.read_text().split()[1])
            except (OSError, ValueError, IndexError):
                owners[pidfile] = 0
        killed = 0
        for pid, pidfile in _launched_processes(self.pid_dir):
            owner = owners.get(pidfile, 0)
            if owner > 0 and _alive(owner):
                continue  # its bot still runs (another agent of this process, or another process)
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        for pidfile, owner in owners.items():
            if not (owner > 0 and _alive(owner)):
                try:
                    pidfile.unlink()
                except OSError:
                    pass
        return killed


def _launched_processes(pid_dir: Path) -> list[tuple[int, Path]]:
    """(pid, pidfile) of every live process whose environment names a pidfile in ``pid_dir`` (Linux)."""
    prefix = f"CCBRIDGE_PIDFILE={pid_dir}/".encode()
    found = []
    me = os.getpid()
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for var in environ.split(b"\0"):
            if var.startswith(prefix):
                found.append((int(entry.name), Path(var.split(b"=", 1)[1].decode(errors="replace"))))
                break
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
