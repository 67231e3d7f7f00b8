"""Platform-neutral chat commands: /new /stop /status /cwd /model /history /cost /help, and for admins
/allow /revoke /users (access managed from the chat, :mod:`core.grants`)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from .access import ROLE, AccessPolicy
from .budgets import Budgets
from .conversations import Conversations
from .errors import CCBridgeError, WorkspaceError
from .grants import AccessGrants
from .keys import ConversationKey, UserRef
from .store import Conversation

HISTORY_DEFAULT = 5
HISTORY_MAX = 50


NOTHING_RUNNING = "Nothing is running."  # /stop's answer when no reply runs


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
        CommandSpec("cost", "/cost", "what you spent today and this month, and your limits"),
        CommandSpec("help", "/help", "this list"),
        CommandSpec("diff", "/diff", "the conversation's changes to its project (as a file when long)"),
        CommandSpec("sessions", "/sessions", "this conversation's earlier sessions (from /new)"),
        CommandSpec("resume", "/resume <n|id>", "go back to an earlier session, with its memory"),
        CommandSpec("project", "/project [name|none]", "the project this place works on (admins: switch it)"),
        CommandSpec("allow", "/allow <user>", "admins: let someone use the bot (a mention, an id, or role:<id>)"),
        CommandSpec("revoke", "/revoke <user>", "admins: take access granted in the chat away"),
        CommandSpec("users", "/users", "admins: who may use the bot, and from where"),
    )
}
ADMIN_COMMANDS = frozenset({"allow", "revoke", "users"})
DIFF_INLINE_CHARS = 3000  # a longer /diff is sent as a file


@dataclass
class Reply:
    """A command's answer: text, and a file to send with it."""

    text: str
    file: Path | None = None


@dataclass
class CommandContext:
    """Who runs a command, where, and what the message mentioned."""

    key: ConversationKey
    user: UserRef
    is_admin: bool = False
    mentions: list[str] = field(default_factory=list)  # platform user ids the message mentioned
    role_mentions: list[str] = field(default_factory=list)
    places: list[str] = field(default_factory=list)  # the names this place goes by (projects)

    @property
    def platform(self) -> str:
        return self.key.platform


#: how a command may start: ``/new``, or ``!new`` where the platform takes a leading "/" itself (Slack's
#: composer, Discord's slash-command menu in a thread)
COMMAND_MARKS = ("/", "!")


