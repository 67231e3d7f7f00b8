"""Files both ways: photos and documents into the workspace, the agent's files back as documents."""

from __future__ import annotations

import base64
import struct
import zlib

from core import ConversationKey
from tests.fakes.anthropic_api import FakeAnthropicAPI, ToolCall

from .conftest import BotFactory
from .fake_bot_api import FakeBotAPI
from .people import ADA, ADA_DM, MENTION, TEAM

ADA_KEY = ConversationKey("telegram", "42")


def tiny_png(width: int = 2, height: int = 2) -> bytes:
    """A valid RGB PNG, built with the standard library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x80\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


async def test_a_photo_reaches_the_workspace_and_the_model_sees_it(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot()
    png = tiny_png()
    small = bot_api.add_file(b"thumbnail", "photos/thumb.jpg")
    large = bot_api.add_file(png, "photos/large.jpg")
    photo = [
        {"file_id": small, "file_unique_id": "thumb1", "width": 1, "height": 1, "file_size": 9},
        {"file_id": large, "file_unique_id": "big1", "width": 2, "height": 2, "file_size": len(png)},
    ]
    bot_api.say(ADA_DM, ADA, None, photo=photo, caption="what is in this picture?")
    await bot_api.wait_for(lambda: bot_api.texts(42), what="the reply")
    saved = bot.agent.workspaces.root(ADA_KEY) / "uploads" / "photo_big1.jpg"
    assert saved.read_bytes() == png  # the largest size, downloaded through getFile + the file URL
    [image] = fake_api.requests[-1].images()
    assert image["source"]["data"] == base64.b64encode(png).decode()
    assert image["source"]["media_type"] == "image/png"  # what the bytes are, whatever the name says
    [text] = [t for t in fake_api.requests[-1].user_texts() if "what is in this picture?" in t]
    assert "uploads/photo_big1.jpg" in text


async def test_a_document_lands_in_the_workspace(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot()
    file_id = bot_api.add_file(b"line one\nline two\n", "documents/file_3.txt")
    document = {
        "file_id": file_id,
        "file_unique_id": "doc1",
        "file_name": "notes.txt",
        "mime_type": "text/plain",
        "file_size": 18,
    }
    bot_api.say(TEAM, ADA, None, document=document, caption=f"{MENTION} summarize this")
    await bot_api.wait_for(lambda: [t for t in bot_api.texts(TEAM["id"]) if "summarize this" in t])
    root = bot.agent.workspaces.root(ConversationKey("telegram", f"chat{TEAM['id']}"))
    assert (root / "uploads" / "notes.txt").read_bytes() == b"line one\nline two\n"
    assert "uploads/notes.txt" in fake_api.requests[-1].last_user_text()
    assert not fake_api.requests[-1].images()


async def test_a_file_over_the_limit_gets_a_clear_reply_and_nothing_runs(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    await make_bot(settings={"max_upload_mb": 1 / 1024})
    file_id = bot_api.add_file(b"x" * 5000, "documents/big.bin")
    document = {"file_id": file_id, "file_unique_id": "big", "file_name": "big.bin", "file_size": 5000}
    bot_api.say(ADA_DM, ADA, None, document=document, caption="take this")
    # the size Telegram reports can be missing: the downloaded size is checked as well
    unsized = bot_api.add_file(b"y" * 5000, "documents/unsized.bin")
    bot_api.say(ADA_DM, ADA, None, document={"file_id": unsized, "file_unique_id": "u2", "file_name": "unsized.bin"})
    replies = await bot_api.wait_for(lambda: len(bot_api.texts(42)) == 2 and bot_api.texts(42), what="two refusals")
    assert "big.bin" in replies[0] and "4.9 KB" in replies[0] and "limit is 1 KB" in replies[0]
    assert "unsized.bin" in replies[1] and "Nothing was sent to Claude" in replies[1]
    assert len(bot_api.calls_of("getFile")) == 1  # the announced size was enough to refuse the first
    assert not fake_api.requests


async def test_files_the_agent_hands_back_arrive_as_documents(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot()
    root = bot.agent.workspaces.root(ADA_KEY)
    root.mkdir(parents=True)
    (root / "report.txt").write_text("numbers: 1 2 3\n")
    fake_api.enqueue(ToolCall("mcp__ccbridge__send_file", {"path": "report.txt", "caption": "the **report**"}))
    bot_api.say(ADA_DM, ADA, "send me the report")
    [doc] = await bot_api.wait_for(lambda: bot_api.documents, what="the document")
    assert (doc.chat_id, doc.filename, doc.data, doc.caption) == (42, "report.txt", b"numbers: 1 2 3\n", "the report")
    await bot_api.wait_for(lambda: [t for t in bot_api.texts(42) if "report.txt was sent" in t], what="the reply")
