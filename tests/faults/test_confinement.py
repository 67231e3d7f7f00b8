"""File tools and approved Bash stay inside the conversation's workspace.

(The bundled Claude Code 2.1.332 no longer offers Glob/Grep to the model — it searches with
Bash, which the sandbox confines — but the policy still checks their patterns for CLIs that do.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core import Agent, ConversationKey, Decision
from core.config import AgentSettings
from core.runtime import probe_sandbox
from core.tool_policy import ToolContext, ToolPolicy, expand_braces, segment_may_climb
from tests.fakes.anthropic_api import FakeAnthropicAPI, ToolCall


async def _approved(agent: Agent, fake_api: FakeAnthropicAPI, command: str, user: str = "alice") -> str:
    fake_api.rules[command] = [ToolCall("Bash", {"command": command})]

    async def allow(request: object) -> Decision:
        return Decision.ALLOW_ONCE

    result = await agent.chat(command, user_id=user, on_approval=allow)
    assert not result.is_error, result.error
    return result.text


def test_the_sandbox_is_active_here() -> None:
    status = probe_sandbox("auto")
    assert status.active, f"the tests need bubblewrap + socat (apt-get install bubblewrap socat): {status.reason}"


async def test_approved_bash_cannot_write_outside_or_read_other_workspaces(
    agent: Agent, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    bob_root = await agent.workspaces.ensure(ConversationKey("api", "bob"))
    (bob_root / "secret.txt").write_text("bob's secret")
    outside = tmp_path / "outside.txt"
    text = await _approved(
        agent, fake_api, f"echo escaped > {outside}; cat {bob_root}/secret.txt; echo in > inside.txt"
    )
    assert not outside.exists()
    assert "bob's secret" not in text
    alice_root = agent.workspaces.root(ConversationKey("api", "alice"))
    assert (alice_root / "inside.txt").read_text() == "in\n"  # the workspace itself is writable


async def test_approved_bash_cannot_read_the_operators_claude_login_or_its_old_transcripts(
    agent: Agent, fake_api: FakeAnthropicAPI
) -> None:
    base = agent.runtime.homes.base_config
    legacy = base / "projects" / "-old-project" / "someone-else.jsonl"  # from before private directories
    legacy.parent.mkdir(parents=True, exist_ok=True)
    legacy.write_text("bob's old transcript")
    (base / "operator-note.txt").write_text("the operator's note")
    text = await _approved(
        agent, fake_api, f"cat {legacy}; cat {base}/operator-note.txt; ls -a $CLAUDE_CONFIG_DIR/; cat ~/.claude.json"
    )
    assert "bob's old transcript" not in text and "the operator's note" not in text
    assert {base, agent.runtime.homes.home / ".claude.json"} <= set(agent.runtime.hidden)
    assert not (await agent.chat("still logged in?", user_id="alice")).is_error  # the CLI itself still is


async def test_a_symlink_out_of_the_workspace_does_not_let_bash_write_there(
    agent: Agent, fake_api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    root = await agent.workspaces.ensure(ConversationKey("api", "alice"))
    (root / "link").symlink_to(target)  # as a flip of a link during a burst of writes would leave it
    await _approved(agent, fake_api, "for i in 1 2 3 4 5; do echo x > link/f$i; done")
    assert list(target.iterdir()) == []


# -- Glob / Grep patterns ------------------------------------------------------------


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.py").write_text("x")
    return ToolContext(root=root, cwd=root)


def policy() -> ToolPolicy:
    return ToolPolicy(AgentSettings())


@pytest.mark.parametrize(
    "pattern",
    [
        "../*",
        "../../etc/passwd",
        "src/../../x",
        "{..,src}/*",
        "{src,{x,..}}/*",
        "[.][.]/*",
        "[.]./secret",
        ".?/*",
        ".*/*",
        "/etc/*",
        "~/.ssh/*",
        "src/{a,../../b}.py",
        # a literal ".." behind a wildcard: the literal prefix stays inside, only the ".." check refuses these
        "*/../../x",
        "**/../../etc/passwd",
        "src/*/../../../x",
        "src/{a,*/../../..}/x",
        "*\\..\\..\\x",  # backslashes count as separators too
        "src\\..\\..\\x",
        "src/\\.\\./\\.\\./x",  # in glob syntax, escaped dots are dots
        "[^a][^a]/x",  # "^" negates a class as "!" does
        "[[:punct:]][[:punct:]]/etc/passwd",
        "@(..)/x",  # an extglob
    ],
)
async def test_patterns_that_climb_or_leave_are_refused(ctx: ToolContext, pattern: str) -> None:
    verdict = await policy().evaluate("Glob", {"pattern": pattern}, ctx)
    assert verdict.action == "deny", pattern
    grep = await policy().evaluate("Grep", {"pattern": "x", "glob": pattern}, ctx)
    assert grep.action == "deny", pattern


@pytest.mark.parametrize("pattern", ["**/*.py", "src/*.py", "*.{py,md}", "src/[ab].py", "**/.*rc", "{src,docs}/**"])
async def test_ordinary_patterns_are_allowed(ctx: ToolContext, pattern: str) -> None:
    assert (await policy().evaluate("Glob", {"pattern": pattern}, ctx)).action == "allow", pattern


async def test_patterns_are_checked_through_symlinks(ctx: ToolContext, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("s")
    (ctx.root / "src" / "deep").mkdir()
    (ctx.root / "src" / "deep" / "escape").symlink_to(outside)
    for pattern in ("**/*.py", "src/*/*/*.py", "src/deep/escape/*"):
        verdict = await policy().evaluate("Glob", {"pattern": pattern}, ctx)
        assert verdict.action == "deny" and ("link" in verdict.reason or "outside" in verdict.reason), pattern
    assert (await policy().evaluate("Grep", {"pattern": "s", "path": "src"}, ctx)).action == "deny"
    # a link that stays inside the workspace is fine
    os.unlink(ctx.root / "src" / "deep" / "escape")
    (ctx.root / "src" / "deep" / "inner").symlink_to(ctx.root / "src")
    assert (await policy().evaluate("Glob", {"pattern": "**/*.py"}, ctx)).action == "allow"


def test_brace_expansion_and_climbing_segments() -> None:
    assert sorted(expand_braces("a/{b,c{d,e}}/f") or []) == ["a/b/f", "a/cd/f", "a/ce/f"]
    assert expand_braces("{a,b}" * 20) is None  # too many alternatives: refused, not expanded
    assert all(segment_may_climb(s) for s in ("..", "[.][.]", ".?", ".*", "[.]."))
    assert not any(segment_may_climb(s) for s in ("*", "?", "*.py", ".git", "**", "src"))


@pytest.mark.parametrize("path", [".git", ".git/config", "src/.git", "sub/.GIT/hooks/pre-commit", "{root}/.git"])
@pytest.mark.parametrize("tool", ["Write", "Edit", "MultiEdit"])
async def test_the_file_tools_write_none_of_gits_own_files(ctx: ToolContext, tool: str, path: str) -> None:
    """A worktree's ``.git`` file names the git directory ccbridge's own git trusts (outside the sandbox,
    when the idle sweep saves the work): rewritten, it could point at a config naming a filter command."""
    target = path.format(root=ctx.root)
    verdict = await policy().evaluate(tool, {"file_path": target}, ctx)
    assert verdict.action == "deny" and "git's own files" in verdict.reason, (tool, path)


async def test_the_file_tools_still_read_git_files_and_write_files_named_like_git(ctx: ToolContext) -> None:
    assert (await policy().evaluate("Read", {"file_path": ".git/HEAD"}, ctx)).action != "deny"
    for name in (".gitignore", ".github/workflows/ci.yml", "src/my.git.txt"):
        assert (await policy().evaluate("Write", {"file_path": name}, ctx)).action != "deny", name
