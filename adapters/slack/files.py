"""Files shared with the bot: downloaded with the bot token into the conversation's workspace.

Slack serves ``url_private(_download)`` only with ``Authorization: Bearer
<bot token>`` (scope ``files:read``); without it answers an HTML sign-in page,
which is reported instead of being saved as the file. The token is only ever
sent to Slack's own hosts (or the configured ``base_url`` host).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_SKIPPED_MODES = {"tombstone", "hidden_by_limit", "external"}


class FileRejected(Exception):
    """A shared file could not be taken; the message says why, for the user."""


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


def human_size(n: int) -> str:
    """A byte count for people: '512 bytes', '4.9 KB', '20 MB'."""
    if n < 1024:
        return f"{n} bytes"
    for unit, scale in (("KB", 1024), ("MB", 1024**2), ("GB", 1024**3)):
        if n < scale * 1024 or unit == "GB":
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"  # pragma: no cover


class FileFetcher:
    def __init__(self, token: str, *, max_bytes: int, extra_hosts: set[str] | None = None) -> None:
        self.token = token
        self.max_bytes = max_bytes
        self.extra_hosts = {h.lower() for h in (extra_hosts or set())}
        self._session: aiohttp.ClientSession | None = None

    def trusted(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host in self.extra_hosts:
            return True
        return parts.scheme == "https" and (host == "slack.com" or host.endswith(".slack.com"))

    def check(self, file: SlackFile) -> None:
        """Reject what can't be fetched before downloading anything."""
        if file.mode in _SKIPPED_MODES:
            raise FileRejected(f"{file.name} is not available to the bot ({file.mode.replace('_', ' ')})")
        if not file.url:
            raise FileRejected(f"{file.name} can't be downloaded (Slack did not share its content with the bot)")
        if file.size is not None and file.size > self.max_bytes:
            raise FileRejected(
                f"{file.name} is {human_size(file.size)}; "
                f"the limit is {human_size(self.max_bytes)}, so it was not saved"
            )
        if not self.trusted(file.url):
            raise FileRejected(f"{file.name} is not hosted by Slack; not downloaded")

    async def fetch(self, file: SlackFile) -> bytes:
        self.check(file)
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
                    if len(data) > self.max_bytes:
                        raise FileRejected(
                            f"{file.name} is larger than {human_size(self.max_bytes)}, so it was not saved"
                        )
                return bytes(data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("downloading %s failed: %r", file.name, exc)
            raise FileRejected(f"{file.name} could not be downloaded ({exc.__class__.__name__})") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
