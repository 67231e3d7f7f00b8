"""Projects: a place (a channel, a group, someone's DMs) works on a real repository.

``projects:`` binds a directory to places (``slack:C0123``, ``telegram:-100123``,
``discord:guild/123``...). A conversation in a bound place works in that project
instead of its own empty workspace; file tools and the Bash sandbox are confined
to the project's directory the same way. When the project is a git repository
(``mode: worktree``, the default) each conversation gets a ``git worktree`` of
its own on branch ``ccbridge/<conversation>``, created on its first turn, so two
threads working at once never edit the same files. Worktrees of conversations
idle past ``retention`` are removed (never while a turn runs), their uncommitted
work committed on their branch first; the branches stay, and the worktree comes
back from its branch on the next turn. Admins may
switch a place to another project from the chat (``/project``), kept in the store.

All git work runs ``git`` as a subprocess, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .config import ProjectSettings, check_paths
from .errors import CCBridgeError, ConfigError
from .keys import ConversationKey
from .store import Conversation, ConversationStore
from .workspace import owner_dirname

log = logging.getLogger(__name__)

OVERRIDE_PREFIX = "project:"
NONE = "-"  # an override meaning "no project here"
_BRANCH_UNSAFE = re.compile(r"[^A-Za-z0-9._/-]+")
GIT_TIMEOUT = 60.0
#: who commits the work a conversation left uncommitted when its idle worktree is removed
SAVE_IDENTITY = ("-c", "user.name=ccbridge", "-c", "user.email=ccbridge@localhost", "-c", "commit.gpgsign=false")
#: on every git ccbridge runs itself (outside the sandbox): no hooks, no fsmonitor command from a repository's config
_HARDENED = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
_git_home: str | None = None


class GitError(CCBridgeError):
    """A git command failed; the message is git's own."""


@dataclass(frozen=True)
class Workplace:
    """Where a conversation works: its root directory, and its project and branch when it has one."""

    root: Path
    project: str | None = None
    branch: str | None = None
    repository: Path | None = None  # the main checkout (its .git takes the worktree's writes)


def _neutral_home() -> str:
    """An empty private directory for git's HOME (created once per process)."""
    global _git_home
    if _git_home is None or not os.path.isdir(_git_home):
        _git_home = tempfile.mkdtemp(prefix="ccbridge-git-home-")
    return _git_home


def git_env() -> dict[str, str]:
    """The environment ccbridge runs git with.

    PATH is the operator's (a git installed outside /usr/bin is found). Nothing else of the
    operator's environment or configuration applies: their ``~/.gitconfig`` may hold credential
    helpers, aliases, hooks, signing or filters that have no business in a conversation's worktree,
    so git reads no global configuration (``GIT_CONFIG_GLOBAL`` is the empty /dev/null) and HOME is
    an empty private directory. HOME is never the repository or a worktree: a worktree is written
    by Claude, and a ``.gitconfig`` it left there would otherwise be read as the global configuration
    of the git ccbridge runs outside the sandbox. The system configuration (``/etc/gitconfig``) applies.
    """
    return {
        "GIT_TERMINAL_PROMPT": "0",
        "PATH": os.environ.get("PATH") or os.defpath,
        "HOME": _neutral_home(),
        "GIT_CONFIG_GLOBAL": os.devnull,
    }


