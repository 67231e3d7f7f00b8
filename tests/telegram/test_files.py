"""Files both ways: photos and documents into the workspace, the agent's files back as documents."""

from __future__ import annotations

import base64
import struct
import threading
import zlib
from pathlib import Path

from core import ConversationKey
from tests.fakes.anthropic_api import FakeAnthropicAPI, ToolCall

from .conftest import BotFactory
from .fake_bot_api import FakeBotAPI
from .people import ADA, ADA_DM, BOB, BOB_DM, EVE, EVE_DM, MENTION, TEAM

ADA_KEY = ConversationKey("telegram", "42")


def has_text(api: FakeBotAPI, chat_id: int, needle: str):
    return lambda: [t for t in api.texts(chat_id) if needle in t]


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


def document(file_id: str, name: str, size: int | None = None) -> dict:
    doc = {"file_id": file_id, "file_unique_id": f"u-{file_id}", "file_name": name}
    if size is not None:
        doc["file_size"] = size
    return doc


async def test_a_slow_download_holds_up_neither_other_chats_nor_the_order_of_its_own(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot()
    file_id = bot_api.add_file(b"a large file\n", "documents/slow.txt")
    release = bot_api.hold("documents/slow.txt")
    bot_api.say(ADA_DM, ADA, None, caption="read this", document=document(file_id, "slow.txt", 13))
    bot_api.say(ADA_DM, ADA, "and one more thing")
    await bot_api.wait_for(lambda: bot_api.downloads_of("documents/slow.txt"), what="the download to start")
    bot_api.say(BOB_DM, BOB, "/status")  # another chat, while Ada's file is still downloading
    await bot_api.wait_for(lambda: bot_api.texts(BOB["id"]), what="Bob's answer")
    assert bot_api.texts(42) == [] and not fake_api.requests  # Ada's download is still under way
    release.set()
    await bot_api.wait_for(has_text(bot_api, 42, "echo: and one more thing"), what="Ada's second answer")
    assert (bot.agent.workspaces.root(ADA_KEY) / "uploads" / "slow.txt").read_bytes() == b"a large file\n"
    asked = [r.last_user_text() for r in fake_api.requests]
    assert "read this" in asked[0] and asked[1] == "and one more thing"  # in the order Ada sent them


async def test_local_mode_reads_the_servers_copy_off_the_event_loop(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, tmp_path: Path, monkeypatch
) -> None:
    stored = tmp_path / "bot-api-server" / "documents" / "file_7.txt"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"from the local server\n")
    file_id = bot_api.add_file(b"from the local server\n", str(stored))  # --local: getFile gives a local path
    readers: list[threading.Thread] = []
    read_bytes = Path.read_bytes

    def spy(self: Path) -> bytes:
        if self == stored:
            readers.append(threading.current_thread())
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", spy)
    bot = await make_bot(settings={"local_mode": True})
    bot_api.say(ADA_DM, ADA, None, caption="local file", document=document(file_id, "report.txt"))
    await bot_api.wait_for(lambda: bot_api.texts(42), what="the reply")
    assert (bot.agent.workspaces.root(ADA_KEY) / "uploads" / "report.txt").read_bytes() == b"from the local server\n"
    assert not bot_api.downloads_of(str(stored).lstrip("/"))  # read from disk, not over HTTP
    assert readers and threading.main_thread() not in readers  # never on the event loop's thread


