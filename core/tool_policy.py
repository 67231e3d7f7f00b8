"""Which tool calls run, which are refused, which need the user's approval.

Isolation by construction: every tool has a class (:data:`TOOL_CLASSES`), each
entry reviewed for what the tool can reach. A tool nobody classified is denied
— not offered for approval — so a Claude Code upgrade that adds a tool cannot
widen what a conversation's agent may do (``tests/faults/test_tool_classification.py``
reads the tools the bundled CLI announces and fails on any unclassified one).
Tools of the MCP servers the config names, and tools the config lists by their
exact name, count as classified.

Evaluated for every tool call (a ``PreToolUse`` hook plus ``can_use_tool``);
never relies on ``bypassPermissions``. Order of rules:

1. ``disallowed_tools``                      -> deny
2. not classified                            -> deny
3. class ``refused`` (schedulers, onboarding, sending outside the chat...) -> deny
4. class ``cross_session`` (``ListAgents``, ``SendMessage``, ...) -> deny, unless
   ``agent.cross_session_tools`` is on (then they follow the rules below)
5. class ``bookkeeping`` (todo list, tool search, sub-agents: every tool a
   sub-agent calls is checked on its own) -> allow
6. class ``file``: allow when every path it names, symlinks resolved, is inside
   the conversation's workspace (admins: or ``workspace.admin_paths``); Glob
   and Grep patterns are expanded (braces), checked for segments that can climb
   (``..``, ``[.][.]``, ``.*``) and for symlinks leading out; deny otherwise
7. ``allowed_tools``                         -> allow
8. ``admin_tools`` for admins                -> allow
9. tools allowed "for this session"          -> allow
10. ``approval_tools``                       -> ask the user
11. anything else                            -> deny
"""

from __future__ import annotations

import asyncio
import enum
import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .config import AgentSettings
from .workspace import is_within

SUB_AGENT_TOOLS = frozenset({"Agent", "Task"})


class ToolClass(enum.StrEnum):
    FILE = "file"  # reads or writes paths: confined to the workspace
    BOOKKEEPING = "bookkeeping"  # the session's own state only
    APPROVAL = "approval"  # reaches the machine or the network: the user decides (Bash is sandboxed)
    CROSS_SESSION = "cross_session"  # reaches other Claude Code sessions on the machine
    REFUSED = "refused"  # never useful in a chat bridge, or acts without anyone asking


# Tool name -> input fields holding paths.
FILE_TOOLS: dict[str, tuple[str, ...]] = {
    "Read": ("file_path",),
    "Write": ("file_path",),
    "Edit": ("file_path",),
    "MultiEdit": ("file_path",),
    "NotebookEdit": ("notebook_path",),
    "NotebookRead": ("notebook_path",),
    "Glob": ("path", "pattern"),
    "Grep": ("path", "glob"),
    "LS": ("path",),
}
PATTERN_FIELDS = frozenset({"pattern", "glob"})
#: file tools that write: never into git's own files (a worktree's ``.git`` names the git directory
#: ccbridge's own git then trusts, outside the sandbox; its config can name commands to run)
WRITING_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})

_REFUSED_WHY = "that tool is not available through this chat"
_SCHEDULES = "a chat bot's agent must not start turns on its own (scheduled prompts are refused)"

