"""File intake: the files of an incoming message, taken only once the dispatcher has admitted it.

Adapters never download: they describe each file as an :class:`IncomingFile`
(name, type, size as the platform reports them, and an async ``fetch``). The
dispatcher decides first (allowlist, routing, commands); then :class:`FileIntake`
checks each file against ``workspace.max_upload_mb`` (before downloading when
the size is known, and again on the bytes), saves it in the conversation's
``uploads/`` under a safe, unique name, and returns :class:`Attachment` s.
Any refused file refuses the message's files as a whole: the user is told
which and why, and nothing is sent to Claude, so they can send it again.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from .attachments import IMAGE_TYPES, Attachment, sniff_image
from .errors import CCBridgeError, FileRefused
from .keys import ConversationKey
from .workspace import Workspaces

log = logging.getLogger(__name__)

#: ``fetch(limit)`` downloads the file; it may stop (raise :class:`FileRefused`) past ``limit`` bytes.
Fetch = Callable[[int], Awaitable[bytes]]


@dataclass(frozen=True)
class IncomingFile:
    """A file attached to an incoming message, not downloaded yet."""

    name: str
    mime_type: str | None
    size: int | None  # as the platform reports it; None when unknown
    fetch: Fetch = field(repr=False, compare=False)


def human_size(n: float, digits: int = 1) -> str:
    """A byte count for people: '512 bytes', '4.9 KB', '20 MB'."""
    if n < 1024:
        return f"{n:.0f} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            return f"{n:.{digits}f}".rstrip("0").removesuffix(".") + f" {unit}"
    raise AssertionError("unreachable")


def size_over_limit(size: int, limit: int) -> tuple[str, str]:
    """``size`` and ``limit`` for people, precise enough to tell apart ('10.00001 MB', not '10 MB' twice)."""
    for digits in range(1, 7):
        shown = human_size(size, digits), human_size(limit, digits)
        if shown[0] != shown[1]:
            return shown
    return f"{size:,} bytes", f"{limit:,} bytes"


def too_large(name: str, size: int, limit: int) -> FileRefused:
    shown, most = size_over_limit(size, limit)
    return FileRefused(f"{name} is {shown} and the limit is {most}")


@dataclass
class IntakeResult:
    attachments: list[Attachment]
    problems: list[str]  # one line per refused file, for the user

    @property
    def refused(self) -> bool:
        return bool(self.problems)

    def notice(self) -> str:
        lines = "\n".join(f"• {p}" for p in self.problems)
        return f"⚠️ I couldn't take your file(s):\n{lines}\nNothing was sent to Claude."


class FileIntake:
    def __init__(self, workspaces: Workspaces, max_bytes: int) -> None:
        self.workspaces = workspaces
        self.max_bytes = max_bytes

    async def take(self, key: ConversationKey, files: list[IncomingFile], folder: Path | None = None) -> IntakeResult:
        """Download and save every file (into ``folder``, default the workspace's uploads); any refusal
        refuses them all (saved ones are kept on disk)."""
        attachments: list[Attachment] = []
        problems: list[str] = []
        for incoming in files:
            try:
                attachments.append(await self._take_one(key, incoming, folder))
            except FileRefused as exc:
                problems.append(str(exc))
            except CCBridgeError as exc:
                log.warning("could not save %s in %s: %s", incoming.name, key, exc)
                problems.append(f"{incoming.name} could not be saved ({exc})")
            except Exception as exc:  # a platform SDK error: reported, logged, never fatal
                log.warning("could not download %s in %s: %r", incoming.name, key, exc)
                problems.append(f"{incoming.name} could not be downloaded ({type(exc).__name__})")
        return IntakeResult([] if problems else attachments, problems)

    async def _take_one(self, key: ConversationKey, incoming: IncomingFile, folder: Path | None) -> Attachment:
        if incoming.size is not None and incoming.size > self.max_bytes:
            raise too_large(incoming.name, incoming.size, self.max_bytes)
        data = await incoming.fetch(self.max_bytes)
        if len(data) > self.max_bytes:
            raise too_large(incoming.name, len(data), self.max_bytes)
        mime = sniff_image(data, incoming.mime_type)
        name = incoming.name
        if mime in IMAGE_TYPES and not Path(name).suffix:  # an image the platform named without a suffix
            name += mimetypes.guess_extension(mime) or ""
        path = await self.workspaces.save_upload(key, name, data, folder)
        return Attachment(path, path.name, mime)