def parse_command(text: str) -> Command | None:
    """A known command at the start of ``text`` ("/cwd src", "/new@my_bot", "!status"), else None."""
    stripped = text.strip()
    if not stripped.startswith(COMMAND_MARKS):
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

    def __init__(
        self,
        conversations: Conversations,
        access: AccessPolicy | None = None,
        grants: AccessGrants | None = None,
        *,
        budgets: Budgets | None = None,
    ) -> None:
        self.conversations = conversations
        self.access = access
        self.grants = grants
        self.budgets = budgets
        self._admin: dict[str, Callable[[CommandContext, str], Awaitable[str]]] = {
            "allow": self._allow,
            "revoke": self._revoke,
            "users": self._users,
        }
        self._contextual: dict[str, Callable[[CommandContext, str], Awaitable[str | Reply]]] = {
            "diff": self._diff,
            "sessions": self._sessions,
            "resume": self._resume,
            "project": self._project,
            "cost": self._cost,
        }
        self._handlers: dict[str, Callable[[ConversationKey, str], Awaitable[str]]] = {
            "new": self._new,
            "stop": self._stop,
            "status": self._status,
            "cwd": self._cwd,
            "model": self._model,
            "history": self._history,
            "help": self._help,
        }

    async def run(self, key: ConversationKey | CommandContext, command: Command) -> str:
        """The command's answer as text (see :meth:`answer` for answers with a file)."""
        return (await self.answer(key, command)).text

    async def answer(self, key: ConversationKey | CommandContext, command: Command) -> Reply:
        ctx = key if isinstance(key, CommandContext) else CommandContext(key, UserRef(key.owner))
        if command.name in self._contextual:
            result = await self._contextual[command.name](ctx, command.args)
            return result if isinstance(result, Reply) else Reply(result)
        return Reply(await self._text(ctx, command))

    async def _text(self, ctx: CommandContext, command: Command) -> str:
        if command.name in self._admin:
            if self.grants is None or self.access is None:
                return "Access can't be managed from here."
            if not ctx.is_admin:
                return "⛔ Only admins can change or list who may use this bot."
            return await self._admin[command.name](ctx, command.args)
        return await self._handlers[command.name](ctx.key, command.args)

    # -- projects and sessions -------------------------------------------------
    async def _diff(self, ctx: CommandContext, args: str) -> str | Reply:
        conv = await self.conversations.get(ctx.key)
        projects = self.conversations.projects
        if conv is None or not conv.metadata.get("project") or projects is None:
            return "This conversation does not work on a project (`/project` says which one this place uses)."
        try:
            diff = await projects.diff(self.conversations.workplace_of(conv))
        except CCBridgeError as exc:
            return f"⚠️ {exc}"
        if not diff.strip():
            return "No changes yet."
        if len(diff) <= DIFF_INLINE_CHARS:
            return f"```diff\n{diff.rstrip()}\n```"
        directory = self.conversations.runtime.homes.tmp_root / "diffs" / _digest(str(ctx.key))
        name = f"{conv.metadata['project']}-{conv.metadata.get('branch') or 'shared'}.diff"
        try:
            path = await asyncio.to_thread(_write_private, directory, _safe_name(name), diff)
        except OSError as exc:
            return f"⚠️ Could not write the diff to a file ({exc.strerror or exc}); `/status` still shows the branch."
        files = diff.count("\ndiff --git") + diff.startswith("diff --git")
        return Reply(f"📎 The changes ({files} file(s), {len(diff):,} characters) are in the attached file.", path)

    async def _sessions(self, ctx: CommandContext, args: str) -> str:
        conv = await self.conversations.get(ctx.key)
        earlier = list((conv.metadata.get("sessions") if conv else None) or [])
        if not earlier:
            return "No earlier sessions here (`/new` starts one and keeps the current for `/resume`)."
        lines = ["**Earlier sessions** (newest first; `/resume <n>` goes back)"]
        for n, s in enumerate(reversed(earlier), 1):
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(s.get("created_at") or 0)))
            first = _clip(str(s.get("first") or ""), 80) or "(no messages)"
            lines.append(f"{n}. {when} — {s.get('turns', 0)} turn(s) — “{first}” (`{str(s.get('session_id'))[:8]}`)")
        return "\n".join(lines)

    async def _resume(self, ctx: CommandContext, args: str) -> str:
        conv = await self.conversations.get(ctx.key)
        earlier = list(reversed((conv.metadata.get("sessions") if conv else None) or []))
        choice = args.strip()
        if not choice:
            return "Usage: `/resume <n|id>` — `/sessions` lists them."
        chosen = None
        if choice.isdigit() and 1 <= int(choice) <= len(earlier):
            chosen = earlier[int(choice) - 1]
        else:
            chosen = next((s for s in earlier if str(s.get("session_id", "")).startswith(choice)), None)
        if chosen is None:
            return f"⚠️ No earlier session {choice!r} here (`/sessions` lists them)."
        try:
            conv = await self.conversations.resume_session(ctx.key, str(chosen["session_id"]))
        except CCBridgeError as exc:
            return f"⚠️ {exc}"
        return f"↩️ Back in session `{conv.session_id[:8]}` ({conv.message_count} turn(s)); it remembers what was said."

    async def _project(self, ctx: CommandContext, args: str) -> str:
        projects = self.conversations.projects
        conv = await self.conversations.get(ctx.key)
        current = conv.metadata.get("project") if conv else None
        if projects is None or not projects.settings:
            return "No projects are configured (`projects:` in the config file)."
        choice = args.strip()
        if not choice:
            bound = await projects.project_for(ctx.places, ctx.key.bot)
            names = ", ".join(f"`{n}`" for n in projects.settings)
            here = f"`{current}`" if current else "none (its own workspace)"
            moved = " Its next session (`/new`) follows the place." if bound != current else ""
            return (
                f"📦 This conversation works on: {here}. This place is bound to: `{bound or 'none'}`.{moved} "
                f"Projects: {names}."
            )
        if not ctx.is_admin:
            return "⛔ Only admins can switch the project of a place."
        target = None if choice.lower() == "none" else choice
        if target is not None and target not in projects.settings:
            return f"⚠️ No project named {choice!r}. Projects: {', '.join(projects.settings)}."
        place = ctx.places[0] if ctx.places else ctx.key.place
        await projects.switch(place, target, ctx.key.bot)
        new, _ = await self.conversations.reset(ctx.key, project=target)
        where = f"project `{target}`" + (f" on branch `{new.metadata['branch']}`" if new.metadata.get("branch") else "")
        return f"📦 `{place}` now works on {where if target else 'its own workspace'}; a new session started here."

    async def _cost(self, ctx: CommandContext, args: str) -> str:
        if self.budgets is None:
            return "Spend is not counted here."
        spend = await self.budgets.spend(ctx.platform, ctx.user.id, is_admin=ctx.is_admin)
        limits = spend.limits

        def line(label: str, spent: float, limit: float | None) -> str:
            if limits is None:
                return f"**{label}** ${spent:.4f}"
            if limit is None:
                return f"**{label}** ${spent:.4f} (no limit)"
            return f"**{label}** ${spent:.4f} of ${limit:.2f}" + (" — spent" if spent >= limit else "")

        lines = [
            "💰 **Your spend**",
            line("Today", spend.today_usd, limits.daily_usd if limits else None),
            line("This month", spend.month_usd, limits.monthly_usd if limits else None),
        ]
        if limits is None:
            lines.append("No limits apply to you.")
        lines.append(f"Days and months begin at midnight {spend.timezone}.")
        return "\n".join(lines)

    # -- access, for admins ----------------------------------------------------
    @staticmethod
    def _targets(ctx: CommandContext, args: str) -> list[str] | str:
        """The entries a /allow or /revoke names: mentions first, else the ids given.

        An ``@name`` the platform did not turn into a mention names nobody it knows: the
        answer (a str) says so instead of granting an entry that matches no one.
        """
        if ctx.mentions or ctx.role_mentions:
            ids = [f"{ctx.platform}:{m}" for m in ctx.mentions]
            return ids + [f"{ctx.platform}:{ROLE}{r}" for r in ctx.role_mentions]
        entries, unknown = [], []
        for word in args.split():
            word = word.strip()
            if word.startswith(("@", "<")):
                unknown.append(word)
                continue
            if word.startswith(f"{ctx.platform}:"):
                word = word[len(ctx.platform) + 1 :]
            if not word or word == "*" or any(c.isspace() for c in word) or word.count(":") > 1:
                continue
            if ":" in word and not word.startswith(ROLE):
                continue
            entries.append(f"{ctx.platform}:{word}")
        if unknown and not entries:
            return (
                f"I can't tell who {', '.join(f'`{w}`' for w in unknown)} is: pick the person from the "
                "mention list (so the chat links them), reply to one of their messages, or give their user id."
            )
        return entries

    async def _allow(self, ctx: CommandContext, args: str) -> str:
        assert self.grants is not None
        targets = self._targets(ctx, args)
        if isinstance(targets, str):
            return targets
        if not targets:
            return "Usage: `/allow <user>` — mention them, or give their id (or `role:<role id>`)."
        by = f"{ctx.platform}:{ctx.user.id}"
        lines = []
        for entry in targets:
            new = await self.grants.grant(entry, by)
            lines.append(f"✅ `{entry}` may use the bot now." if new else f"`{entry}` was already allowed.")
        return "\n".join(lines)

    async def _revoke(self, ctx: CommandContext, args: str) -> str:
        assert self.grants is not None and self.access is not None
        targets = self._targets(ctx, args)
        if isinstance(targets, str):
            return targets
        if not targets:
            return "Usage: `/revoke <user>` — mention them, or give their id (or `role:<role id>`)."
        by = f"{ctx.platform}:{ctx.user.id}"
        lines = []
        for entry in targets:
            if await self.grants.revoke(entry, by):
                still = " (the config file still allows them)" if self.access.in_config(entry) else ""
                lines.append(f"🚫 `{entry}` no longer has the access granted in the chat{still}.")
            elif self.access.in_config(entry):
                lines.append(f"`{entry}` is allowed by the config file; remove it there (then reload).")
            else:
                lines.append(f"`{entry}` had no access granted in the chat.")
        return "\n".join(lines)

    async def _users(self, ctx: CommandContext, args: str) -> str:
        assert self.grants is not None and self.access is not None
        settings = self.access.settings
        prefix = f"{ctx.platform}:"
        lines = ["**Who may use this bot**"]
        if settings.allow_all:
            lines.append("• everyone (`access.allow_all` is on)")
        for entry in settings.allowlist:
            if entry.startswith(prefix):
                lines.append(f"• `{entry}` — from the config file")
        for grant in sorted((await self.grants.refresh(force=True)).values(), key=lambda g: g.at):
            if grant.entry.startswith(prefix):
                source = "from the HTTP admin API" if grant.by.startswith("admin_key:") else "from the chat"
                lines.append(f"• `{grant.entry}` — {source}: granted by `{grant.by}`, {_ago(grant.at)}")
        admins = [e for e in settings.admins if e.startswith(prefix)]
        if admins:
            lines.append("**Admins** (config file): " + ", ".join(f"`{a}`" for a in admins))
        if len(lines) == 1:
            lines.append("• nobody yet: `/allow <user>` to let someone in")
        return "\n".join(lines)

    def _where(self, conv: Conversation) -> str:
        rel = self.conversations.relative(conv, conv.cwd)
        return "/" if rel == "." else f"/{rel}"

    async def _new(self, key: ConversationKey, args: str) -> str:
        conv, old = await self.conversations.reset(key)
        tail = f" (previous session `{old[:8]}` is kept on disk)" if old else ""
        return f"🆕 New session `{conv.session_id[:8]}` started{tail}."

    async def _stop(self, key: ConversationKey, args: str) -> str:
        if await self.conversations.stop(key):
            return "⏹ Stopping the current reply. The session is kept."
        return NOTHING_RUNNING

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
        lines = [f"**Session** `{conv.session_id}` — {conv.message_count} message(s)"]
        if conv.metadata.get("project"):
            branch = conv.metadata.get("branch")
            lines.append(
                f"**Project** {conv.metadata['project']}"
                + (f" — branch `{branch}`" if branch else " (shared checkout)")
            )
        lines += [
            f"**Working directory** `{self._where(conv)}`",
            f"**Model** {model}",
            f"**State** {state}, last active {_ago(conv.last_active_at)}",
        ]
        # Commands run on the conversation's owner, so the instance answering is the owner.
        alone = "" if self.conversations.shared else ", the only instance"
        lines.append(f"**Instance** `{self.conversations.instance_id}` (owns this conversation{alone})")
        return "\n".join(lines)

    async def _cwd(self, key: ConversationKey, args: str) -> str:
        if not args:
            conv = await self.conversations.open(key)
            where = "the project" if conv.metadata.get("project") else "your workspace"
            return f"📁 Working directory: `{self._where(conv)}` (inside {where})"
        try:
            conv = await self.conversations.set_cwd(key, args.strip().removeprefix("/") or ".")
        except WorkspaceError as exc:
            return f"⚠️ {exc}"
        return f"📁 Working directory is now `{self._where(conv)}`."

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


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "changes.diff"


def _write_private(directory: Path, name: str, text: str) -> Path:
    """``text`` as ``directory/name``: the conversation's own directory (0700), outside every repository and
    out of the sandbox's reach (under the session homes' temporary root, hidden from sandboxed Bash)."""
    directory.parent.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # the temporary root
    for folder in (directory.parent, directory):
        folder.mkdir(exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)  # whatever the umask
    target = directory / name
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return target