#: Every tool Claude Code 2.1.x knows (and its aliases), with what it can reach. Reviewed by hand:
#: a new CLI adds tools, and the classification test then fails until they are reviewed here.
TOOL_CLASSES: dict[str, tuple[ToolClass, str]] = {
    # paths: confined to the workspace
    **{name: (ToolClass.FILE, "the paths it names, checked against the workspace") for name in FILE_TOOLS},
    # the session's own state
    "Agent": (
        ToolClass.BOOKKEEPING,
        "a sub-agent in the same process; each of its tool calls is checked here. It runs within the turn "
        "(background tasks are off: CLAUDE_CODE_DISABLE_BACKGROUND_TASKS), never in an isolation of its own",
    ),
    "Task": (ToolClass.BOOKKEEPING, "old name of Agent"),
    "TodoWrite": (ToolClass.BOOKKEEPING, "the session's todo list"),
    "TodoRead": (ToolClass.BOOKKEEPING, "the session's todo list"),
    "TaskCreate": (ToolClass.BOOKKEEPING, "the session's task list (in its private config directory)"),
    "TaskGet": (ToolClass.BOOKKEEPING, "the session's task list"),
    "TaskList": (ToolClass.BOOKKEEPING, "the session's task list"),
    "TaskUpdate": (ToolClass.BOOKKEEPING, "the session's task list"),
    "TaskStop": (ToolClass.BOOKKEEPING, "stops the session's own background commands"),
    "KillShell": (ToolClass.BOOKKEEPING, "old name of TaskStop"),
    "KillBash": (ToolClass.BOOKKEEPING, "old name of TaskStop"),
    "ToolSearch": (ToolClass.BOOKKEEPING, "finds the session's deferred tools; each found tool is checked here"),
    "EnterPlanMode": (ToolClass.BOOKKEEPING, "the session's mode"),
    "ExitPlanMode": (ToolClass.BOOKKEEPING, "the session's mode"),
    "SetGoal": (ToolClass.BOOKKEEPING, "the session's goal"),
    "ProposeGoal": (ToolClass.BOOKKEEPING, "old name of SetGoal"),
    "ReportFindings": (ToolClass.BOOKKEEPING, "findings shown in the reply"),
    "Skill": (ToolClass.BOOKKEEPING, "loads skill instructions; anything a skill runs is checked here"),
    "SubagentHandback": (ToolClass.BOOKKEEPING, "a sub-agent returning to its parent"),
    "WaitForMcpServers": (ToolClass.BOOKKEEPING, "waits for the configured MCP servers"),
    # the machine or the network: the user decides
    "Bash": (ToolClass.APPROVAL, "commands on this machine (sandboxed: writes only in the workspace)"),
    "PowerShell": (ToolClass.APPROVAL, "commands on this machine"),
    "WebFetch": (ToolClass.APPROVAL, "the network"),
    "WebSearch": (ToolClass.APPROVAL, "the network"),
    "LSP": (ToolClass.APPROVAL, "language servers reading code on this machine"),
    "Workflow": (ToolClass.APPROVAL, "multi-agent workflows"),
    "ListMcpResourcesTool": (ToolClass.APPROVAL, "resources of the configured MCP servers"),
    "ReadMcpResourceTool": (ToolClass.APPROVAL, "resources of the configured MCP servers"),
    "ReadMcpResourceDirTool": (ToolClass.APPROVAL, "resources of the configured MCP servers"),
    "ListMcpResources": (ToolClass.APPROVAL, "old name of ListMcpResourcesTool"),
    "ReadMcpResource": (ToolClass.APPROVAL, "old name of ReadMcpResourceTool"),
    "ReadMcpResourceDir": (ToolClass.APPROVAL, "old name of ReadMcpResourceDirTool"),
    # other sessions on this machine
    "ListAgents": (ToolClass.CROSS_SESSION, "lists the other Claude Code sessions on the machine"),
    "ListPeers": (ToolClass.CROSS_SESSION, "old name of ListAgents"),
    "SendMessage": (ToolClass.CROSS_SESSION, "injects text into another session"),
    "RemoteTrigger": (ToolClass.CROSS_SESSION, "starts remote sessions"),
    # never
    "AskUserQuestion": (
        ToolClass.REFUSED,
        "Questions can't be asked with a dialog in this chat: ask in your reply, "
        "the user answers with their next message.",
    ),
    "CronCreate": (ToolClass.REFUSED, _SCHEDULES),
    "CronDelete": (ToolClass.REFUSED, _SCHEDULES),
    "CronList": (ToolClass.REFUSED, _SCHEDULES),
    "ScheduleWakeup": (ToolClass.REFUSED, _SCHEDULES),
    "Monitor": (
        ToolClass.REFUSED,
        "it watches a command in the background and wakes the session when no turn runs; "
        "a chat bot's agent must not start turns on its own (run the command with Bash)",
    ),
    "EnterWorktree": (ToolClass.REFUSED, "worktrees are managed by ccbridge, outside the session"),
    "ExitWorktree": (ToolClass.REFUSED, "worktrees are managed by ccbridge, outside the session"),
    "SendUserMessage": (ToolClass.REFUSED, "reply in the chat instead"),
    "Brief": (ToolClass.REFUSED, "reply in the chat instead"),
    "SendUserFile": (ToolClass.REFUSED, "use the send_file tool to hand a file to the user"),
    "PushNotification": (ToolClass.REFUSED, _REFUSED_WHY),
    "ReadNotifications": (ToolClass.REFUSED, _REFUSED_WHY),
    "Artifact": (ToolClass.REFUSED, _REFUSED_WHY),
    "ClaudeDesign": (ToolClass.REFUSED, _REFUSED_WHY),
    "Projects": (ToolClass.REFUSED, _REFUSED_WHY),
    "propose_skills": (ToolClass.REFUSED, _REFUSED_WHY),
    "EndConversation": (ToolClass.REFUSED, "use /new in the chat to start over"),
    "SendFeedback": (ToolClass.REFUSED, _REFUSED_WHY),
    "OfferChromeSetup": (ToolClass.REFUSED, _REFUSED_WHY),
    "ShareOnboardingGuide": (ToolClass.REFUSED, _REFUSED_WHY),
    "ShowOnboardingRolePicker": (ToolClass.REFUSED, _REFUSED_WHY),
}

