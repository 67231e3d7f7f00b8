"""File intake: what a platform's files become in the workspace."""

from __future__ import annotations

from pathlib import Path

from core import ConversationKey
from core.intake import FileIntake, IncomingFile
from core.workspace import Workspaces

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def incoming(name: str, data: bytes, mime: str | None = None) -> IncomingFile:
    async def fetch(limit: int) -> bytes:
        return data

    return IncomingFile(name, mime, len(data), fetch)


async def test_an_image_named_without_a_suffix_gets_its_types_and_other_files_keep_their_names(tmp_path: Path) -> None:
    intake = FileIntake(Workspaces(tmp_path / "ws"), 1024 * 1024)
    key = ConversationKey("feishu", "ou_1")
    taken = await intake.take(key, [incoming("image_k1", PNG), incoming("notes", b"plain text", "text/plain")])
    assert not taken.refused
    image, notes = taken.attachments
    assert (image.name, image.is_image) == ("image_k1.png", True)  # Claude Code reads it as the PNG it is
    assert (notes.name, notes.is_image) == ("notes", False)
    assert image.path.read_bytes() == PNG and notes.path.read_bytes() == b"plain text"
