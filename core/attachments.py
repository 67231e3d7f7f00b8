"""Files a user sent, saved inside the conversation's workspace, as the agent receives them."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


@dataclass
class Attachment:
    """A file the user sent, already saved inside the conversation's workspace."""

    path: Path
    name: str
    mime_type: str | None = None

    @property
    def is_image(self) -> bool:
        mime = self.mime_type or mimetypes.guess_type(self.name)[0]
        return mime in IMAGE_TYPES


def sniff_image(data: bytes, declared: str | None) -> str | None:
    """The image type the bytes really are (the model rejects a mismatched media type), else ``declared``."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return declared
