"""The Claude Code options of one conversation's process: what ccbridge asks the SDK for.

One place decides how a CLI is started: the conversation's workspace as its
cwd, its private config and temp directories, the Bash sandbox, the policy
hooks, ccbridge's own ``send_file`` tool, and the operator's settings.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from claude_agent_sdk import ClaudeAgentOptions, HookMatcher, ToolPermissionContext, create_sdk_mcp_server, tool

from ..config import AgentSettings
from ..events import FileOffered
from ..transcripts import LocalMirror, TranscriptStore
from ..workspace import is_within
from .isolation import SandboxStatus, SessionHome, sandbox_settings
from .permissions import SEND_FILE_TOOL, Permissions
from .pool import WarmClient

log = logging.getLogger(__name__)

MAX_SEND_BYTES = 50 * 1024 * 1024
BRIDGE_PROMPT = (
    "You are talking with people through a chat bridge (ccbridge). Keep replies readable in a chat. "
    "Your working directory is this conversation's workspace; files you create there stay there. "
    f"To hand a file to the user, call the {SEND_FILE_TOOL} tool with its path."
)


#: set for every Claude Code process, whatever ``agent.env`` says: a background sub-agent or command would
#: have the CLI run model turns by itself after ccbridge's turn ended, and nobody reads those (the user's
#: next reply would be their output)
FORCED_ENV = {"CLAUDE_CODE_DISABLE_BACKGROUND_TASKS": "1"}


class OptionsBuilder:
    #: the store transcripts are mirrored to (``store.transcripts: store``), set by the Agent once started
    transcripts: TranscriptStore | None = None
    #: a directory whose ``npm`` answers the sandbox's ``npm root -g`` at once (:mod:`.npm_probe`), once known
    npm_probe: Path | None = None

    def __init__(
        self,
        settings: AgentSettings,
        permissions: Permissions,
        *,
        cli_path: str | None,
        sandbox: SandboxStatus,
        hidden: list[Path],
    ) -> None:
        self.settings = settings
        self.permissions = permissions
        self.cli_path = cli_path
        self.sandbox = sandbox
        self.hidden = hidden

    def env(self, home: SessionHome, spawn_env: dict[str, str]) -> dict[str, str]:
        s = self.settings
        base: dict[str, str] = {}
        if s.max_retries is not None:
            base["CLAUDE_CODE_MAX_RETRIES"] = str(s.max_retries)
        # the operator's env, then what isolation requires (it must win over a CLAUDE_CONFIG_DIR given there)
        env = {**base, **s.env, **home.env(), **spawn_env, **FORCED_ENV}
        if self.npm_probe is not None and self.sandbox.active:
            env["PATH"] = f"{self.npm_probe}{os.pathsep}{env.get('PATH') or os.environ.get('PATH', os.defpath)}"
        return env

    def build(
        self,
        warm: WarmClient,
        resume: bool,
        home: SessionHome,
        spawn_env: dict[str, str],
        root: Path,
        writable: list[Path] | None = None,
        read_only: list[Path] | None = None,
    ) -> ClaudeAgentOptions:
        s = self.settings
        spec = warm.spec
        permissions = self.permissions
        append = BRIDGE_PROMPT + (f"\n\n{s.system_prompt}" if s.system_prompt else "")
        mcp_servers: dict[str, Any] = {**s.mcp_servers, "ccbridge": bridge_server(warm)}

        async def can_use_tool(name: str, tool_input: dict[str, Any], ctx: ToolPermissionContext) -> Any:
            return await permissions.can_use_tool(warm, name, tool_input)

        async def pre_tool_use(hook_input: Any, tool_use_id: str | None, ctx: Any) -> Any:
            return await permissions.pre_tool_use(warm, hook_input)

        def on_stderr(line: str) -> None:
            warm.stderr_tail.append(line.rstrip())
            log.debug("claude[%s]: %s", warm.key, line.rstrip())

        sandbox = (
            sandbox_settings(root, home.tmp_dir, self.hidden, writable, read_only) if self.sandbox.active else None
        )
        return ClaudeAgentOptions(
            cwd=spec.cwd,
            model=spec.model,
            resume=spec.session_id if resume else None,
            session_id=None if resume else spec.session_id,
            system_prompt={"type": "preset", "preset": "claude_code", "append": append},
            permission_mode=s.permission_mode,
            disallowed_tools=list(s.disallowed_tools),
            can_use_tool=can_use_tool,
            # The policy decides every tool call, whatever Claude Code's own rules would do:
            # allow / deny here; "ask" falls through to can_use_tool, which asks the user.
            hooks={"PreToolUse": [HookMatcher(matcher=None, hooks=[pre_tool_use], on_failure="block")]},
            include_partial_messages=True,
            max_turns=s.max_turns,
            max_budget_usd=s.max_budget_usd,
            mcp_servers=mcp_servers,
            env=self.env(home, spawn_env),
            setting_sources=list(s.setting_sources),
            cli_path=self.cli_path,
            stderr=on_stderr,
            sandbox=sandbox,  # type: ignore[arg-type]
            session_store=LocalMirror(self.transcripts, home.config_dir) if self.transcripts is not None else None,
            session_store_flush="batched",
        )


def bridge_server(warm: WarmClient) -> Any:
    """ccbridge's own MCP server for one client: ``send_file`` hands a workspace file to the user."""

    @tool(
        "send_file",
        "Send a file from the workspace to the user in the chat (as a document or image).",
        {
            "type": "object",
            "properties": {
                "path": {
                    "type": "string",
                    "description": "Path of the file, relative to the working directory or absolute.",
                },
                "caption": {"type": "string", "description": "Optional short caption."},
            },
            "required": ["path"],
        },
    )
    async def send_file(args: dict[str, Any]) -> dict[str, Any]:
        state = warm.turn
        if state is None:
            return tool_error("no turn is running")
        req = state.request

        def check() -> tuple[Path, str | None]:
            raw = Path(str(args.get("path", ""))).expanduser()
            path = raw if raw.is_absolute() else Path(req.cwd) / raw
            if not is_within(path, Path(req.root)):
                return path, f"{path} is outside this conversation's workspace"
            if not path.is_file():
                return path, f"{path} does not exist or is not a file"
            if path.stat().st_size > MAX_SEND_BYTES:
                return path, f"{path.name} is larger than {MAX_SEND_BYTES // (1024 * 1024)} MB"
            return path.resolve(), None

        path, problem = await asyncio.to_thread(check)
        if problem:
            return tool_error(problem)
        state.emit(FileOffered(path, str(args.get("caption") or "")))
        return {"content": [{"type": "text", "text": f"{path.name} was sent to the user."}]}

    return create_sdk_mcp_server(name="ccbridge", tools=[send_file])


def tool_error(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "is_error": True}
