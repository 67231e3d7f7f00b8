"""The tool policy's finer rules: how tools are classified, what each refusal says, and how far a
Glob / Grep search is checked for links leading out (neither less nor more than it can reach).

Written against the mutants of ``core/tool_policy.py`` that survived ``make mutation``
(docs/testing.md); the broader rules are in ``test_workspace_and_policy.py`` and
``tests/faults/test_confinement.py``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import core.tool_policy
from core.config import AgentSettings
from core.tool_policy import ToolClass, ToolContext, ToolPolicy, expand_braces, segment_may_climb


def policy(**settings: Any) -> ToolPolicy:
    return ToolPolicy(AgentSettings(**settings), admin_paths=[Path("/srv/shared")])


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    """A workspace whose ``src/deep/escape`` links outside it (to ``tmp_path/outside``)."""
    root = tmp_path / "ws"
    (root / "src" / "deep").mkdir(parents=True)
    (root / "src" / "a.py").write_text("a")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("s")
    (root / "src" / "deep" / "escape").symlink_to(outside)
    return ToolContext(root=root, cwd=root)


async def verdict(p: ToolPolicy, tool: str, tool_input: dict[str, Any], ctx: ToolContext) -> tuple[str, str]:
    v = await p.evaluate(tool, tool_input, ctx)
    return v.action, v.reason


# -- classification and refusals ----------------------------------------------------------------
def test_a_tool_named_in_any_one_list_is_classified() -> None:
    assert policy(allowed_tools=["CustomA"]).classify("CustomA") is ToolClass.APPROVAL
    assert policy(approval_tools=["CustomB"]).classify("CustomB") is ToolClass.APPROVAL
    assert policy(admin_tools=["CustomC"]).classify("CustomC") is ToolClass.APPROVAL
    assert policy(allowed_tools=["CustomA"]).classify("CustomB") is None
    assert policy().classify("CustomA") is None  # a wildcard in approval_tools names nothing


async def test_a_tool_only_admins_may_run(ctx: ToolContext) -> None:
    p = policy(admin_tools=["CustomC"], approval_tools=[])
    assert await verdict(p, "CustomC", {}, ctx) == ("deny", "CustomC is not enabled on this bot")
    ctx.is_admin = True
    assert await verdict(p, "CustomC", {}, ctx) == ("allow", "")


async def test_each_refusal_says_why(ctx: ToolContext) -> None:
    assert await verdict(policy(disallowed_tools=["Bash"]), "Bash", {}, ctx) == ("deny", "Bash is disabled on this bot")
    assert await verdict(policy(approval_tools=[]), "WebFetch", {}, ctx) == (
        "deny",
        "WebFetch is not enabled on this bot",
    )
    assert await verdict(policy(), "Teleport", {}, ctx) == (
        "deny",
        "Teleport is not a tool this bot knows; unknown tools are refused",
    )


async def test_tools_reaching_other_sessions_are_refused_unless_enabled(ctx: ToolContext) -> None:
    for tool in ("ListAgents", "SendMessage"):
        assert await verdict(policy(), tool, {}, ctx) == (
            "deny",
            f"{tool} reaches other sessions on this machine and is disabled on this bot",
        )
    enabled = policy(cross_session_tools=True)
    assert await verdict(enabled, "ListAgents", {}, ctx) == ("ask", "")  # then the usual rules: approval
    assert (await verdict(policy(cross_session_tools=True, allowed_tools=["SendMessage"]), "SendMessage", {}, ctx))[
        0
    ] == "allow"


async def test_admin_paths_are_for_admins_only(ctx: ToolContext) -> None:
    read = {"file_path": "/srv/shared/doc.md"}
    action, reason = await verdict(policy(), "Read", read, ctx)
    assert action == "deny" and reason == f"/srv/shared/doc.md is outside this conversation's workspace ({ctx.root})"
    ctx.is_admin = True
    assert (await verdict(policy(), "Read", read, ctx))[0] == "allow"


# -- which paths a search is checked at ---------------------------------------------------------
async def test_a_patterns_base_is_the_tools_path(ctx: ToolContext) -> None:
    for path in ("src/deep", str(ctx.root / "src" / "deep")):
        action, reason = await verdict(policy(), "Glob", {"path": path, "pattern": "escape/*"}, ctx)
        assert action == "deny" and "outside this conversation's workspace" in reason, path
    assert (await verdict(policy(), "Glob", {"path": "src", "pattern": "*.py"}, ctx))[0] == "allow"


async def test_a_search_without_a_pattern_is_checked_for_links_below_its_path(ctx: ToolContext) -> None:
    escape = ctx.root / "src" / "deep" / "escape"
    for tool, tool_input in (
        ("Glob", {"path": "src"}),
        ("Grep", {"pattern": "s", "path": "src"}),
        ("Grep", {"pattern": "s", "path": "src", "glob": ""}),  # an empty glob filters nothing
    ):
        assert await verdict(policy(), tool, tool_input, ctx) == (
            "deny",
            f"{escape} is a link leading outside this conversation's workspace",
        ), tool_input


async def test_a_pattern_is_checked_as_deep_as_it_reaches_and_no_deeper(ctx: ToolContext) -> None:
    for pattern in ("src/*.py", "src/*", "*"):  # src/deep/escape is beyond their reach
        assert (await verdict(policy(), "Glob", {"pattern": pattern}, ctx))[0] == "allow", pattern
    for pattern in ("src/**", "**", "src/*/*", "src/**/*.py", "src/deep/*.py", "src/deep/escape/*"):
        assert (await verdict(policy(), "Glob", {"pattern": pattern}, ctx))[0] == "deny", pattern


async def test_files_named_outright_are_not_searched_for_links(ctx: ToolContext) -> None:
    for tool, tool_input in (("Read", {"file_path": "src/a.py"}), ("Write", {"file_path": "new.txt"})):
        assert await verdict(policy(), tool, tool_input, ctx) == ("allow", ""), tool


async def test_inputs_that_are_not_strings_are_not_paths(ctx: ToolContext) -> None:
    """The CLI validates a tool's input itself; the policy must neither crash on odd values nor read them."""
    assert await verdict(policy(), "Read", {"file_path": 123}, ctx) == ("allow", "")
    ctx.cwd = ctx.root / "src" / "deep"  # Grep without a usable path searches the cwd: here, with the link
    action, reason = await verdict(policy(), "Grep", {"pattern": "s", "path": ["/etc"]}, ctx)
    assert action == "deny" and "is a link leading outside" in reason


