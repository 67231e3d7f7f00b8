"""Projects: a bound place works on a real repository, each conversation in its own worktree."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from core import Agent, ConfigError, ConversationKey, Sections, UserRef
from core.dispatcher import Dispatcher, IncomingMessage
from core.projects import branch_for
from tests.fakes.anthropic_api import FakeAnthropicAPI, Text, ToolCall
from tests.fakes.recording_sink import RecordingSink

CHANNEL = "C0PAY"


def repo(path: Path) -> Path:
    path.mkdir(parents=True)
    run = lambda *a: subprocess.run(["git", *a], cwd=path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q", "-b", "main")
    run("config", "user.email", "t@example.com")
    run("config", "user.name", "t")
    (path / "README.md").write_text("payments\n")
    run("add", ".")
    run("commit", "-q", "-m", "init")
    return path


def git_log(path: Path, branch: str) -> str:
    return subprocess.run(["git", "log", "--oneline", branch], cwd=path, capture_output=True, text=True).stdout


def files_on(path: Path, branch: str) -> list[str]:
    out = subprocess.run(["git", "ls-tree", "-r", "--name-only", branch], cwd=path, capture_output=True, text=True)
    return out.stdout.split()


def branches(path: Path) -> list[str]:
    out = subprocess.run(["git", "branch", "--format=%(refname:short)"], cwd=path, capture_output=True, text=True)
    return out.stdout.split()


def msg(text: str, thread: str | None = None, user: str = "alice", owner: str = CHANNEL) -> IncomingMessage:
    return IncomingMessage(ConversationKey("chat", owner, thread), UserRef(user), text, RecordingSink())


async def say(
    d: Dispatcher, text: str, thread: str | None = None, user: str = "alice", owner: str = CHANNEL
) -> list[str]:
    m = msg(text, thread, user, owner)
    await d.handle(m)
    return m.reply.visible()  # type: ignore[attr-defined]


async def test_two_threads_work_in_two_worktrees_on_two_branches(
    project_sections: Sections, fake_api: FakeAnthropicAPI, payments: Path
) -> None:
    fake_api.rules["write in one"] = [ToolCall("Write", {"file_path": "notes.md", "content": "one\n"})]
    fake_api.rules["write in two"] = [ToolCall("Write", {"file_path": "notes.md", "content": "two\n"})]
    async with Agent(project_sections) as agent:
        d = Dispatcher(agent)
        await asyncio.gather(say(d, "write in one", "t1"), say(d, "write in two", "t2"))
        one = await agent.conversations.get(ConversationKey("chat", CHANNEL, "t1"))
        two = await agent.conversations.get(ConversationKey("chat", CHANNEL, "t2"))
        assert one and two and one.metadata["project"] == two.metadata["project"] == "payments"
        root1, root2 = Path(one.metadata["root"]), Path(two.metadata["root"])
        assert root1 != root2 and (root1 / "README.md").exists()  # real checkouts of the repository
        assert (root1 / "notes.md").read_text() == "one\n" and (root2 / "notes.md").read_text() == "two\n"
        assert not (payments / "notes.md").exists()  # the main checkout is untouched
        assert not agent.workspaces.root(one.key).exists()  # not the per-chat workspace either
        assert {one.metadata["branch"], two.metadata["branch"]} <= set(branches(payments))
        status = await say(d, "/status", "t1")
        assert f"branch `{branch_for(one.key)}`" in status[0]
        diff = await say(d, "/diff", "t1")
        assert "+one" in diff[0] and "+two" not in diff[0]


async def test_a_write_outside_the_project_is_refused(
    project_sections: Sections, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.md"
    fake_api.rules["escape"] = [ToolCall("Write", {"file_path": str(outside), "content": "x"})]
    async with Agent(project_sections) as agent:
        d = Dispatcher(agent)
        await say(d, "escape", "t1")
        assert not outside.exists()
        result = fake_api.requests[-1].tool_results()[0]
        assert result.get("is_error") and "outside" in str(result.get("content"))


async def test_other_places_keep_their_own_workspace(project_sections: Sections, fake_api: FakeAnthropicAPI) -> None:
    async with Agent(project_sections) as agent:
        d = Dispatcher(agent)
        await say(d, "hello", owner="C0OTHER")
        conv = await agent.conversations.get(ConversationKey("chat", "C0OTHER"))
        assert conv is not None and "project" not in conv.metadata
        assert Path(conv.cwd) == agent.workspaces.root(conv.key)


async def test_idle_worktrees_are_removed_and_their_branches_kept(
    project_sections: Sections, fake_api: FakeAnthropicAPI, payments: Path
) -> None:
    async with Agent(project_sections) as agent:
        d = Dispatcher(agent)
        await say(d, "hi", "old")
        await say(d, "hi", "recent")
        old = await agent.conversations.get(ConversationKey("chat", CHANNEL, "old"))
        assert old is not None
        old.last_active_at = time.time() - 30 * 86400
        await agent.store.put(old)
        assert await agent.clean_worktrees() == 1
        assert not Path(old.metadata["root"]).exists()
        recent = await agent.conversations.get(ConversationKey("chat", CHANNEL, "recent"))
        assert recent is not None and Path(recent.metadata["root"]).exists()
        assert old.metadata["branch"] in branches(payments)  # the branch stays
        await say(d, "back again", "old")  # the next turn brings the worktree back from its branch
        assert Path(old.metadata["root"]).exists()


async def test_a_worktree_left_by_an_earlier_session_is_removed_when_idle_and_resume_brings_it_back(
    project_sections: Sections, fake_api: FakeAnthropicAPI, payments: Path
) -> None:
    fake_api.rules["draft it"] = [ToolCall("Write", {"file_path": "draft.md", "content": "draft\n"})]
    async with Agent(project_sections) as agent:
        d = Dispatcher(agent)
        key = ConversationKey("chat", CHANNEL, "t1")
        await say(d, "draft it", thread="t1")  # session 1, in the thread's worktree (the draft uncommitted)
        first = await agent.conversations.get(key)
        assert first is not None
        worktree, branch = Path(first.metadata["root"]), first.metadata["branch"]
        await say(d, "/project none", user="boss")
        await say(d, "/new", thread="t1")
        await say(d, "hi", thread="t1")  # session 2: the workspace; the worktree stays for /resume
        assert worktree.exists() and await agent.clean_worktrees() == 0  # not idle yet

        conv = await agent.conversations.get(key)
        assert conv is not None
        [note] = conv.metadata["sessions"]
        note["last_active_at"] = time.time() - 30 * 86400  # session 1 idle past the retention
        await agent.store.put(conv)
        assert await agent.clean_worktrees() == 1
        assert not worktree.exists() and branch in branches(payments)
        assert "draft.md" in files_on(payments, branch)  # its uncommitted work was saved on the branch first

        assert "Back in session" in (await say(d, "/resume 1", thread="t1"))[0]
        await say(d, "still there?", thread="t1")
        assert (worktree / "draft.md").read_text() == "draft\n"  # back from the branch


async def test_sessions_and_resume_return_to_an_earlier_session_with_its_memory(
    agent: Agent, fake_api: FakeAnthropicAPI
) -> None:
    d = Dispatcher(agent)
    await say(d, "the password is swordfish", owner="alice")
    await say(d, "/new", owner="alice")
    await say(d, "something else", owner="alice")
    listing = (await say(d, "/sessions", owner="alice"))[0]
    assert "the password is swordfish" in listing and "1." in listing
    assert "Back in session" in (await say(d, "/resume 1", owner="alice"))[0]
    await say(d, "what was the password?", owner="alice")
    assert "swordfish" in str(fake_api.requests[-1].messages)
    assert "something else" not in str(fake_api.requests[-1].messages)


async def test_resume_goes_back_to_where_the_session_worked_after_the_place_was_switched(
    project_sections: Sections, fake_api: FakeAnthropicAPI, payments: Path
) -> None:
    fake_api.rules["write the plan"] = [ToolCall("Write", {"file_path": "plan.md", "content": "plan\n"})]
    fake_api.rules["write the notes"] = [ToolCall("Write", {"file_path": "notes.md", "content": "notes\n"})]
    async with Agent(project_sections) as agent:
        d = Dispatcher(agent)
        key = ConversationKey("chat", CHANNEL, "t1")
        await say(d, "write the plan", thread="t1")  # session 1: in the thread's worktree
        first = await agent.conversations.get(key)
        assert first is not None and first.metadata["project"] == "payments"
        worktree = Path(first.metadata["root"])
        assert (worktree / "plan.md").is_file()
        assert "own workspace" in (await say(d, "/project none", user="boss"))[0]
        await say(d, "/new", thread="t1")
        await say(d, "write the notes", thread="t1")  # session 2: the place's own workspace now
        second = await agent.conversations.get(key)
        assert second is not None and "project" not in second.metadata
        assert (agent.workspaces.root(key) / "notes.md").is_file()

        assert "Back in session" in (await say(d, "/resume 1", thread="t1"))[0]
        fake_api.rules["write more"] = [ToolCall("Write", {"file_path": "more.md", "content": "more\n"})]
        await say(d, "write more", thread="t1")
        assert (worktree / "more.md").is_file()  # back in its worktree, on its branch
        assert not (agent.workspaces.root(key) / "more.md").exists()
        resumed = await agent.conversations.get(key)
        assert resumed is not None and resumed.metadata["branch"] == first.metadata["branch"]

        assert "Back in session" in (await say(d, "/resume 1", thread="t1"))[0]  # session 2 again
        fake_api.rules["write less"] = [ToolCall("Write", {"file_path": "less.md", "content": "less\n"})]
        await say(d, "write less", thread="t1")
        assert (agent.workspaces.root(key) / "less.md").is_file() and not (worktree / "less.md").exists()


async def test_only_admins_switch_the_project_of_a_place(
    project_sections: Sections, fake_api: FakeAnthropicAPI
) -> None:
    async with Agent(project_sections) as agent:
        d = Dispatcher(agent)
        shown = (await say(d, "/project", owner="C0OTHER"))[0]
        assert "none" in shown and "`payments`" in shown
        assert "Only admins" in (await say(d, "/project payments", owner="C0OTHER", user="mallory"))[0]
        assert "now works on project `payments`" in (await say(d, "/project payments", owner="C0OTHER", user="boss"))[0]
        conv = await agent.conversations.get(ConversationKey("chat", "C0OTHER"))
        assert conv is not None and conv.metadata["project"] == "payments"
        # the binding is kept in the store: a new conversation there (a thread) works on it too
        await say(d, "hi", thread="t9", owner="C0OTHER")
        thread = await agent.conversations.get(ConversationKey("chat", "C0OTHER", "t9"))
        assert thread is not None and thread.metadata["project"] == "payments"


def test_a_binding_to_a_missing_path_is_a_config_error_naming_the_key(
    make_sections: Callable[..., Sections], tmp_path: Path
) -> None:
    sections = make_sections(projects={"ghost": {"path": str(tmp_path / "nope"), "places": ["chat:C1"]}})
    with pytest.raises(ConfigError, match=r"^projects\.ghost\.path: .* is not an existing directory"):
        Agent(sections)


async def test_approved_bash_in_a_worktree_can_commit(
    project_sections: Sections, fake_api: FakeAnthropicAPI, payments: Path
) -> None:
    command = "echo fix > fix.txt && git add fix.txt && git -c user.email=c@x -c user.name=c commit -qm fix && git log --oneline | head -1"
    fake_api.rules["commit it"] = [ToolCall("Bash", {"command": command})]
    async with Agent(project_sections) as agent:
        d = Dispatcher(agent)
        await say(d, "commit it", "t1")
        conv = await agent.conversations.get(ConversationKey("chat", CHANNEL, "t1"))
        assert conv is not None
        assert "fix" in git_log(payments, conv.metadata["branch"])  # committed on its branch, through the sandbox
        assert "fix" not in git_log(payments, "main")


async def test_approved_bash_in_a_worktree_moves_no_other_branch_nor_the_shared_git_files(
    project_sections: Sections, fake_api: FakeAnthropicAPI, payments: Path
) -> None:
    fake_api.rules["hello"] = [Text("hi")]
    async with Agent(project_sections) as agent:
        d = Dispatcher(agent)
        await say(d, "hello", "t2")  # another thread's branch exists
        two = await agent.conversations.get(ConversationKey("chat", CHANNEL, "t2"))
        assert two is not None
        other, git_dir = two.metadata["branch"], payments / ".git"
        before = {ref: git_log(payments, ref) for ref in ("main", other)}
        attempts = [
            "git update-ref refs/heads/main HEAD",  # the main checkout's branch
            f"git update-ref refs/heads/{other} HEAD",  # another conversation's
            f"echo junk > {git_dir}/packed-refs",  # would break git for every worktree
            f"echo '*' > {git_dir}/info/exclude",  # would hide files from the idle sweep's commit
            f"echo {git_dir} > {git_dir}/objects/info/alternates",
        ]
        command = "echo mine > mine.txt && git add mine.txt && git -c user.email=c@x -c user.name=c commit -qm mine; "
        command += "; ".join(f"{a}; echo rc=$?" for a in attempts)  # HEAD is the new commit: a move would show
        fake_api.rules["try"] = [ToolCall("Bash", {"command": command})]
        output = " ".join(await say(d, "try", "t1")).partition("tool result:")[2]  # the fake model echoes it
        one = await agent.conversations.get(ConversationKey("chat", CHANNEL, "t1"))
        assert one is not None
        assert output.count("rc=") == len(attempts) and "rc=0" not in output, output
        assert "mine" in git_log(payments, one.metadata["branch"])  # its own branch still takes commits
        assert {ref: git_log(payments, ref) for ref in ("main", other)} == before
        assert (git_dir / "packed-refs").read_text() == ""
        assert not (git_dir / "info" / "exclude").read_text().startswith("*")
        alternates = git_dir / "objects" / "info" / "alternates"
        assert not alternates.exists() or alternates.read_text() == ""  # (the sandbox may leave an empty one)
