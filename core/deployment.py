"""Start-up checks for several instances: what must be on storage every instance sees.

With ``coordination: redis`` a conversation may move to another instance (when its
owner dies, or after a graceful stop hands it over). The new owner works in the
conversation's workspace, so ``workspace.base_dir`` must be on storage all
instances share (NFS, CephFS, EFS, a volume mounted into every container), at the
same absolute path; it resumes the Claude Code session from the store's copy of
the transcript (``store.transcripts: store``, the default for Redis and
PostgreSQL) or, with ``transcripts: local``, from ``agent.sessions_dir``, which
must then be shared too. A directory on a local disk works only while every
instance runs on the same machine; these checks say so at start.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Sections

#: filesystem types that are shared between machines
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "9p",
        "virtiofs",
        "fuse.sshfs",
        "fuse.glusterfs",
        "fuse.cephfs",
        "fuse.juicefs",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.efs",
        "afs",
        "ocfs2",
        "gfs2",
    }
)


def filesystem_of(path: Path, mounts: str | None = None) -> str | None:
    """The type of the filesystem ``path`` is on (from ``/proc/mounts``); None when unknown."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None
    target = Path(os.path.realpath(path))  # symlinks followed; a part not created yet is taken as written
    best: tuple[int, str] | None = None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(fields[1].replace("\\040", " "))
        if target == point or point in target.parents:
            depth = len(point.parts)
            if best is None or depth >= best[0]:
                best = (depth, fields[2])
    return best[1] if best else None


def shared_storage_warnings(sections: Sections, mounts: str | None = None) -> list[str]:
    """Warnings for a shared deployment whose conversations' files look local to this machine."""
    coordination = sections.coordination
    if coordination.backend == "memory":
        return []
    out = [] if coordination.shared_storage else _local_files(sections, mounts)
    if sections.store.backend == "sqlite":
        out.append(
            "store: sqlite with shared coordination works only for instances on this machine; "
            "use store: postgres or store: redis when instances run on several machines."
        )
    elif sections.store.backend == "memory":
        out.append(
            "store: memory with shared coordination: each instance keeps its own conversations, so one taken "
            "over by another instance starts over there, its history gone; use store: redis or store: postgres."
        )
    return out


def _local_files(sections: Sections, mounts: str | None) -> list[str]:
    """Warnings for the conversations' directories that look local to this machine."""
    out = []
    places = {"workspace.base_dir": sections.workspace.base_dir}
    if sections.store.transcript_mode() == "local":  # with transcripts in the store, sessions resume anywhere
        places["agent.sessions_dir"] = sections.agent.sessions_dir
    for project, settings in sections.projects.items():  # its conversations work in it (and its worktrees)
        places[f"projects.{project}.path"] = settings.path
    for name, path in places.items():
        kind = filesystem_of(Path(path), mounts)
        if kind not in NETWORK_FILESYSTEMS:
            out.append(
                f"{name} ({path}) is on a local filesystem ({kind or 'unknown'}) while coordination is shared: "
                "an instance taking a conversation over on another machine would not find its files or its "
                "Claude Code session. Put it on storage every instance mounts (NFS, CephFS, EFS, a shared "
                "volume), or set coordination.shared_storage: true if it already is."
            )
    return out