async def test_the_scan_for_links_has_a_budget(ctx: ToolContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core.tool_policy, "_SCAN_BUDGET", 5)
    flat = ctx.root / "flat"
    flat.mkdir()
    for i in range(4):
        (flat / f"f{i}").write_text("")
    assert (await verdict(policy(), "Glob", {"path": "flat", "pattern": "**"}, ctx))[0] == "allow"  # 4 entries
    (flat / "f4").write_text("")
    assert await verdict(policy(), "Glob", {"path": "flat", "pattern": "**"}, ctx) == (
        "deny",
        f"{flat} holds too many files to check this pattern safely; use a narrower path",
    )


async def test_a_directory_that_cannot_be_listed_does_not_end_the_scan(
    ctx: ToolContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    (ctx.root / "src" / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return sorted(real_scandir(path), key=lambda e: e.name == "locked")  # listed last: scanned first

    monkeypatch.setattr(core.tool_policy.os, "scandir", scandir)
    action, reason = await verdict(policy(), "Glob", {"path": "src", "pattern": "**"}, ctx)
    assert action == "deny" and "is a link leading outside" in reason


async def test_patterns_rooted_at_slash_are_checked_at_slash(ctx: ToolContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ctx.root)  # even a bot started inside the workspace: "/" is not "."
    for pattern in ("/*", "/**", "/{etc,tmp}/*"):
        action, reason = await verdict(policy(), "Glob", {"pattern": pattern}, ctx)
        assert action == "deny" and "searches outside this conversation's workspace" in reason, pattern


# -- pattern syntax -----------------------------------------------------------------------------
def test_segments_starting_with_a_wildcard_cannot_climb() -> None:
    assert not any(segment_may_climb(s) for s in ("?.", "?*", "*.", "?"))
    assert segment_may_climb(".?") and segment_may_climb("[.]?")


def test_brace_expansion_limits_and_escapes() -> None:
    many = "{" + ",".join(f"o{i}" for i in range(256)) + "}"
    assert len(expand_braces(many) or []) == 256  # at the limit: expanded
    assert expand_braces("{" + ",".join(f"o{i}" for i in range(257)) + "}") is None
    assert expand_braces("a{b}c") == ["abc"] and expand_braces("{..}/x") == ["../x"]
    assert expand_braces("a\\{b,c}") == ["a\\{b,c}"]  # an escaped brace opens nothing
    assert expand_braces("abcd\\{x,y}") == ["abcd\\{x,y}"]
    assert sorted(expand_braces("\\{{a,b}") or []) == ["\\{a", "\\{b"]
    assert sorted(expand_braces("x\\.{a,b}") or []) == ["x\\.a", "x\\.b"]


async def test_a_single_option_brace_that_climbs_is_refused(ctx: ToolContext) -> None:
    for pattern in ("{..}/*", "src/{..}/{..}/x"):
        action, reason = await verdict(policy(), "Glob", {"pattern": pattern}, ctx)
        assert action == "deny" and "climbs out of the workspace" in reason, pattern
