"""File intake: what a platform's files become in the workspace."""

from __future__ import annotations

from pathlib import Path

from core import ConversationKey
from core.intake import FileIntake, IncomingFile, human_size, size_over_limit
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


def test_sizes_for_people_and_a_size_just_over_its_limit_still_reads_as_more() -> None:
    assert [human_size(n) for n in (512, 5000, 20 * 1024 * 1024, 100 * 1024)] == [
        "512 bytes",
        "4.9 KB",
        "20 MB",
        "100 KB",
    ]
    mib = 1024 * 1024
    assert size_over_limit(10 * mib + 10, 10 * mib) == ("10.00001 MB", "10 MB")
    assert size_over_limit(25 * mib, 10 * mib) == ("25 MB", "10 MB")
    assert size_over_limit(10 * mib + 1, 10 * mib) == ("10.000001 MB", "10 MB")
    assert size_over_limit(2**40 + 1, 2**40) == ("1,099,511,627,777 bytes", "1,099,511,627,776 bytes")
