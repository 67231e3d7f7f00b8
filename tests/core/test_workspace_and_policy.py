"""Workspaces (sanitizing, traversal) and the tool policy (confinement, approvals, admins)."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

import pytest

from core import ConversationKey, WorkspaceError
from core.config import AgentSettings
from core.tool_policy import ToolContext, ToolPolicy
from core.workspace import (
    MAX_SUBDIR_CHARS,
    MAX_SUBDIR_DEPTH,
    Workspaces,
    check_subdir,
    is_within,
    owner_dirname,
    sanitize_name,
)

KEY = ConversationKey("telegram", "42")


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("alice", "alice"),
        ("../etc", "etc"),
        ("a/b\\c", "a_b_c"),
        ("..", "_"),
        ("  ", "_"),
        ("U123:T9", "U123_T9"),
        ("отчёт.pdf", "отчёт.pdf"),
        ("报告 v2.docx", "报告_v2.docx"),
        ("~/x", "x"),
    ],
)
def test_sanitize_name(raw: str, safe: str) -> None:
    assert sanitize_name(raw) == safe


def test_long_names_are_shortened_keeping_the_extension() -> None:
    name = sanitize_name("й" * 300 + ".pdf")
    assert name.endswith(".pdf") and len(name.encode()) <= 120
    assert name[:-4] == "й" * len(name[:-4])  # no broken multi-byte character


def test_distinct_owner_ids_never_share_a_workspace(tmp_path: Path) -> None:
    ws = Workspaces(tmp_path)
    look_alike = ["bob", "bob.", "_bob", "a/b", "a_b", "a b", "x" * 200, "x" * 201, "../../x", "x"]
    roots = {ws.root(ConversationKey("api", owner)) for owner in look_alike}
    assert len(roots) == len(look_alike)
    for root in roots:
        assert root.parent == tmp_path / "api"
        assert len(root.name.encode()) <= 120
    # Ids that are already safe keep their plain, readable directory name.
    assert owner_dirname("U0123ABC") == "U0123ABC" and owner_dirname("42") == "42"


@pytest.mark.parametrize("bad", ["..", "../x", "a/../../b", "/etc", "C:\\Windows", "a\x00b"])
def test_subdir_traversal_and_absolute_paths_are_rejected(bad: str) -> None:
    with pytest.raises(WorkspaceError):
        check_subdir(bad)


async def test_workspace_layout_and_creation(tmp_path: Path) -> None:
    ws = Workspaces(tmp_path)
    assert ws.root(KEY) == tmp_path / "telegram" / "42"
    escaped = ws.root(ConversationKey("slack", "../../x"))
    assert escaped.parent == tmp_path / "slack" and escaped.name.startswith("x~")
    made = await ws.ensure(KEY, "src/app")
    assert made == tmp_path / "telegram" / "42" / "src" / "app" and made.is_dir()
    assert ws.relative(KEY, made) == "src/app"


async def test_symlink_escape_is_rejected(tmp_path: Path) -> None:
    ws = Workspaces(tmp_path / "base")
    root = await ws.ensure(KEY)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(WorkspaceError, match="outside"):
        await ws.ensure(KEY, "link")


async def test_uploads_get_unique_safe_names(tmp_path: Path) -> None:
    ws = Workspaces(tmp_path)
    first = await ws.save_upload(KEY, "../../evil.png", b"1")
    second = await ws.save_upload(KEY, "evil.png", b"2")
    assert first.parent == second.parent == tmp_path / "telegram" / "42" / "uploads"
    assert first.name == "evil.png" and second.name == "evil-1.png"
    assert second.read_bytes() == b"2"


def policy(**settings: object) -> ToolPolicy:
    return ToolPolicy(AgentSettings(**settings), admin_paths=[Path("/srv/shared")])  # type: ignore[arg-type]


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    return ToolContext(root=root, cwd=root / "sub")


async def test_file_tools_inside_the_workspace_are_allowed(ctx: ToolContext) -> None:
    p = policy()
    assert (await p.evaluate("Write", {"file_path": str(ctx.root / "a.txt")}, ctx)).action == "allow"
    assert (await p.evaluate("Read", {"file_path": "notes.md"}, ctx)).action == "allow"  # relative to cwd
    assert (await p.evaluate("Glob", {"pattern": "**/*.py"}, ctx)).action == "allow"
    assert (await p.evaluate("Grep", {"pattern": "x", "path": str(ctx.root)}, ctx)).action == "allow"


@pytest.mark.parametrize(
    ("tool", "tool_input"),
    [
        ("Write", {"file_path": "/etc/passwd"}),
        ("Edit", {"file_path": "../../outside.txt"}),
        ("Read", {"file_path": "~/.ssh/id_rsa"}),
        ("Glob", {"pattern": "/etc/**"}),
        ("Grep", {"pattern": "root", "path": "/etc"}),
        ("NotebookEdit", {"notebook_path": "/tmp/x.ipynb"}),
    ],
)
async def test_file_tools_outside_the_workspace_are_denied(ctx: ToolContext, tool: str, tool_input: dict) -> None:
    verdict = await policy().evaluate(tool, tool_input, ctx)
    assert verdict.action == "deny" and "outside" in verdict.reason


async def test_symlinks_out_of_the_workspace_are_denied(ctx: ToolContext, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    os.symlink(secret, ctx.root / "innocent")
    verdict = await policy().evaluate("Write", {"file_path": str(ctx.root / "innocent" / "x")}, ctx)
    assert verdict.action == "deny"


async def test_other_tools_need_approval_unless_allowed(ctx: ToolContext) -> None:
    assert (await policy().evaluate("Bash", {"command": "ls"}, ctx)).action == "ask"
    docs = {"docs": {"type": "stdio", "command": "docs-server"}}
    assert (
        await policy(allowed_tools=["WebSearch", "mcp__docs__*"], mcp_servers=docs).evaluate("mcp__docs__find", {}, ctx)
    ).action == "allow"
    # a server the config does not name: its tools are unclassified, so a wildcard does not reach them
    unknown = await policy(allowed_tools=["mcp__*"]).evaluate("mcp__docs__find", {}, ctx)
    assert unknown.action == "deny" and "not a tool this bot knows" in unknown.reason
    assert (await policy(disallowed_tools=["Bash"]).evaluate("Bash", {}, ctx)).action == "deny"
    assert (await policy(approval_tools=["Bash"]).evaluate("WebFetch", {}, ctx)).action == "deny"
    ctx.session_allowed.add("Bash")
    assert (await policy().evaluate("Bash", {"command": "make"}, ctx)).action == "allow"


async def test_admins_get_wider_rules(ctx: ToolContext) -> None:
    p = policy(admin_tools=["Bash"])
    assert (await p.evaluate("Bash", {}, ctx)).action == "ask"
    ctx.is_admin = True
    assert (await p.evaluate("Bash", {}, ctx)).action == "allow"
    assert (await p.evaluate("Read", {"file_path": "/srv/shared/doc.md"}, ctx)).action == "allow"
    assert (await p.evaluate("Read", {"file_path": "/etc/shadow"}, ctx)).action == "deny"


async def test_bookkeeping_tools_pass_and_dialogs_are_refused(ctx: ToolContext) -> None:
    assert (await policy().evaluate("TodoWrite", {"todos": []}, ctx)).action == "allow"
    assert (await policy(disallowed_tools=["Agent"]).evaluate("Agent", {}, ctx)).action == "deny"
    verdict = await policy().evaluate("AskUserQuestion", {"questions": []}, ctx)
    assert verdict.action == "deny" and "ask in your reply" in verdict.reason


# -- workspaces at their limits (each case kills a mutant that survived `make mutation`) -----------
@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("..\\etc", "'..' is not allowed"),
        ("a\\..\\..\\b", "'..' is not allowed"),
        ("c:\\Windows", "is absolute"),
        ("c:/Windows", "is absolute"),
        ("/etc", "is absolute"),
        ("a\x00b", "the path contains a NUL byte"),
    ],
)
def test_rejected_subdirs_say_why(bad: str, says: str) -> None:
    with pytest.raises(WorkspaceError, match=re.escape(says)) as info:
        check_subdir(bad)
    if "\x00" in bad:
        assert str(info.value) == says


def test_subdir_limits_are_inclusive() -> None:
    assert check_subdir("") == check_subdir(".") == check_subdir("./") == check_subdir("  ") == PurePosixPath(".")
    assert check_subdir("a\\b") == PurePosixPath("a/b")
    assert check_subdir("a" * MAX_SUBDIR_CHARS) == PurePosixPath("a" * MAX_SUBDIR_CHARS)
    with pytest.raises(WorkspaceError, match=f"{MAX_SUBDIR_CHARS + 1} characters long; the limit is"):
        check_subdir("a" * (MAX_SUBDIR_CHARS + 1))
    deepest = "/".join(["d"] * MAX_SUBDIR_DEPTH)
    assert len(check_subdir(deepest).parts) == MAX_SUBDIR_DEPTH
    with pytest.raises(WorkspaceError, match=f"{MAX_SUBDIR_DEPTH + 1} directories deep; the limit is"):
        check_subdir(deepest + "/d")


def test_names_use_the_whole_byte_budget_and_keep_their_extension() -> None:
    assert sanitize_name("a" * 120) == "a" * 120  # at the limit: kept as it is
    assert sanitize_name("Xbox.") == "Xbox" and sanitize_name("._X_.") == "X"
    shortened = sanitize_name("x" * 300 + ".pdf")
    assert shortened == "x" * 116 + ".pdf" and len(shortened.encode()) == 120
    assert sanitize_name("v1.2 " + "x" * 300 + ".pdf").endswith("x.pdf")  # the last dot starts the extension
    assert sanitize_name("x" * 300 + ".c").endswith("x.c")  # a one-letter extension
    assert sanitize_name("x" * 300 + "." + "e" * 16).endswith("x." + "e" * 16)  # sixteen bytes: still an extension
    assert sanitize_name("x" * 300 + "." + "e" * 17) == ("x" * 300 + "." + "e" * 17)[:120]
    odd = sanitize_name("й" * 300 + ".py")  # 117 bytes for the stem: cut inside a two-byte letter
    assert odd == "й" * 58 + ".py" and len(odd.encode()) == 119
    owner = owner_dirname("x/" * 200)
    assert len(owner.encode()) == 120 and owner.startswith("x_x_") and "~" in owner


def test_a_bot_scoped_workspace_has_a_directory_of_its_own(tmp_path: Path) -> None:
    ws = Workspaces(tmp_path)
    assert ws.root(ConversationKey("telegram", "42", bot="tg2")) == tmp_path / "telegram@tg2" / "42"
    assert ws.root(ConversationKey("telegram", "42")) == tmp_path / "telegram" / "42"


def test_a_path_that_cannot_be_resolved_is_not_within(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    assert is_within(root / "x", root)

    def loop(self: Path, strict: bool = False) -> Path:
        raise RuntimeError(f"Symlink loop from {self}")  # what Python 3.11 raises for a -> b -> a

    monkeypatch.setattr(Path, "resolve", loop)
    assert not is_within(root / "x", root)


async def test_a_projects_worktree_is_created_and_confined(tmp_path: Path) -> None:
    ws = Workspaces(tmp_path / "base")
    project = tmp_path / "deep" / "er" / "project"
    assert await ws.ensure_in(project) == project and project.is_dir()
    made = await ws.ensure_in(project, "src/app")
    assert made == project / "src" / "app" and made.is_dir()
    assert await ws.ensure_in(project, "src/app") == made  # again: nothing to create
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, project / "link")
    with pytest.raises(WorkspaceError, match="leads outside the project"):
        await ws.ensure_in(project, "link/x")
    assert not (outside / "x").exists()


async def test_uploads_into_a_folder_count_up_and_keep_the_extension(tmp_path: Path) -> None:
    ws = Workspaces(tmp_path)
    folder = tmp_path / "not" / "yet" / "there"
    names = [(await ws.save_upload(KEY, "report.v2.pdf", b"x", folder=folder)).name for _ in range(3)]
    assert names == ["report.v2.pdf", "report.v2-1.pdf", "report.v2-2.pdf"]
    bare = [(await ws.save_upload(KEY, "README", b"x", folder=folder)).name for _ in range(2)]
    assert bare == ["README", "README-1"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(names + bare)


def test_paths_outside_the_workspace_are_shown_as_they_are(tmp_path: Path) -> None:
    ws = Workspaces(tmp_path)
    assert ws.relative(KEY, ws.root(KEY)) == "."
    assert ws.relative(KEY, Path("/elsewhere/x")) == "/elsewhere/x"