# Kept for readers of older code: the bookkeeping tools.
BOOKKEEPING_TOOLS = frozenset(n for n, (c, _) in TOOL_CLASSES.items() if c is ToolClass.BOOKKEEPING)
CROSS_SESSION_TOOLS = frozenset(n for n, (c, _) in TOOL_CLASSES.items() if c is ToolClass.CROSS_SESSION)

_MCP_TOOL = re.compile(r"^mcp__(?P<server>[^_].*?)__(?P<tool>.+)$")
_GLOB_CHARS = re.compile(r"[*?\[{]")
_EXTGLOB = re.compile(r"[@!+*?]\(")
_POSIX_CLASS = re.compile(r"\[[^\]]*\[:[a-z]+:\][^\]]*\]")  # a bracket expression holding [:class:]
_SCAN_BUDGET = 100_000  # directory entries looked at for symlinks leading out, per pattern


@dataclass(frozen=True)
class Verdict:
    action: Literal["allow", "deny", "ask"]
    reason: str = ""


ALLOW = Verdict("allow")
ASK = Verdict("ask")


@dataclass
class ToolContext:
    """Who is asking, and where: the facts a verdict depends on."""

    root: Path
    cwd: Path
    is_admin: bool = False
    session_allowed: set[str] = field(default_factory=set)


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


