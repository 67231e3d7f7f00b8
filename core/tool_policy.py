"""Which tool calls run, which are refused, which need the user's approval.

Evaluated in Claude Code's ``can_use_tool`` callback, i.e. for every tool call
the CLI's own rules would ask about. Never relies on ``bypassPermissions``.

Order of rules:

0. Claude Code's bookkeeping tools (todo list, tool search, sub-agents:
   every tool a sub-agent calls is checked on its own) -> allow;
   ``AskUserQuestion`` -> deny (the chat has no such dialog: ask in the reply)
1. ``disallowed_tools``                      -> deny
2. file tools (Read, Write, Edit, ...)       -> allow when every path, symlinks
   resolved, is inside the conversation's workspace (admins: or inside
   ``workspace.admin_paths``); deny otherwise
3. ``allowed_tools``                         -> allow
4. ``admin_tools`` for admins                -> allow
5. tools allowed "for this session"          -> allow
6. ``approval_tools``                        -> ask the user
7. anything else                             -> deny
"""

from __future__ import annotations

import asyncio
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .config import AgentSettings
from .workspace import is_within

# Tool name -> input fields holding paths.
FILE_TOOLS: dict[str, tuple[str, ...]] = {
    "Read": ("file_path",),
    "Write": ("file_path",),
    "Edit": ("file_path",),
    "MultiEdit": ("file_path",),
    "NotebookEdit": ("notebook_path",),
    "NotebookRead": ("notebook_path",),
    "Glob": ("path", "pattern"),
    "Grep": ("path",),
    "LS": ("path",),
}


# Tools acting only on Claude Code's own state.
BOOKKEEPING_TOOLS = frozenset({"TodoWrite", "TodoRead", "ToolSearch", "ListAgents", "ExitPlanMode", "Agent", "Task"})
REFUSED_TOOLS = {
    "AskUserQuestion": "Questions can't be asked with a dialog in this chat: ask in your reply, "
    "the user answers with their next message.",
}


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
    def __init__(self, settings: AgentSettings, admin_paths: list[Path] | None = None) -> None:
        self.settings = settings
        self.admin_paths = [Path(p) for p in admin_paths or []]

    async def evaluate(self, tool: str, tool_input: dict[str, Any], ctx: ToolContext) -> Verdict:
        s = self.settings
        if tool in BOOKKEEPING_TOOLS and not _matches(tool, s.disallowed_tools):
            return ALLOW
        if tool in REFUSED_TOOLS:
            return Verdict("deny", REFUSED_TOOLS[tool])
        if _matches(tool, s.disallowed_tools):
            return Verdict("deny", f"{tool} is disabled on this bot")
        if tool in FILE_TOOLS:
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

    def _file_verdict(self, tool: str, tool_input: dict[str, Any], ctx: ToolContext) -> Verdict:
        for path in self._paths(tool, tool_input, ctx.cwd):
            if is_within(path, ctx.root):
                continue
            if ctx.is_admin and any(is_within(path, extra) for extra in self.admin_paths):
                continue
            return Verdict("deny", f"{path} is outside this conversation's workspace ({ctx.root})")
        return ALLOW

    @staticmethod
    def _paths(tool: str, tool_input: dict[str, Any], cwd: Path) -> list[Path]:
        paths: list[Path] = []
        for field_name in FILE_TOOLS[tool]:
            value = tool_input.get(field_name)
            if not isinstance(value, str) or not value:
                continue
            if field_name == "pattern":
                # A glob pattern only names a place when it is absolute or climbs out.
                if not (value.startswith("/") or value.startswith("~") or ".." in Path(value).parts):
                    continue
                value = value.split("*", 1)[0] or "/"
            candidate = Path(value).expanduser()
            paths.append(candidate if candidate.is_absolute() else cwd / candidate)
        return paths
