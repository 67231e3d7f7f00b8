"""Platform-neutral chat commands: /new /stop /status /cwd /model /history /help."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from .conversations import Conversations
from .errors import WorkspaceError
from .keys import ConversationKey

HISTORY_DEFAULT = 5
HISTORY_MAX = 50


@dataclass(frozen=True)
class Command:
    name: str
    args: str


@dataclass(frozen=True)
class CommandSpec:
    name: str
    usage: str
    help: str


COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("new", "/new", "start a fresh session (same workspace)"),
        CommandSpec("stop", "/stop", "stop the current reply; the session is kept"),
        CommandSpec("status", "/status", "session, working directory, model and state"),
        CommandSpec("cwd", "/cwd [subdir]", "show or change the working directory inside the workspace"),
        CommandSpec("model", "/model [name|default]", "show or change the model"),
        CommandSpec("history", "/history [n]", f"the last n exchanges (default {HISTORY_DEFAULT})"),
        CommandSpec("help", "/help", "this list"),
    )
}


def parse_command(text: str) -> Command | None:
    """A known command at the start of ``text`` ("/cwd src", "/new@my_bot"), else None."""
    stripped = text.strip()
    if not stripped.startswith("/"):
        return None
    head, _, args = stripped[1:].partition(" ")
    name = head.split("@", 1)[0].lower()
    if name not in COMMANDS:
        return None
    return Command(name, args.strip())


def help_text() -> str:
    lines = ["**Commands**"] + [f"`{c.usage}` — {c.help}" for c in COMMANDS.values()]
    lines.append("Anything else is sent to Claude Code.")
    return "\n".join(lines)


def _ago(ts: float) -> str:
    secs = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit} ago"
    return f"{secs}s ago"


def _clip(text: str, limit: int = 200) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


class CommandRunner:
    """Runs commands for one conversation; returns the text to show."""

    def __init__(self, conversations: Conversations) -> None:
        self.conversations = conversations
        self._handlers: dict[str, Callable[[ConversationKey, str], Awaitable[str]]] = {
            "new": self._new,
            "stop": self._stop,
            "status": self._status,
            "cwd": self._cwd,
            "model": self._model,
            "history": self._history,
            "help": self._help,
        }

    async def run(self, key: ConversationKey, command: Command) -> str:
        return await self._handlers[command.name](key, command.args)

    def _where(self, key: ConversationKey, cwd: str) -> str:
        rel = self.conversations.workspaces.relative(key, Path(cwd))
        return "/" if rel == "." else f"/{rel}"

    async def _new(self, key: ConversationKey, args: str) -> str:
        conv, old = await self.conversations.reset(key)
        tail = f" (previous session `{old[:8]}` is kept on disk)" if old else ""
        return f"🆕 New session `{conv.session_id[:8]}` started{tail}."

    async def _stop(self, key: ConversationKey, args: str) -> str:
        if await self.conversations.stop(key):
            return "⏹ Stopping the current reply. The session is kept."
        return "Nothing is running."

    async def _status(self, key: ConversationKey, args: str) -> str:
        conv = await self.conversations.get(key)
        if conv is None:
            return "No session yet: send a message to start one."
        if self.conversations.busy(key):
            queued = self.conversations.waiting(key)
            state = "working" + (f", {queued} queued" if queued else "")
        else:
            state = "idle"
        model = self.conversations.model_of(conv) or "Claude Code's default"
        return "\n".join(
            [
                f"**Session** `{conv.session_id}` — {conv.message_count} message(s)",
                f"**Working directory** `{self._where(key, conv.cwd)}`",
                f"**Model** {model}",
                f"**State** {state}, last active {_ago(conv.last_active_at)}",
            ]
        )

    async def _cwd(self, key: ConversationKey, args: str) -> str:
        if not args:
            conv = await self.conversations.open(key)
            return f"📁 Working directory: `{self._where(key, conv.cwd)}` (inside your workspace)"
        try:
            conv = await self.conversations.set_cwd(key, args.strip().removeprefix("/") or ".")
        except WorkspaceError as exc:
            return f"⚠️ {exc}"
        return f"📁 Working directory is now `{self._where(key, conv.cwd)}`."

    async def _model(self, key: ConversationKey, args: str) -> str:
        if not args:
            conv = await self.conversations.open(key)
            return f"🧠 Model: {self.conversations.model_of(conv) or 'Claude Code default'}"
        name = args.split()[0]
        conv = await self.conversations.set_model(key, None if name.lower() == "default" else name)
        return f"🧠 Model is now {self.conversations.model_of(conv) or 'Claude Code default'}."

    async def _history(self, key: ConversationKey, args: str) -> str:
        try:
            n = int(args) if args else HISTORY_DEFAULT
        except ValueError:
            return f"⚠️ /history takes a number, e.g. `/history {HISTORY_DEFAULT}`"
        n = max(1, min(n, HISTORY_MAX))
        turns = [t for t in await self.conversations.history(key, n * 2) if t.status != "merged"][-n:]
        if not turns:
            return "No history yet."
        lines = [f"**Last {len(turns)} exchange(s)**"]
        for t in turns:
            mark = {"ok": "", "error": " ⚠️", "interrupted": " ⏹", "running": " ⏳"}.get(t.status, "")
            lines.append(f"• **You:** {_clip(t.user_text)}")
            reply = t.reply_text or t.error or ("(working on it)" if t.status == "running" else "(no reply)")
            lines.append(f"  **Claude{mark}:** {_clip(reply)}")
        return "\n".join(lines)

    async def _help(self, key: ConversationKey, args: str) -> str:
        return help_text()