class ToolPolicy:
    def __init__(
        self, settings: AgentSettings, admin_paths: list[Path] | None = None, extra_mcp_servers: tuple[str, ...] = ()
    ) -> None:
        self.settings = settings
        self.admin_paths = [Path(p) for p in admin_paths or []]
        self.extra_mcp_servers = extra_mcp_servers  # ccbridge's own

    def classify(self, tool: str) -> ToolClass | None:
        """The class of ``tool``, or None when nobody classified it (it is then denied)."""
        known = TOOL_CLASSES.get(tool)
        if known is not None:
            return known[0]
        m = _MCP_TOOL.match(tool)
        if m and m.group("server") in (*self.settings.mcp_servers, *self.extra_mcp_servers):
            return ToolClass.APPROVAL  # a tool of an MCP server the operator configured
        s = self.settings
        if tool in s.allowed_tools or tool in s.approval_tools or tool in s.admin_tools:
            return ToolClass.APPROVAL  # listed by its exact name: the operator classified it
        return None

    async def evaluate(self, tool: str, tool_input: dict[str, Any], ctx: ToolContext) -> Verdict:
        s = self.settings
        if _matches(tool, s.disallowed_tools):
            return Verdict("deny", f"{tool} is disabled on this bot")
        kind = self.classify(tool)
        if kind is None:
            return Verdict("deny", f"{tool} is not a tool this bot knows; unknown tools are refused")
        if kind is ToolClass.REFUSED:
            return Verdict("deny", TOOL_CLASSES[tool][1])
        if kind is ToolClass.CROSS_SESSION and not s.cross_session_tools:
            return Verdict("deny", f"{tool} reaches other sessions on this machine and is disabled on this bot")
        if kind is ToolClass.BOOKKEEPING:
            if tool in SUB_AGENT_TOOLS and tool_input.get("isolation"):  # a worktree or a remote agent of its own
                return Verdict("deny", "sub-agents work in this conversation's directory: no isolation of their own")
            return ALLOW
        if kind is ToolClass.FILE:
            return await asyncio.to_thread(self._file_verdict, tool, tool_input, ctx)
        if _matches(tool, s.allowed_tools):
            return ALLOW
        if ctx.is_admin and _matches(tool, s.admin_tools):
            return ALLOW
        if tool in ctx.session_allowed:
            return ALLOW
        if _matches(tool, s.approval_tools):
            return ASK
        return Verdict("deny", f"{tool} is not enabled on this bot")

    # -- file tools ------------------------------------------------------------
    def _allowed_roots(self, ctx: ToolContext) -> list[Path]:
        return [ctx.root, *(self.admin_paths if ctx.is_admin else [])]

    def _inside(self, path: Path, ctx: ToolContext) -> bool:
        return any(is_within(path, root) for root in self._allowed_roots(ctx))

    def _file_verdict(self, tool: str, tool_input: dict[str, Any], ctx: ToolContext) -> Verdict:
        """Blocking: resolves paths on disk."""
        base = ctx.cwd
        search = tool_input.get("path")
        if isinstance(search, str) and search:
            candidate = Path(search).expanduser()
            base = candidate if candidate.is_absolute() else ctx.cwd / candidate
        for field_name in FILE_TOOLS[tool]:
            value = tool_input.get(field_name)
            if not isinstance(value, str) or not value:
                continue
            if field_name in PATTERN_FIELDS:
                problem = self._pattern_problem(value, base, ctx)
                if problem:
                    return Verdict("deny", problem)
                continue
            path = Path(value).expanduser()
            path = path if path.is_absolute() else ctx.cwd / path
            if not self._inside(path, ctx):
                return Verdict("deny", f"{path} is outside this conversation's workspace ({ctx.root})")
            if tool in WRITING_TOOLS and _in_git_dir(path, ctx.root):
                return Verdict("deny", f"{path} is one of git's own files: the file tools do not write there")
        globs = [f for f in FILE_TOOLS[tool] if f in PATTERN_FIELDS]  # Grep's "pattern" is a regex, not a glob
        if tool in ("Glob", "Grep") and not any(
            isinstance(tool_input.get(f), str) and tool_input.get(f) for f in globs
        ):
            problem = self._symlinks_leading_out(base, ctx, recursive=True)
            if problem:
                return Verdict("deny", problem)
        return ALLOW

    def _pattern_problem(self, pattern: str, base: Path, ctx: ToolContext) -> str | None:
        """Why a glob pattern could reach outside the workspace, or None."""
        alternatives = expand_braces(pattern)
        if alternatives is None:
            return f"the pattern {pattern!r} has too many alternatives to check"
        for alt in alternatives:
            if alt.startswith("~"):
                alt = os.path.expanduser(alt)
            parts = alt.replace("\\", "/").split("/")
            unescaped = alt.replace("\\", "").split("/")  # in glob syntax "\." is a literal "."
            if any(segment_may_climb(p) for p in (*parts, *unescaped)):
                return f"the pattern {pattern!r} climbs out of the workspace ('..' is not allowed in patterns)"
            literal: list[str] = []
            for p in parts:
                if _GLOB_CHARS.search(p):
                    break
                literal.append(p)
            rest = parts[len(literal) :]
            prefix = "/".join(literal)
            start = Path(prefix) if alt.startswith("/") else base / prefix if prefix else base
            if alt.startswith("/") and not prefix:
                start = Path("/")
            if not self._inside(start, ctx):
                return f"the pattern {pattern!r} searches outside this conversation's workspace ({ctx.root})"
            if rest:
                recursive = "**" in rest or len(rest) > 1
                problem = self._symlinks_leading_out(start, ctx, recursive=recursive)
                if problem:
                    return problem
        return None

    def _symlinks_leading_out(self, start: Path, ctx: ToolContext, *, recursive: bool) -> str | None:
        """A symlink under ``start`` that leads outside the workspace (a pattern would follow it), or None."""
        budget = _SCAN_BUDGET
        stack = [start]
        while stack:
            directory = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for entry in entries:
                budget -= 1
                if budget <= 0:
                    return f"{start} holds too many files to check this pattern safely; use a narrower path"
                if entry.is_symlink():
                    if not self._inside(Path(entry.path), ctx):
                        return f"{entry.path} is a link leading outside this conversation's workspace"
                elif recursive and entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
        return None


