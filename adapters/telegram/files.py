"""Files users send: photos and documents, downloaded with PTB into the conversation's workspace.

With a self-hosted Bot API server in ``--local`` mode, ``getFile`` answers with
a path on this machine instead of a download URL; such files are read in a
worker thread (PTB would read them on the event loop).
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from telegram import Bot, File, Message
from telegram.error import TelegramError

from core import Attachment, CCBridgeError, ConversationKey
from core.workspace import Workspaces

log = logging.getLogger(__name__)


class UploadRejected(CCBridgeError):
    """A file the user sent could not be taken (too large, not downloadable); the text says why."""


@dataclass(frozen=True)
class IncomingFile:
    file_id: str
    name: str
    mime_type: str | None
    size: int | None


def files_in(message: Message) -> list[IncomingFile]:
    """The photo (largest size) and/or document attached to ``message``."""
    found: list[IncomingFile] = []
    if message.photo:
        photo = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        found.append(IncomingFile(photo.file_id, f"photo_{photo.file_unique_id}.jpg", "image/jpeg", photo.file_size))
    document = message.document
    if document is not None:
        name = document.file_name or f"document_{document.file_unique_id}"
        mime = document.mime_type or mimetypes.guess_type(name)[0]
        found.append(IncomingFile(document.file_id, name, mime, document.file_size))
    return found


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_image(data: bytes, declared: str | None) -> str | None:
    """The image type the bytes really are (the model rejects a mismatched media type), else ``declared``."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return declared


def human_size(n: float) -> str:
    for unit in ("bytes", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f}".rstrip("0").rstrip(".") + f" {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _too_large(name: str, size: int, limit: int) -> UploadRejected:
    return UploadRejected(
        f"⚠️ I couldn't take {name}: it is {human_size(size)} and the limit is {human_size(limit)}. "
        "Nothing was sent to Claude."
    )


def _not_downloadable(name: str, why: str) -> UploadRejected:
    return UploadRejected(f"⚠️ I couldn't download {name} from Telegram ({why}). Nothing was sent to Claude.")


def _read_local(path: Path, name: str, limit: int) -> bytes:
    """Blocking: a file the local Bot API server stored on this machine."""
    size = path.stat().st_size
    if size > limit:
        raise _too_large(name, size, limit)
    return path.read_bytes()


async def _fetch(tg_file: File, name: str, limit: int) -> bytes:
    file_path = tg_file.file_path
    if not file_path:  # e.g. a file the Bot API server won't hand out
        raise _not_downloadable(name, "Telegram gave no download path for it")
    if urlsplit(file_path).scheme not in ("http", "https"):
        # PTB keeps a getFile path that exists on this machine (local mode) instead of making it a URL
        try:
            return await asyncio.to_thread(_read_local, Path(file_path), name, limit)
        except OSError as exc:
            log.warning("could not read %s at %s: %s", name, file_path, exc)
            raise _not_downloadable(name, "the local Bot API server's copy could not be read") from exc
    try:
        return bytes(await tg_file.download_as_bytearray())
    except RuntimeError as exc:  # PTB: "No `file_path` available for this file"
        raise _not_downloadable(name, str(exc)) from exc


async def download(bot: Bot, incoming: IncomingFile, limit: int) -> bytes:
    """The file's bytes; :class:`UploadRejected` when it is too large or cannot be fetched."""
    if incoming.size is not None and incoming.size > limit:
        raise _too_large(incoming.name, incoming.size, limit)
    try:
        tg_file = await bot.get_file(incoming.file_id)
        if tg_file.file_size is not None and tg_file.file_size > limit:
            raise _too_large(incoming.name, tg_file.file_size, limit)
        data = await _fetch(tg_file, incoming.name, limit)
    except TelegramError as exc:
        log.warning("could not download %s: %s", incoming.name, exc)
        raise _not_downloadable(incoming.name, exc.message) from exc
    if len(data) > limit:
        raise _too_large(incoming.name, len(data), limit)
    return data


async def save_files(
    bot: Bot, workspaces: Workspaces, key: ConversationKey, files: list[IncomingFile], limit: int
) -> list[Attachment]:
    """Download every file into the conversation's uploads directory."""
    attachments = []
    for incoming in files:
        data = await download(bot, incoming, limit)
        path = await workspaces.save_upload(key, incoming.name, data)
        attachments.append(Attachment(path, path.name, sniff_image(data, incoming.mime_type)))
    return attachments