async def git(cwd: Path, *args: str, check: bool = True) -> str:
    """Run ``git`` in ``cwd``; its stdout. Raises :class:`GitError` with git's message when it fails."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "git",
            *_HARDENED,
            *args,
            cwd=cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=git_env(),
        )
    except OSError as exc:  # no git on PATH, or cwd is gone
        raise GitError(f"cannot run git in {cwd}: {exc.strerror or exc}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), GIT_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise GitError(f"git {args[0]} took longer than {GIT_TIMEOUT:g}s") from None
    if check and proc.returncode != 0:
        raise GitError(err.decode(errors="replace").strip() or f"git {args[0]} failed ({proc.returncode})")
    return out.decode(errors="replace")


def branch_for(key: ConversationKey) -> str:
    """``ccbridge/<conversation>``: readable, valid for git, distinct per conversation."""
    parts = [p for p in (key.bot, key.platform, key.owner, key.thread) if p]
    readable = _BRANCH_UNSAFE.sub("-", "-".join(parts)).strip("-./")[:60] or "conversation"
    digest = hashlib.sha256(str(key).encode()).hexdigest()[:8]
    return f"ccbridge/{readable}-{digest}"


#: what in a repository's ``.git`` Bash in one of its worktrees may not write (Claude Code itself keeps
#: its config, hooks, worktrees and modules read-only): the main checkout's own state, shared refs, and
#: ``objects/info`` (an ``alternates`` file there would borrow another repository's objects)
_SHARED_GIT = ("HEAD", "index", "packed-refs", "info", "description", "logs/HEAD", "refs/tags", "refs/remotes")
_SHARED_GIT_MORE = ("objects/info", "FETCH_HEAD", "ORIG_HEAD", "shallow")


async def sandbox_git(repository: str | None, branch: str | None) -> tuple[list[Path], list[Path]]:
    """Where the Bash sandbox of a conversation in a worktree of ``repository`` may write in its git, and
    where inside that not: the repository's ``.git`` is writable (new objects, the conversation's
    ``branch`` and its log), but not the branches of the main checkout or of other conversations, nor
    the shared files of :data:`_SHARED_GIT`. Outside a project: nothing. (Read when a process starts.)"""
    if not repository:
        return [], []
    git_dir = Path(repository) / ".git"
    read_only = await asyncio.to_thread(_read_only_git, git_dir, branch.split("/") if branch else [])
    return [git_dir], read_only


def _read_only_git(git_dir: Path, own: list[str]) -> list[Path]:
    packed = git_dir / "packed-refs"
    if not packed.exists() and git_dir.is_dir():  # an empty one is valid; a missing one could not be kept read-only
        with contextlib.suppress(OSError):
            packed.touch()
    fixed = [git_dir / name for name in (*_SHARED_GIT, *_SHARED_GIT_MORE)]
    refs = _other_refs(git_dir / "refs/heads", own) + _other_refs(git_dir / "logs/refs/heads", own)
    return [p for p in fixed if p.exists()] + refs


def _other_refs(directory: Path, own: list[str]) -> list[Path]:
    """The refs under ``directory`` other than ``own`` (its path parts): each entry off the way to it."""
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return []
    out: list[Path] = []
    for entry in entries:
        if own and entry.name == own[0]:
            if len(own) > 1 and entry.is_dir():
                out += _other_refs(entry, own[1:])
            continue
        if not entry.name.endswith(".lock"):
            out.append(entry)
    return out


@dataclass
class _Lane:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holders + waiters


def worktrees_of(conv: Conversation) -> dict[str, float]:
    """The projects a conversation may hold a worktree of, with when it last worked there: its current
    session's, and those of earlier sessions (left by ``/new`` or a ``/project`` switch, kept for ``/resume``)."""
    found: dict[str, float] = {}
    current = conv.metadata.get("project")
    if isinstance(current, str):
        found[current] = conv.last_active_at
    for note in conv.metadata.get("sessions") or []:
        place = note.get("workplace") if isinstance(note, dict) else None
        name = place.get("project") if isinstance(place, dict) else None
        if isinstance(name, str):
            found[name] = max(found.get(name, 0.0), float(note.get("last_active_at") or 0.0))
    return found


