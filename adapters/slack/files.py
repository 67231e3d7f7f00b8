"""Files shared with the bot, as lazy handles: downloaded with the bot token once core admits the message.

Slack serves ``url_private(_download)`` only with ``Authorization: Bearer
<bot token>`` (scope ``files:read``); without it answers an HTML sign-in page,
which is reported instead of being saved as the file. The token is only ever
sent to Slack's own hosts (or the configured ``base_url`` host).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from core import FileRefused, IncomingFile
from core.intake import human_size, too_large

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_SKIPPED_MODES = {"tombstone", "hidden_by_limit", "external"}
FileRejected = FileRefused  # the name this module used before core took the files over
InfoLookup = Callable[[str], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class SlackFile:
    id: str
    name: str
    mime_type: str | None
    size: int | None
    url: str | None
    mode: str | None = None

    @classmethod
    def from_event(cls, info: dict[str, object]) -> SlackFile:
        size = info.get("size")
        url = info.get("url_private_download") or info.get("url_private")
        return cls(
            id=str(info.get("id") or ""),
            name=str(info.get("name") or info.get("title") or info.get("id") or "file"),
            mime_type=str(info["mimetype"]) if info.get("mimetype") else None,
            size=int(size) if isinstance(size, (int, float)) else None,
            url=str(url) if url else None,
            mode=str(info["mode"]) if info.get("mode") else None,
        )


class FileFetcher:
    def __init__(self, token: str, *, extra_hosts: set[str] | None = None) -> None:
        self.token = token
        self.extra_hosts = {h.lower() for h in (extra_hosts or set())}
        self._session: aiohttp.ClientSession | None = None

    def trusted(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host in self.extra_hosts:
            return True
        return parts.scheme == "https" and (host == "slack.com" or host.endswith(".slack.com"))

    def incoming(self, info: dict[str, Any], lookup: InfoLookup) -> IncomingFile:
        """A handle for a file of an event; ``lookup`` completes a partial file object (``files.info``)."""
        first = SlackFile.from_event(info)

        async def fetch(limit: int) -> bytes:
            file = first
            if not file.url and file.id:
                file = SlackFile.from_event(await lookup(file.id) or info)
            return await self.fetch(file, limit)

        return IncomingFile(name=first.name, mime_type=first.mime_type, size=first.size, fetch=fetch)

    def check(self, file: SlackFile, limit: int) -> None:
        """Reject what can't be fetched before downloading anything."""
        if file.mode in _SKIPPED_MODES:
            raise FileRejected(f"{file.name} is not available to the bot ({file.mode.replace('_', ' ')})")
        if not file.url:
            raise FileRejected(f"{file.name} can't be downloaded (Slack did not share its content with the bot)")
        if file.size is not None and file.size > limit:
            raise too_large(file.name, file.size, limit)
        if not self.trusted(file.url):
            raise FileRejected(f"{file.name} is not hosted by Slack; not downloaded")

    async def fetch(self, file: SlackFile, limit: int) -> bytes:
        self.check(file, limit)
        assert file.url is not None
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300))
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with self._session.get(file.url, headers=headers) as response:
                if response.status != 200:
                    raise FileRejected(f"{file.name} could not be downloaded (HTTP {response.status})")
                content_type = response.headers.get("Content-Type", "")
                if content_type.startswith("text/html") and not (file.mime_type or "").startswith("text/html"):
                    raise FileRejected(
                        f"{file.name} could not be downloaded: Slack answered with a sign-in page "
                        "(does the app have the files:read scope?)"
                    )
                data = bytearray()
                async for chunk in response.content.iter_chunked(_CHUNK):
                    data.extend(chunk)
                    if len(data) > limit:
                        raise FileRejected(f"{file.name} is larger than {human_size(limit)}, so it was not saved")
                return bytes(data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("downloading %s failed: %r", file.name, exc)
            raise FileRejected(f"{file.name} could not be downloaded ({exc.__class__.__name__})") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
