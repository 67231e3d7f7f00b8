"""``/api/v1/sessions/{id}/files``: upload into a session's workspace, list it, download from it.

Every path is relative to the user's workspace root (the directory all of the
user's sessions work in; ``file`` events and the chat response's ``files`` use
the same paths). A path with ``..``, an absolute path, or one that leads out of
the workspace through a symlink is refused with 400 ``invalid_path``. Uploads go
to the workspace's uploads folder under a safe, unique name, each file at most
``workspace.max_upload_mb``; an upload whose file name is not one plain name (a
path separator, a ``..``, a NUL, an absolute or empty name) is refused with 400
``invalid_path`` and nothing of that request is written. Downloads are streamed
from disk.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Query, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.types import Scope

from core import Attachment, ConversationKey, WorkspaceError
from core.attachments import sniff_image
from core.workspace import check_subdir, is_within

from .auth import require_api_key
from .common import Ctx, OwnerQuery, errors
from .context import ApiContext
from .errors import ApiError, matcher
from .limits import BodyLimit
from .models import file_url, utc

router = APIRouter(prefix="/api/v1/sessions", tags=["files"], dependencies=[Depends(require_api_key)])

MB = 1024 * 1024
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the files of one upload
MAX_LISTED = 1000


class FileInfo(BaseModel):
    name: str
    path: str = Field(description="Relative to the user's workspace.")
    type: Literal["file", "dir"]
    size: int | None = Field(None, description="Bytes (files only).")
    modified_at: datetime
    url: str | None = Field(None, description="Where to download it (files only).")


class FileList(BaseModel):
    dir: str
    files: list[FileInfo]
    truncated: bool = Field(False, description=f"More than {MAX_LISTED} entries: the rest are left out.")


class Uploaded(BaseModel):
    files: list[FileInfo]


# -- paths -----------------------------------------------------------------------
def _refuse(what: str, exc: Exception | str) -> ApiError:
    return ApiError(400, "invalid_path", f"{what}: {exc}")


def confined(root: Path, rel: str, what: str = "path") -> Path:
    """``rel`` inside ``root``, symlinks resolved (blocking); 400 when it is not."""
    try:
        clean = check_subdir(rel)
    except WorkspaceError as exc:
        raise _refuse(what, exc) from None
    target = root / clean
    if not is_within(target, root):
        raise _refuse(what, f"{rel!r} leads outside the workspace")
    return target.resolve()


_DRIVE = re.compile(r"^[A-Za-z]:")
_SHOWN_NAME_CHARS = 200
_FILENAME_PARAM = re.compile(r'(?:^|;)\s*filename\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.IGNORECASE)


def sent_name(upload: UploadFile) -> str | None:
    """The file name as the client sent it.

    python-multipart shortens a Windows path (``C:\\dir\\x.bat``, ``\\\\host\\x``: what old browsers sent) to its
    last part; the whole path is what :func:`check_upload_name` must see, so it is read back from the part's
    Content-Disposition (unquoted as python-multipart unquotes it). Any other name is ``upload.filename``.
    """
    name = upload.filename
    found = _FILENAME_PARAM.findall(upload.headers.get("content-disposition", ""))
    if name is None or not found:
        return name
    raw = found[-1].strip()  # the last one, as python-multipart keeps it
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        raw = raw[1:-1].replace("\\\\", "\\").replace('\\"', '"')
    if not (raw[1:3] == ":\\" or raw[:2] == "\\\\"):
        return name
    data = raw.encode("latin-1", errors="replace")  # the header's bytes (Starlette decodes them as latin-1)
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data.decode("latin-1")


def check_upload_name(name: str | None) -> str:
    """An upload's file name, when it is one plain name; 400 ``invalid_path`` naming it otherwise.

    A name with ``/`` or ``\\``, a ``..`` (or ``.``) component, a NUL, an absolute or empty one is refused,
    never renamed: a client that sent ``../../x.sh`` gets told, instead of a file saved elsewhere than it
    meant. (Other odd characters are replaced when the file is saved: ``sanitize_name``.)
    """
    shown = repr(name if name is None or len(name) <= _SHOWN_NAME_CHARS else name[:_SHOWN_NAME_CHARS] + "...")
    if name is None or not name.strip():
        raise _refuse("file", "an upload needs a file name (the part's filename is empty)")
    if "\x00" in name:
        raise _refuse("file", f"{shown} contains a NUL byte")
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise _refuse("file", f"{shown} is an absolute path; give a plain file name")
    parts = [part.strip() for part in re.split(r"[/\\]", name)]
    if ".." in parts:
        raise _refuse("file", f"{shown} goes outside the uploads folder ('..' is not allowed)")
    if len(parts) > 1:
        raise _refuse("file", f"{shown} contains a path separator ('/' or '\\'); give a plain file name")
    if parts == ["."]:
        raise _refuse("file", f"{shown} is not a file name")
    return name


def _info(root: Path, path: Path, session_id: str) -> FileInfo | None:
    try:
        st = path.stat()
    except OSError:
        return None
    rel = path.relative_to(root).as_posix()
    if path.is_dir():
        return FileInfo(name=path.name, path=rel, type="dir", modified_at=utc(st.st_mtime))
    if not path.is_file():
        return None  # sockets, devices, broken links
    return FileInfo(
        name=path.name,
        path=rel,
        type="file",
        size=st.st_size,
        modified_at=utc(st.st_mtime),
        url=file_url(session_id, rel),
    )


def list_dir(root: Path, rel: str, session_id: str, recursive: bool) -> FileList:
    """The entries of a workspace directory (blocking); links leading outside are left out."""
    root = root.resolve()
    folder = confined(root, rel, "dir")
    if not folder.is_dir():
        raise ApiError(404, "not_found", f"dir: no directory {rel!r} in the workspace")
    candidates: list[Path] = []
    if recursive:
        for current, dirs, names in os.walk(folder):
            dirs.sort()
            here = Path(current)
            candidates += [here / d for d in dirs] + [here / n for n in sorted(names)]
            if len(candidates) > MAX_LISTED:
                break
    else:
        candidates = sorted(folder.iterdir())
    found: list[FileInfo] = []
    for path in candidates:
        if is_within(path, root):  # links leading out of the workspace are not shown
            info = _info(root, path, session_id)
            if info is not None:
                found.append(info)
    truncated = len(found) > MAX_LISTED or len(candidates) > MAX_LISTED
    shown = folder.relative_to(root).as_posix()
    return FileList(dir=shown, files=found[:MAX_LISTED], truncated=truncated)


async def attachments_for(ctx: ApiContext, key: ConversationKey, paths: Sequence[str]) -> list[Attachment]:
    """Workspace files given to Claude with a message (images as images); 400 for a bad path."""
    root = ctx.agent.workspaces.root(key)

    def build() -> list[Attachment]:
        out = []
        for rel in paths:
            target = confined(root.resolve(), rel, "attachments")
            if not target.is_file():
                raise ApiError(400, "invalid_path", f"attachments: no file {rel!r} in the workspace")
            with target.open("rb") as fh:
                head = fh.read(16)
            declared = mimetypes.guess_type(target.name)[0]
            out.append(Attachment(path=target, name=target.name, mime_type=sniff_image(head, declared)))
        return out

    return await asyncio.to_thread(build)


def upload_limit(max_upload_mb: float) -> int:
    return int(max_upload_mb * MB)


def body_limit_for(max_upload_mb: float) -> Callable[[Scope], BodyLimit | None]:
    """For :class:`~.limits.BodySizeLimit`: an upload's body may carry one file of ``max_upload_mb``."""
    uploads = matcher(r for r in router.routes if getattr(r, "name", "") == "upload_files")
    limit = BodyLimit(upload_limit(max_upload_mb) + MULTIPART_OVERHEAD, "workspace.max_upload_mb")

    def limit_for(scope: Scope) -> BodyLimit | None:
        return limit if uploads(scope) else None

    return limit_for


