"""Tenant isolation below the tool policy: private Claude Code directories, and the Bash sandbox.

Every conversation's CLI runs with a config directory of its own
(``agent.sessions_dir/<platform>/<owner>/<thread>/config``) and a temp directory
of its own (``$TMPDIR/ccbridge-<uid>/<hash>``: short, because the sandbox puts
Unix sockets there and their paths may not exceed 108 bytes): Claude Code
registers live sessions under its config directory's ``sessions/``, keeps its
transcripts under ``projects/`` and its sockets and scratch files in the temp
directory, so no CLI can see or message another — not even through a tool the
policy has never heard of. Credentials and (when enabled) user settings are
linked in from the operator's Claude Code config directory, so logins keep
working; a transcript written before ccbridge used private directories is
copied in on first resume.

Approved Bash commands run in Claude Code's own sandbox (bubblewrap on Linux,
Seatbelt on macOS) where available (``agent.sandbox``): the workspace is the
only place they can write, and the other workspaces, the session directories
and the store cannot even be read.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..keys import ConversationKey
from ..workspace import owner_dirname

log = logging.getLogger(__name__)

_LINKED = (".credentials.json",)  # shared with the operator's login (OAuth refreshes write through)
_COPIED = (".claude.json",)  # Claude Code rewrites it often: each conversation gets its own copy


@dataclass(frozen=True)
class SessionHome:
    """The private directories of one conversation's CLI."""

    config_dir: Path
    tmp_dir: Path

    def env(self) -> dict[str, str]:
        tmp = str(self.tmp_dir)
        return {"CLAUDE_CONFIG_DIR": str(self.config_dir), "TMPDIR": tmp, "CLAUDE_CODE_TMPDIR": tmp, "TMP": tmp}


class SessionHomes:
    def __init__(
        self, root: Path, agent_env: Mapping[str, str], *, user_settings: bool = False, tmp_root: Path | None = None
    ) -> None:
        self.root = Path(root)
        uid = os.getuid() if hasattr(os, "getuid") else 0
        self.tmp_root = tmp_root or Path(tempfile.gettempdir()) / f"ccbridge-{uid}"
        env = {**os.environ, **agent_env}
        self.home = Path(env.get("HOME") or Path.home())
        self.base_config = Path(env.get("CLAUDE_CONFIG_DIR") or self.home / ".claude")
        self.user_settings = user_settings

    def path(self, key: ConversationKey) -> Path:
        platform = owner_dirname(key.platform) + (f"@{owner_dirname(key.bot)}" if key.bot else "")
        thread = owner_dirname(key.thread) if key.thread is not None else "_"
        return self.root / platform / owner_dirname(key.owner) / thread

    async def prepare(self, key: ConversationKey, session_id: str) -> SessionHome:
        return await asyncio.to_thread(self._prepare, key, session_id)

    def _tmp_dir(self, base: Path) -> Path:
        return self.tmp_root / hashlib.sha256(str(base).encode()).hexdigest()[:16]

    async def remove(self, key: ConversationKey) -> None:
        """Delete the conversation's private directories: its transcripts, todos, shell snapshots, temp files."""
        base = self.path(key)
        for directory in (base, self._tmp_dir(base)):
            await asyncio.to_thread(shutil.rmtree, directory, True)

    def _prepare(self, key: ConversationKey, session_id: str) -> SessionHome:
        base = self.path(key)
        tmp = self._tmp_dir(base)
        home = SessionHome(base / "config", tmp)
        self.tmp_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for directory in (home.config_dir, home.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in _LINKED + (("settings.json",) if self.user_settings else ()):
            self._link(self.base_config / name, home.config_dir / name)
        for name in _COPIED:
            source = self.base_config / name
            if not source.is_file() and name == ".claude.json":
                source = self.home / ".claude.json"  # where Claude Code keeps it without CLAUDE_CONFIG_DIR
            target = home.config_dir / name
            if source.is_file() and not target.exists():
                shutil.copyfile(source, target)
        self._adopt_transcript(home.config_dir, session_id)
        return home

    @staticmethod
    def _link(source: Path, target: Path) -> None:
        if not source.exists() or target.is_symlink() or target.exists():
            return
        try:
            target.symlink_to(source)
        except OSError as exc:
            log.warning("could not link %s into a session directory: %s", source, exc)

    def _adopt_transcript(self, config_dir: Path, session_id: str) -> None:
        """Copy a transcript kept in the shared config directory (before private directories) into this one."""
        projects = config_dir / "projects"
        if any(projects.glob(f"*/{session_id}.jsonl")):
            return
        shared = self.base_config / "projects"
        if shared.resolve() == projects.resolve() or not shared.is_dir():
            return
        for found in shared.glob(f"*/{session_id}.jsonl"):
            target = projects / found.parent.name / found.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(found, target)
            log.info("session %s: adopted its transcript from %s", session_id, found.parent)
            return


# -- the Bash sandbox ------------------------------------------------------------


@dataclass(frozen=True)
class SandboxStatus:
    active: bool
    reason: str  # why it is (not) active, for --check and the start-up log


@functools.cache
def _linux_sandbox_problem() -> str | None:
    """Why Claude Code's bubblewrap sandbox cannot run here, or None when it can (blocking; cached)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap is not installed (apt-get install bubblewrap socat)"
    if shutil.which("socat") is None:
        return "socat is not installed (apt-get install socat)"
    try:
        probe = subprocess.run(
            [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-net", "true"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not run ({exc})"
    if probe.returncode != 0:
        detail = probe.stderr.decode(errors="replace").strip().splitlines()
        return f"bubblewrap cannot create namespaces here ({detail[-1] if detail else probe.returncode})"
    return None


def probe_sandbox(mode: str) -> SandboxStatus:
    """Whether approved Bash commands will be sandboxed with ``agent.sandbox: mode`` (blocking)."""
    if mode == "off":
        return SandboxStatus(False, "agent.sandbox is off")
    if sys.platform == "darwin":
        return SandboxStatus(True, "Claude Code's Seatbelt sandbox (macOS)")
    problem = _linux_sandbox_problem() if sys.platform.startswith("linux") else f"not supported on {sys.platform}"
    if problem is None:
        return SandboxStatus(True, "Claude Code's bubblewrap sandbox: Bash writes only inside the workspace")
    if mode == "on":
        raise ConfigError(f"the Bash sandbox cannot run: {problem}", key="agent.sandbox")
    return SandboxStatus(False, problem)


def sandbox_settings(
    root: Path, tmp: Path, hidden: list[Path], writable: list[Path] | None = None, read_only: list[Path] | None = None
) -> dict[str, Any]:
    """Claude Code ``sandbox`` settings confining Bash to the workspace ``root`` (and its own ``tmp``).

    ``hidden`` (the other workspaces, the session directories, the store) cannot be read at all;
    ``writable`` are more places commands may write (a project's ``.git``, for its worktrees), and
    ``read_only`` places inside them they may not (the refs of other branches there).
    """
    mine = [str(root), str(tmp), *(str(p) for p in writable or [])]
    return {
        "enabled": True,
        "failIfUnavailable": True,  # never run a command unsandboxed when the sandbox breaks
        "allowUnsandboxedCommands": False,  # no dangerouslyDisableSandbox escape hatch
        "autoAllowBashIfSandboxed": False,  # ccbridge's policy still decides (approval in the chat)
        "filesystem": {
            "allowWrite": mine,
            "denyRead": [str(p) for p in hidden],
            "denyWrite": [str(p) for p in read_only or []],
            "allowRead": mine,
        },
    }
