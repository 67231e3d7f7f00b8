"""Attachments of incoming messages as lazy handles: core downloads them only once it admits the message.

A file is refused (with the reason, before anything is downloaded) when it is
larger than the smaller of ``workspace.max_upload_mb`` and the Discord upload
limit where it was sent (the server's boost level; 10 MiB in DMs).
"""

from __future__ import annotations

import logging

import discord

from core import FileRefused, IncomingFile
from core.intake import too_large

from .errors import NETWORK_ERRORS
from .sink import DEFAULT_UPLOAD_LIMIT

log = logging.getLogger(__name__)


def upload_limit(guild: discord.Guild | None) -> int:
    """The largest file Discord takes in ``guild`` (a DM: the default 10 MiB)."""
    return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT


def incoming(attachment: discord.Attachment, platform_limit: int) -> IncomingFile:
    async def fetch(limit: int) -> bytes:
        cap = min(limit, platform_limit)
        if attachment.size > cap:
            raise too_large(attachment.filename, attachment.size, cap)
        try:
            return await attachment.read()
        except (discord.DiscordException, *NETWORK_ERRORS) as exc:
            log.warning("downloading %s failed: %r", attachment.filename, exc)
            raise FileRefused(f"{attachment.filename} could not be downloaded ({type(exc).__name__})") from exc

    return IncomingFile(name=attachment.filename, mime_type=attachment.content_type, size=attachment.size, fetch=fetch)


def incoming_files(message: discord.Message) -> list[IncomingFile]:
    limit = upload_limit(message.guild)
    return [incoming(a, limit) for a in message.attachments]
