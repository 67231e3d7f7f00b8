"""Projects: idle worktrees are cleaned up without losing work or hitting a turn; /diff as a private file."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core import Agent, ConversationKey, Sections, UserRef
from core.commands import DIFF_INLINE_CHARS, Command, CommandContext
from core.dispatcher import Dispatcher
from tests.core.test_projects import CHANNEL, say
from tests.fakes.anthropic_api import FakeAnthropicAPI, Text, ToolCall
from tests.helpers import eventually


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, check=True).stdout


async def make_idle(agent: Agent, key: ConversationKey) -> Path:
    conv = await agent.conversations.get(key)
    assert conv is not None
    conv.last_active_at = time.time() - 30 * 86400
    await agent.store.put(conv)
    return Path(conv.metadata["root"])


async def diff_of(d: Dispatcher, thread: str) -> Any:
    return await d.commands.answer(
        CommandContext(ConversationKey("chat", CHANNEL, thread), UserRef("alice")), Command("diff", "")
    )


async def test_cleanup_saves_uncommitted_work_on_the_branch_and_the_next_turn_has_it_back(
    project_sections: Sections, fake_api: FakeAnthropicAPI, payments: Path
) -> None:
    (payments / ".gitignore").write_text("*.log\n")
    git(payments, "add", ".gitignore")
    git(payments, "commit", "-qm", "ignore logs")
    fake_api.rules["work"] = [
        ToolCall("Write", {"file_path": "notes.md", "content": "new work\n"}),
        ToolCall("Write", {"file_path": "README.md", "content": "payments, edited\n"}),
        ToolCall("Write", {"file_path": "build.log", "content": "noise\n"}),
    ]
    async with Agent(project_sections) as agent:
        d = Dispatcher(agent)
        await say(d, "work", "t1")
        key = ConversationKey("chat", CHANNEL, "t1")
        root = await make_idle(agent, key)
        assert (root / "notes.md").exists() and (root / "build.log").exists()
        assert await agent.clean_worktrees() == 1
        assert not root.exists()
        branch = (await agent.conversations.get(key)).metadata["branch"]  # type: ignore[union-attr]
        saved = git(payments, "log", "-1", "--format=%an <%ae>|%B", branch)
        assert saved.startswith("ccbridge <") and "idle worktree" in saved
        files = git(payments, "show", "--name-only", "--format=", branch).split()
        assert sorted(files) == ["README.md", "notes.md"]  # build.log is ignored (.gitignore)
        swept = (await say(d, "/diff", "t1"))[0]  # reviewed after the sweep, before anyone writes again
        assert "+new work" in swept and "+payments, edited" in swept and not root.exists()
        await say(d, "back again", "t1")
        assert (root / "notes.md").read_text() == "new work\n"
        diff = (await say(d, "/diff", "t1"))[0]
        assert "+new work" in diff and "+payments, edited" in diff


async def test_cleanup_keeps_a_worktree_whose_work_cannot_be_saved(
    project_sections: Sections, fake_api: FakeAnthropicAPI, payments: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake_api.rules["work"] = [ToolCall("Write", {"file_path": "notes.md", "content": "precious\n"})]
    async with Agent(project_sections) as agent:
        d = Dispatcher(agent)
        await say(d, "work", "t1")
        root = await make_idle(agent, ConversationKey("chat", CHANNEL, "t1"))
        gitdir = Path(git(root, "rev-parse", "--absolute-git-dir").strip())
        (gitdir / "index.lock").write_text("")  # git add fails: the index is locked
        with caplog.at_level(logging.WARNING, logger="core.projects"):
            assert await agent.clean_worktrees() == 0
        assert (root / "notes.md").read_text() == "precious\n"
        assert any("kept" in r.getMessage() for r in caplog.records)


async def test_a_turn_starting_during_a_sweep_keeps_its_worktree(
    project_sections: Sections, fake_api: FakeAnthropicAPI, payments: Path
) -> None:
    fake_api.rules["slow"] = [Text("thinking it over", chunks=4, delay=0.5)]
    async with Agent(project_sections) as agent:
        d = Dispatcher(agent)
        await say(d, "hi", "t1")
        key = ConversationKey("chat", CHANNEL, "t1")
        root = await make_idle(agent, key)
        listing = agent.store.list
        turn: list[asyncio.Task[list[str]]] = []

        async def list_then_start_a_turn(*args: Any, **kwargs: Any) -> Any:
            found = await listing(*args, **kwargs)  # the sweep's view: t1 idle for a month
            turn.append(asyncio.create_task(say(d, "slow", "t1")))
            await eventually(  # the turn is running, in its worktree
                lambda: any(r.last_user_text().endswith("slow") for r in fake_api.requests), what="the slow turn"
            )
            return found

        agent.store.list = list_then_start_a_turn  # type: ignore[method-assign]
        assert await agent.clean_worktrees() == 0
        assert (root / "README.md").exists()
        assert "thinking it over" in (await turn[0])[-1]


async def test_a_long_diff_is_a_private_file_of_its_own_conversation(
    project_sections: Sections, fake_api: FakeAnthropicAPI, payments: Path
) -> None:
    big = "".join(f"line {i}\n" for i in range(DIFF_INLINE_CHARS // 5))
    fake_api.rules["write big"] = [ToolCall("Write", {"file_path": "big.txt", "content": big})]
    async with Agent(project_sections) as agent:
        d = Dispatcher(agent)
        await asyncio.gather(say(d, "write big", "t1"), say(d, "write big", "t2"))
        one, two = await diff_of(d, "t1"), await diff_of(d, "t2")
        assert one.file is not None and two.file is not None and one.file != two.file
        assert "attached file" in one.text and "+line 1" in one.file.read_text()
        for path in (one.file, two.file):
            assert not path.is_relative_to(payments.parent)  # not next to (or in) the repository
            assert path.stat().st_mode & 0o077 == 0 and path.parent.stat().st_mode & 0o077 == 0
        assert "attached file" in (await say(d, "/diff", "t1"))[0]  # and through the chat


async def test_a_diff_that_cannot_be_written_says_so(
    project_sections: Sections, fake_api: FakeAnthropicAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = "x\n" * DIFF_INLINE_CHARS
    fake_api.rules["write big"] = [ToolCall("Write", {"file_path": "big.txt", "content": big})]
    async with Agent(project_sections) as agent:
        d = Dispatcher(agent)
        await say(d, "write big", "t1")

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr("core.commands._write_private", refuse)
        answer = await diff_of(d, "t1")
        assert answer.file is None and "could not write the diff" in answer.text.lower()
        assert "Permission denied" in answer.text


async def test_shared_mode_diff_shows_the_checkout_s_changes_in_every_conversation(
    make_sections: Callable[..., Sections], fake_api: FakeAnthropicAPI, payments: Path
) -> None:
    sections = make_sections(
        projects={"payments": {"path": str(payments), "places": [f"chat:{CHANNEL}"], "mode": "shared"}}
    )
    fake_api.rules["write"] = [ToolCall("Write", {"file_path": "shared.md", "content": "together\n"})]
    big = "y\n" * DIFF_INLINE_CHARS
    fake_api.rules["big"] = [ToolCall("Write", {"file_path": "big.txt", "content": big})]
    async with Agent(sections) as agent:
        d = Dispatcher(agent)
        await say(d, "write", "t1")
        await say(d, "hi", "t2")
        assert (payments / "shared.md").read_text() == "together\n"  # the checkout itself
        assert "+together" in (await say(d, "/diff", "t2"))[0]  # another conversation sees it too
        status = (await say(d, "/status", "t1"))[0]
        assert "shared checkout" in status
        await say(d, "big", "t1")
        one, two = await diff_of(d, "t1"), await diff_of(d, "t2")
        assert one.file is not None and two.file is not None and one.file != two.file  # no overwriting
        assert one.file.read_text() == two.file.read_text()