# -- routes ----------------------------------------------------------------------
@router.post("/{session_id}/files", status_code=201, name="upload_files", responses=errors(400, 403, 404))
async def upload_files(
    session_id: str,
    ctx: Ctx,
    file: Annotated[list[UploadFile], File(description="One or more files (multipart/form-data, field 'file').")],
    user_id: OwnerQuery = None,
) -> Uploaded:
    """Save files into the workspace's uploads folder (safe, unique names; each at most
    ``workspace.max_upload_mb``). Give them to Claude with the chat's ``attachments``, or name them in the message.
    A file name with a path (``/`` or ``\\``, ``..``), a NUL, or an absolute or empty name is refused (400
    ``invalid_path``); a refused request writes none of its files."""
    conv = await ctx.session(session_id, user_id)
    limit = upload_limit(ctx.agent.sections.workspace.max_upload_mb)
    root = ctx.agent.workspaces.root(conv.key)
    names = [check_upload_name(sent_name(upload)) for upload in file]
    contents: list[bytes] = []
    for name, upload in zip(names, file, strict=True):
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, "file_too_large", f"{name} is larger than {limit} bytes (workspace.max_upload_mb)")
        contents.append(data)  # all of them fit in one request body (BodySizeLimit): at most one file's limit
    saved: list[FileInfo] = []
    for name, data in zip(names, contents, strict=True):
        path = await ctx.agent.workspaces.save_upload(conv.key, name, data)
        info = await asyncio.to_thread(_info, root.resolve(), path.resolve(), conv.session_id)
        if info is not None:
            saved.append(info)
    return Uploaded(files=saved)


@router.get("/{session_id}/files", responses=errors(400, 403, 404))
async def list_files(
    session_id: str,
    ctx: Ctx,
    user_id: OwnerQuery = None,
    dir: Annotated[str, Query(max_length=1024, description="A directory of the workspace ('.' is its root).")] = ".",
    recursive: bool = False,
) -> FileList:
    """What is in the workspace (or one of its directories): files Claude wrote, uploads, ..."""
    conv = await ctx.session(session_id, user_id)
    root = ctx.agent.workspaces.root(conv.key)
    if not await asyncio.to_thread(root.is_dir):
        return FileList(dir=".", files=[])
    return await asyncio.to_thread(list_dir, root, dir, conv.session_id, recursive)


@router.get(
    "/{session_id}/files/{path:path}",
    response_class=FileResponse,
    responses={**errors(400, 403, 404), 200: {"content": {"application/octet-stream": {}}}},
)
async def download_file(session_id: str, path: str, ctx: Ctx, user_id: OwnerQuery = None) -> FileResponse:
    """Download a file of the workspace (e.g. one Claude wrote, or handed back with send_file)."""
    conv = await ctx.session(session_id, user_id)
    root = ctx.agent.workspaces.root(conv.key)

    def find() -> Path:
        target = confined(root.resolve(), path)
        if target.is_dir():
            raise ApiError(400, "invalid_path", f"path: {path!r} is a directory; list it with GET .../files?dir=")
        if not target.is_file():
            raise ApiError(404, "not_found", f"path: no file {path!r} in the workspace")
        return target

    target = await asyncio.to_thread(find)
    return FileResponse(target, filename=target.name, headers={"X-Content-Type-Options": "nosniff"})
