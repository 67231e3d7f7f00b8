"""Files users send (photos and documents) as lazy handles: core downloads them once it admits the message.

With a self-hosted Bot API server in ``--local`` mode, ``getFile`` answers with
a path on this machine instead of a download URL; such files are read in a
worker thread (PTB would read them on the event loop). The cloud Bot API hands
bots files of at most 20 MB.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from pathlib import Path
from urllib.parse import urlsplit

from telegram import Bot, File, Message
from telegram.error import TelegramError

from core import FileRefused, IncomingFile
from core.intake import human_size, too_large

log = logging.getLogger(__name__)

CLOUD_LIMIT = 20 * 1024 * 1024  # getFile refuses bigger files on the cloud Bot API


def files_in(message: Message, bot: Bot, *, local_mode: bool = False) -> list[IncomingFile]:
    """The photo (largest size) and/or document attached to ``message``, not downloaded."""
    found: list[IncomingFile] = []
    platform_limit = None if local_mode else CLOUD_LIMIT
    if message.photo:
        photo = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        name = f"photo_{photo.file_unique_id}.jpg"
        found.append(_handle(bot, photo.file_id, name, "image/jpeg", photo.file_size, platform_limit))
    document = message.document
    if document is not None:
        name = document.file_name or f"document_{document.file_unique_id}"
        mime = document.mime_type or mimetypes.guess_type(name)[0]
        found.append(_handle(bot, document.file_id, name, mime, document.file_size, platform_limit))
    return found


def _handle(
    bot: Bot, file_id: str, name: str, mime: str | None, size: int | None, platform_limit: int | None
) -> IncomingFile:
    async def fetch(limit: int) -> bytes:
        if platform_limit is not None and size is not None and size > platform_limit:
            raise FileRefused(
                f"{name} is {human_size(size)}; Telegram hands bots files of at most {human_size(platform_limit)}"
            )
        return await download(bot, file_id, name, limit)

    return IncomingFile(name=name, mime_type=mime, size=size, fetch=fetch)


def _not_downloadable(name: str, why: str) -> FileRefused:
    return FileRefused(f"{name} could not be downloaded from Telegram ({why})")


def _read_local(path: Path, name: str, limit: int) -> bytes:
    """Blocking: a file the local Bot API server stored on this machine."""
    size = path.stat().st_size
    if size > limit:
        raise too_large(name, size, limit)
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


async def download(bot: Bot, file_id: str, name: str, limit: int) -> bytes:
    """The file's bytes; :class:`FileRefused` when it is too large or cannot be fetched."""
    try:
        tg_file = await bot.get_file(file_id)
        if tg_file.file_size is not None and tg_file.file_size > limit:
            raise too_large(name, tg_file.file_size, limit)
        data = await _fetch(tg_file, name, limit)
    except TelegramError as exc:
        log.warning("could not download %s: %s", name, exc)
        raise _not_downloadable(name, exc.message) from exc
    if len(data) > limit:
        raise too_large(name, len(data), limit)
    return data