def _in_git_dir(path: Path, root: Path) -> bool:
    """``path`` is ``.git`` (a worktree's file, a repository's directory) or inside one, under ``root``."""
    try:
        rel = Path(os.path.normpath(path)).relative_to(os.path.normpath(root))
    except ValueError:
        rel = Path(os.path.normpath(path))
    return any(part.lower() == ".git" for part in rel.parts)


def segment_may_climb(segment: str) -> bool:
    """True when a glob path segment can match ``..`` (``..``, ``[.][.]``, ``.*``, ``.?``...).

    A segment starting with ``*`` or ``?`` cannot: globbing never matches a leading dot
    with a wildcard, and directory listings do not hold ``..``.
    """
    if segment == "..":
        return True
    if _EXTGLOB.search(segment):  # @(..), !(x), +(.) ...: read conservatively, as possibly ".."
        return True
    if not _GLOB_CHARS.search(segment) or segment[:1] in ("*", "?"):
        return False
    # as ripgrep / picomatch read classes: "[^a]" negates like "[!a]"; a POSIX class may hold "."
    segment = _POSIX_CLASS.sub("?", segment.replace("[^", "[!"))
    return fnmatch.fnmatchcase("..", segment)


def expand_braces(pattern: str, limit: int = 256) -> list[str] | None:
    """``a/{b,c{d,e}}`` -> ``["a/b", "a/cd", "a/ce"]``; None past ``limit`` alternatives."""
    results = [pattern]
    expanded: list[str] = []
    while results:
        current = results.pop()
        span = _first_brace(current)
        if span is None:
            expanded.append(current)
        else:
            start, end, options = span
            for option in options:
                results.append(current[:start] + option + current[end + 1 :])
        if len(expanded) + len(results) > limit:
            return None
    return expanded


def _first_brace(text: str) -> tuple[int, int, list[str]] | None:
    """The first top-level ``{...,...}`` group: (start, end, its options)."""
    depth = 0
    start = -1
    commas: list[int] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            if depth == 0:
                start, commas = i, []
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                if not commas:  # "{x}" has one option: the same as "x"
                    return start, i, [text[start + 1 : i]]
                bounds = [start, *commas, i]
                return start, i, [text[a + 1 : b] for a, b in zip(bounds, bounds[1:], strict=False)]
        elif ch == "," and depth == 1:
            commas.append(i)
        i += 1
    return None
