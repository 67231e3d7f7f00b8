"""Workspaces: ``base_dir/<platform>/<owner>[/<subdir>]``, sanitized, created on demand.

Paths given by users (``/cwd sub/dir``, an API ``subdir``) are relative to the
conversation's workspace root; ``..`` segments and absolute paths are rejected
with a :class:`WorkspaceError`. Containment checks resolve symlinks.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from pathlib import Path, PurePosixPath

from .errors import WorkspaceError
from .keys import ConversationKey

# Letters and digits of any script, plus a few harmless marks; everything else becomes "_".
_UNSAFE = re.compile(r"[^\w.@+-]+")
_MAX_NAME_BYTES = 120  # well under the 255-byte limit of common filesystems
# Never produced by sanitize_name, so an owner directory with a hash suffix cannot collide
# with the directory of an owner whose id was already safe.
_HASH_MARK = "~"
MAX_SUBDIR_DEPTH = 32  # directories below the workspace root a user may name
MAX_SUBDIR_CHARS = 1024


def _clip_utf8(text: str, limit: int) -> str:
    return text.encode()[:limit].decode(errors="ignore")


def sanitize_name(name: str) -> str:
    """A single path segment safe on every filesystem: no separators, no dot-names.

    Keeps the extension when a long name is shortened (``report.pdf`` stays a PDF).
    """
    cleaned = _UNSAFE.sub("_", name.strip()).strip("._") or "_"
    if len(cleaned.encode()) <= _MAX_NAME_BYTES:
        return cleaned
    stem, dot, ext = cleaned.rpartition(".")
    if dot and 0 < len(ext.encode()) <= 16:
        return _clip_utf8(stem, _MAX_NAME_BYTES - len(ext.encode()) - 1) + "." + ext
    return _clip_utf8(cleaned, _MAX_NAME_BYTES)


def owner_dirname(owner: str) -> str:
    """The directory name of a workspace owner; distinct owners get distinct names.

    (On a case-insensitive filesystem, ids differing only in case still share one: Slack and
    Telegram ids are case-stable, and an HTTP API caller chooses its own user ids.)

    Ids that are already safe (``42``, ``U0123ABC``, ``alice``) are used as they are; any
    other id is sanitized and given a short hash of the original, so ``bob.`` and ``bob``
    or ``a/b`` and ``a_b`` never share a workspace.
    """
    safe = sanitize_name(owner)
    if safe == owner:
        return safe
    digest = hashlib.sha256(owner.encode()).hexdigest()[:12]
    return f"{_clip_utf8(safe, _MAX_NAME_BYTES - 13)}{_HASH_MARK}{digest}"


def check_subdir(subdir: str) -> PurePosixPath:
    """Validate a user-given relative directory; returns it normalized."""
    text = subdir.strip().replace("\\", "/")
    if not text or text in (".", "./"):
        return PurePosixPath(".")
    if "\x00" in text:
        raise WorkspaceError("the path contains a NUL byte")
    if len(text) > MAX_SUBDIR_CHARS:
        raise WorkspaceError(f"the path is {len(text)} characters long; the limit is {MAX_SUBDIR_CHARS}")
    rel = PurePosixPath(text)
    if rel.is_absolute() or re.match(r"^[A-Za-z]:", text):
        raise WorkspaceError(f"{subdir!r} is absolute; give a path relative to the workspace")
    if any(part == ".." for part in rel.parts):
        raise WorkspaceError(f"{subdir!r} goes outside the workspace ('..' is not allowed)")
    if len(rel.parts) > MAX_SUBDIR_DEPTH:
        raise WorkspaceError(f"the path is {len(rel.parts)} directories deep; the limit is {MAX_SUBDIR_DEPTH}")
    return rel


def is_within(path: Path, root: Path) -> bool:
    """True when ``path`` (symlinks resolved) is ``root`` or inside it. Blocking: touches the disk."""
    try:
        resolved = path.resolve(strict=False)
        root_resolved = root.resolve(strict=False)
    except (OSError, RuntimeError):
        return False
    return resolved == root_resolved or root_resolved in resolved.parents


class Workspaces:
    """Maps conversation keys to directories under one base directory."""

    def __init__(self, base_dir: Path, uploads_dir: str = "uploads") -> None:
        self.base_dir = Path(base_dir).expanduser().resolve()
        self.uploads_dir = sanitize_name(uploads_dir)

    def root(self, key: ConversationKey) -> Path:
        """The workspace root of a conversation (not created).

        ``base_dir/<platform>/<owner>``; a bot-scoped key lives under ``<platform>@<bot>``
        instead, so two bots of one platform never share a workspace.
        """
        platform = owner_dirname(key.platform)
        if key.bot:
            platform = f"{platform}@{owner_dirname(key.bot)}"
        return self.base_dir / platform / owner_dirname(key.owner)

    def path(self, key: ConversationKey, subdir: str | None = None) -> Path:
        root = self.root(key)
        if not subdir:
            return root
        return root / check_subdir(subdir)

    async def ensure(self, key: ConversationKey, subdir: str | None = None) -> Path:
        """Create (if needed) and return the directory; rejects escapes through symlinks."""
        root = self.root(key)
        target = self.path(key, subdir)

        def make() -> Path:
            root.mkdir(parents=True, exist_ok=True)
            if not is_within(target, root):
                raise WorkspaceError(f"{subdir!r} leads outside the workspace")
            target.mkdir(parents=True, exist_ok=True)
            return target

        return await asyncio.to_thread(make)

    async def ensure_in(self, root: Path, subdir: str | None = None) -> Path:
        """Like :meth:`ensure`, below another root (a project's worktree)."""
        target = root / check_subdir(subdir) if subdir else root

        def make() -> Path:
            root.mkdir(parents=True, exist_ok=True)
            if not is_within(target, root):
                raise WorkspaceError(f"{subdir!r} leads outside the project")
            target.mkdir(parents=True, exist_ok=True)
            return target

        return await asyncio.to_thread(make)

    async def uploads(self, key: ConversationKey) -> Path:
        """The directory incoming files are saved to."""
        return await self.ensure(key, self.uploads_dir)

    async def save_upload(self, key: ConversationKey, filename: str, data: bytes, folder: Path | None = None) -> Path:
        """Write an incoming file into the uploads directory (or ``folder``) under a safe, unique name."""
        if folder is None:
            folder = await self.uploads(key)
        else:
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        name = sanitize_name(filename) or "file"

        def write() -> Path:
            stem, dot, ext = name.rpartition(".")
            if not dot:
                stem, ext = name, ""
            candidate = folder / name
            n = 1
            while candidate.exists():
                candidate = folder / (f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}")
                n += 1
            candidate.write_bytes(data)
            return candidate

        return await asyncio.to_thread(write)

    def relative(self, key: ConversationKey, path: Path) -> str:
        """``path`` relative to the conversation's root, for display."""
        try:
            return str(Path(path).relative_to(self.root(key))) or "."
        except ValueError:
            return str(path)