class Projects:
    def __init__(self, settings: dict[str, ProjectSettings], base_dir: Path, store: ConversationStore) -> None:
        check_paths(settings)
        self.settings = dict(settings)
        self.worktrees = base_dir / "_worktrees"
        self.store = store
        self._repos: dict[str, bool] = {}
        self._lock = asyncio.Lock()  # git worktree add/remove on one repository at a time
        # per worktree: held while a turn makes sure its worktree is there, and while a sweep saves and
        # removes it, so the two never overlap (the turn itself then holds its conversation's lock)
        self._lanes: dict[Path, _Lane] = {}

    def update(self, settings: dict[str, ProjectSettings]) -> None:
        """New bindings (a config reload), for the conversations and sessions to come."""
        check_paths(settings)
        self.settings = dict(settings)
        self._repos.clear()

    @asynccontextmanager
    async def _holding(self, path: Path) -> AsyncIterator[None]:
        lane = self._lanes.setdefault(path, _Lane())
        lane.users += 1
        try:
            async with lane.lock:
                yield
        finally:
            lane.users -= 1
            if lane.users == 0 and self._lanes.get(path) is lane:
                del self._lanes[path]

    def __bool__(self) -> bool:
        return bool(self.settings)

    # -- bindings --------------------------------------------------------------
    async def project_for(self, places: list[str], scope: str | None = None) -> str | None:
        """The project bound to the first of ``places`` that has one (an admin's switch wins over the config)."""
        for place in places:
            override = await self._override(place, scope)
            if override is not None:
                return None if override == NONE else override
            for name, project in self.settings.items():
                if place in project.places:
                    return name
        return None

    async def _override(self, place: str, scope: str | None) -> str | None:
        try:
            value = await self.store.get_meta(f"{OVERRIDE_PREFIX}{scope or '-'}:{place}")
        except NotImplementedError:
            return None
        return value if value == NONE or value in self.settings else None

    async def switch(self, place: str, project: str | None, scope: str | None = None) -> None:
        """Bind ``place`` to ``project`` (None: to no project) from now on."""
        if project is not None and project not in self.settings:
            raise ConfigError(f"no project named {project!r} (configured: {', '.join(self.settings) or 'none'})")
        await self.store.put_meta(f"{OVERRIDE_PREFIX}{scope or '-'}:{place}", project or NONE)

    # -- where a conversation works --------------------------------------------
    async def is_repository(self, name: str) -> bool:
        if name not in self._repos:
            out = await git(self.settings[name].path, "rev-parse", "--is-inside-work-tree", check=False)
            self._repos[name] = out.strip() == "true"
        return self._repos[name]

    def worktree_path(self, name: str, key: ConversationKey) -> Path:
        return self.worktrees / owner_dirname(name) / hashlib.sha256(str(key).encode()).hexdigest()[:16]

    async def workplace(self, name: str, key: ConversationKey) -> Workplace:
        """The conversation's directory in project ``name``: its worktree (created if missing), or the checkout."""
        project = self.settings[name]
        if project.mode == "shared" or not await self.is_repository(name):
            return Workplace(project.path.resolve(), name)
        path = self.worktree_path(name, key)
        branch = branch_for(key)
        repo = project.path.resolve()
        async with self._holding(path):  # waits for a sweep removing it right now; then it comes back
            if not (path / ".git").exists():
                async with self._lock:
                    await self._add_worktree(repo, path, branch)
        return Workplace(path, name, branch, repo)

    async def _add_worktree(self, repo: Path, path: Path, branch: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        await git(repo, "worktree", "prune")
        exists = (await git(repo, "branch", "--list", branch)).strip()
        if exists:
            await git(repo, "worktree", "add", str(path), branch)
        else:
            await git(repo, "worktree", "add", "-b", branch, str(path))
        log.info("project %s: worktree %s on branch %s", repo.name, path, branch)

    async def diff(self, place: Workplace) -> str:
        """The conversation's changes: against its branch's start (committed) and in the worktree (not yet)."""
        if place.branch is None or place.repository is None:
            if place.project and await self.is_repository(place.project):
                return await git(place.root, "diff", *_PLAIN, "HEAD") + await _untracked(place.root)
            return ""
        if not await asyncio.to_thread(place.root.is_dir):  # its worktree was swept when idle: the branch has it all
            repo = place.repository
            base = (await git(repo, "merge-base", place.branch, await self._main_head(repo))).strip()
            return await git(repo, "diff", *_PLAIN, base, place.branch)
        base = (await git(place.root, "merge-base", "HEAD", await self._main_head(place.repository))).strip()
        committed = await git(place.root, "diff", *_PLAIN, base, "HEAD")
        working = await git(place.root, "diff", *_PLAIN, "HEAD")
        return committed + working + await _untracked(place.root)

    @staticmethod
    async def _main_head(repo: Path) -> str:
        return (await git(repo, "rev-parse", "HEAD")).strip()

    async def remove_idle(self, conversations: list[Conversation], busy: Callable[[ConversationKey], bool]) -> int:
        """Remove the worktrees of conversations idle past their project's retention; branches stay.

        ``busy(key)``: a turn (or /new, /resume) holds the conversation right now; asked live, under
        the worktree's lock, right before its removal. Work left uncommitted is committed on the
        conversation's branch first; a worktree whose work cannot be saved is kept.
        """
        removed = 0
        for conv, name, active in [(c, n, t) for c in conversations for n, t in worktrees_of(c).items()]:
            if name not in self.settings or busy(conv.key):
                continue
            path = self.worktree_path(name, conv.key)
            if not path.exists() or time.time() - active < self.settings[name].retention:
                continue
            async with self._holding(path):  # a turn starting now waits here, then gets its worktree back
                fresh = await self.store.get(conv.key)  # the record now, not the sweep's listing
                if (
                    fresh is None
                    or busy(conv.key)
                    or fresh.status == "running"
                    or time.time() - worktrees_of(fresh).get(name, time.time()) < self.settings[name].retention
                    or not (path / ".git").exists()
                ):
                    continue
                repo = self.settings[name].path
                try:
                    if not await self._save(path, conv.key):
                        continue
                    async with self._lock:
                        await git(repo, "worktree", "remove", "--force", str(path))  # only ignored files are left
                except GitError as exc:
                    log.warning("project %s: could not remove the worktree of %s (kept): %s", name, conv.key, exc)
                    continue
            removed += 1
            log.info(
                "project %s: removed the idle worktree of %s (branch %s kept)", name, conv.key, branch_for(conv.key)
            )
        return removed

    async def _save(self, path: Path, key: ConversationKey) -> bool:
        """Commit what the worktree holds uncommitted (untracked files too, not ignored ones) on its branch.

        True when nothing is left to lose; False (with a warning) when the worktree must stay.
        """
        branch = branch_for(key)
        try:
            head = (await git(path, "symbolic-ref", "-q", "HEAD", check=False)).strip()
            if head != f"refs/heads/{branch}":
                log.warning(
                    "the worktree %s of %s is not on its branch %s (%s): kept, so no commit is lost",
                    path,
                    key,
                    branch,
                    head or "a detached HEAD",
                )
                return False
            if not (await git(path, "status", "--porcelain", "--untracked-files=all")).strip():
                return True
            await git(path, "add", "--all")
            message = (
                f"ccbridge: work in progress of {key}\n\n"
                "Left uncommitted when its idle worktree was removed; saved here so nothing is lost."
            )
            await git(path, *SAVE_IDENTITY, "commit", "--quiet", "--no-verify", "-m", message)
            if (await git(path, "status", "--porcelain", "--untracked-files=all")).strip():
                raise GitError("changes are left after the commit")
        except GitError as exc:
            log.warning("could not save the uncommitted work in %s of %s; the worktree is kept: %s", path, key, exc)
            return False
        log.info("saved the uncommitted work of %s on branch %s", key, branch)
        return True


_PLAIN = ("--no-ext-diff", "--no-textconv")  # no external diff or textconv command from the repository's config


async def _untracked(root: Path) -> str:
    """New files git does not know yet, shown as a diff would show them."""
    names = [n for n in (await git(root, "ls-files", "--others", "--exclude-standard")).splitlines() if n]
    out = []
    for name in names:
        diff = await git(root, "diff", *_PLAIN, "--no-index", "--", "/dev/null", name, check=False)
        out.append(diff)
    return "".join(out)
