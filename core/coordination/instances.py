"""Which instance id a live :class:`~core.agent.Agent` runs as, when ``coordination.instance_id`` is not set.

The default id is stable (:func:`~core.coordination.default_instance_id`: the host name plus a hash of
the home directory and the working directory), so a process restarted after a crash gets its old id
back and start-up marks the turns that crash cut off as interrupted. But two agents computing the same
default id at once — two bots of one process, two processes started from one directory — must not
share it: the start of one would mark the other's running turns interrupted. So each live agent
*claims* its id:

* the first live one takes the base id, a second one at the same time ``<base>-2``, then ``<base>-3``…
  (the lowest one free);
* a claim is held in this process (a registry) and on this machine (an ``flock`` on
  ``<lock dir>/<id>.lock``, the lock dir being ``<agent.sessions_dir>/.instances``): the kernel drops
  the lock when its process dies, however it dies, so a crashed instance's id is free again and its
  restart takes it back;
* the claim is released when the agent closes, or when it is garbage-collected unclosed.

An explicit ``coordination.instance_id`` is used as given: nothing is claimed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: the in-process registry only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

__all__ = ["InstanceClaim", "claim_instance_id"]

_MAX_SUFFIX = 9999  # "<base>-N" with N up to this: far more agents than one machine runs
_held: set[str] = set()  # the ids claimed by this process's live agents
_guard = threading.Lock()


class InstanceClaim:
    """One instance id, held until :meth:`release` (idempotent; safe from a finalizer)."""

    def __init__(self, instance_id: str, base: str, lock_dir: Path | None, fd: int | None) -> None:
        self.instance_id = instance_id
        self.base = base
        self.lock_dir = lock_dir
        self._fd = fd
        self.held = True

    def release(self) -> None:
        with _guard:
            if not self.held:
                return
            self.held = False
            _held.discard(self.instance_id)
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)  # closing the descriptor drops the flock
                self._fd = None

    def reclaim(self) -> bool:
        """Hold this same id again (an agent started after it was closed); False: another live agent has it."""
        if self.held:
            return True
        again = _try_claim(self.instance_id, self.base, self.lock_dir)
        if again is None:
            return False
        self._fd, again._fd = again._fd, None
        again.held = False
        self.held = True
        return True

    def dead_siblings(self) -> list[InstanceClaim]:
        """The other ids of this base that ran here (a lock file) and whose holder is gone, each claimed
        now: their cut-off turns can be marked while no new agent can take them. Release each after."""
        if self.lock_dir is None:
            return []
        pattern = re.compile(re.escape(self.base) + r"(-\d{1,4})?\.lock")
        try:
            names = sorted(p.name for p in self.lock_dir.iterdir() if pattern.fullmatch(p.name))
        except OSError:
            return []
        found = []
        for name in names:
            sibling = name.removesuffix(".lock")
            if sibling == self.instance_id:
                continue
            claim = _try_claim(sibling, self.base, self.lock_dir)
            if claim is not None:
                found.append(claim)
        return found

    def __repr__(self) -> str:
        return f"InstanceClaim({self.instance_id!r}, held={self.held})"


def claim_instance_id(base: str, lock_dir: Path | None) -> InstanceClaim:
    """Claim the lowest free id among ``base``, ``base-2``, ``base-3``… (see the module docstring)."""
    for n in range(1, _MAX_SUFFIX + 1):
        candidate = base if n == 1 else f"{base}-{n}"
        claim = _try_claim(candidate, base, lock_dir)
        if claim is not None:
            if n > 1:
                log.info("instance id %s is held by another live agent here; this one runs as %s", base, candidate)
            return claim
    raise RuntimeError(f"no free instance id left for {base}")  # pragma: no cover


def _try_claim(instance_id: str, base: str, lock_dir: Path | None) -> InstanceClaim | None:
    with _guard:
        if instance_id in _held:
            return None
        free, fd = _lock_file(instance_id, lock_dir)
        if not free:
            return None
        _held.add(instance_id)
        return InstanceClaim(instance_id, base, lock_dir, fd)


def _lock_file(instance_id: str, lock_dir: Path | None) -> tuple[bool, int | None]:
    """Whether no other process holds ``<lock_dir>/<id>.lock``, and the descriptor now holding it (None:
    no lock file could be used — no directory, a filesystem without locks —: this process's registry only)."""
    if lock_dir is None or fcntl is None:
        return True, None
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_dir / f"{instance_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        log.warning(
            "cannot use %s for instance id locks (%r): only this process's agents are told apart", lock_dir, exc
        )
        return True, None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False, None
    except OSError as exc:
        os.close(fd)
        log.warning("cannot lock in %s (%r): only this process's agents are told apart", lock_dir, exc)
        return True, None
    with contextlib.suppress(OSError):  # who holds it, for a person looking (the lock is what counts)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    return True, fd