async def test_a_file_without_a_download_path_gets_a_clear_reply(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    await make_bot()
    file_id = bot_api.add_file(b"unreachable", None)  # getFile answers without a file_path
    bot_api.say(ADA_DM, ADA, None, caption="take this", document=document(file_id, "ghost.txt", 11))
    [reply] = await bot_api.wait_for(lambda: bot_api.texts(42), what="the refusal")
    assert "ghost.txt" in reply and "Nothing was sent to Claude" in reply
    assert not fake_api.requests


async def test_a_photo_album_is_one_message_with_every_photo(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot(settings={"album_window": 0.5})
    pngs = [tiny_png(2, 2), tiny_png(3, 3)]
    ids = [bot_api.add_file(png, f"photos/album_{i}.jpg") for i, png in enumerate(pngs)]
    for i, (file_id, png) in enumerate(zip(ids, pngs, strict=True)):
        photo = [{"file_id": file_id, "file_unique_id": f"al{i}", "width": 3, "height": 3, "file_size": len(png)}]
        caption = "compare these two" if i == 0 else None  # Telegram captions the first item only
        bot_api.say(ADA_DM, ADA, None, photo=photo, caption=caption, media_group_id="album-1")
    await bot_api.wait_for(lambda: bot_api.texts(42), what="the reply")
    uploads = bot.agent.workspaces.root(ADA_KEY) / "uploads"
    assert sorted(p.read_bytes() for p in uploads.iterdir()) == sorted(pngs)
    [request] = fake_api.requests  # one turn for the album
    assert len(request.images()) == 2
    [text] = [t for t in request.user_texts() if "compare these two" in t]
    assert "uploads/photo_al0.jpg" in text and "uploads/photo_al1.jpg" in text
    assert len(bot_api.texts(42)) == 1


async def test_an_album_shows_typing_as_it_opens_not_once_its_window_closed(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot(settings={"album_window": 2.0}, access={"allow_all": False, "allowlist": ["telegram:42"]})
    file_id = bot_api.add_file(tiny_png(2, 2), "photos/one.jpg")

    def album(chat: dict[str, object], sender: dict[str, object], group: str) -> None:
        photo = [{"file_id": file_id, "file_unique_id": group, "width": 2, "height": 2}]
        bot_api.say(chat, sender, None, photo=photo, caption="look", media_group_id=group)

    album(EVE_DM, EVE, "from-eve")  # not allowed: shown nothing
    album(ADA_DM, ADA, "from-ada")
    await bot_api.wait_for(
        lambda: [c for c in bot_api.calls_of("sendChatAction") if c.params.get("chat_id") == ADA_DM["id"]],
        what="ada's sign of life",
    )
    assert len(bot.adapter.albums) >= 1 and not fake_api.requests  # the album is still gathering its items
    await bot_api.wait_for(lambda: bot_api.texts(ADA_DM["id"]), what="the reply")
    assert not [c for c in bot_api.calls_of("sendChatAction") if c.params.get("chat_id") == EVE_DM["id"]]


async def test_in_groups_album_items_after_the_addressed_one_belong_to_it(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI
) -> None:
    bot = await make_bot(settings={"album_window": 0.5})
    ids = [bot_api.add_file(tiny_png(2, 2 + i), f"photos/team_{i}.jpg") for i in range(3)]

    def item(i: int, group: str, caption: str | None = None) -> None:
        photo = [{"file_id": ids[i], "file_unique_id": f"tm{i}", "width": 2, "height": 2 + i}]
        bot_api.say(TEAM, ADA, None, photo=photo, caption=caption, media_group_id=group)

    item(0, "not-for-the-bot", "holiday pictures")  # an album nobody addressed to the bot
    item(1, "for-the-bot", f"{MENTION} which is sharper?")
    item(2, "for-the-bot")  # no caption, no mention: it follows the addressed item
    await bot_api.wait_for(lambda: bot_api.texts(TEAM["id"]), what="the reply")
    [request] = fake_api.requests
    assert len(request.images()) == 2
    [text] = [t for t in request.user_texts() if "which is sharper?" in t]
    assert "photo_tm1.jpg" in text and "photo_tm2.jpg" in text and "tm0" not in text
    uploads = bot.agent.workspaces.root(ConversationKey("telegram", f"chat{TEAM['id']}")) / "uploads"
    assert sorted(p.name for p in uploads.iterdir()) == ["photo_tm1.jpg", "photo_tm2.jpg"]


async def test_a_document_name_with_dot_dot_stays_in_the_uploads_folder(
    make_bot: BotFactory, bot_api: FakeBotAPI, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    bot = await make_bot()
    file_id = bot_api.add_file(b"escape attempt\n", "documents/file_9.txt")
    bot_api.say(ADA_DM, ADA, None, caption="store this", document=document(file_id, "../../x.txt", 15))
    await bot_api.wait_for(lambda: bot_api.texts(42), what="the reply")
    uploads = bot.agent.workspaces.root(ADA_KEY) / "uploads"
    [saved] = [p for p in tmp_path.rglob("*") if p.is_file() and p.read_bytes() == b"escape attempt\n"]
    assert saved.parent == uploads and ".." not in saved.name
    assert f"uploads/{saved.name}" in fake_api.requests[-1].last_user_text()
