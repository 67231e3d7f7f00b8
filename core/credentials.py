"""Can Claude Code authenticate? Checked before a bot starts, so newcomers get one clear line."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import sys
from collections.abc import Collection, Mapping
from pathlib import Path


def login_command(cli_path: str | None = None) -> str:
    """The command that logs Claude Code in, as this machine can run it.

    ``claude`` when it is on PATH; otherwise the CLI bundled with claude-agent-sdk, by its path.
    """
    if cli_path:
        cli = cli_path
    elif shutil.which("claude"):
        cli = "claude"
    else:
        cli = _bundled_cli() or "claude"
    return f"{shlex.quote(cli)} auth login"


def _bundled_cli() -> str | None:
    spec = importlib.util.find_spec("claude_agent_sdk")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        cli = Path(folder) / "_bundled" / ("claude.exe" if sys.platform == "win32" else "claude")
        if cli.is_file():
            return str(cli)
    return None


def credentials_help(cli_path: str | None = None) -> str:
    """One line saying how to provide credentials (``cli_path``: ``agent.cli_path``, if set)."""
    return (
        "No Anthropic credentials found: set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN) in the environment or "
        f"in .env, put it under agent.env in your config, or log in once with `{login_command(cli_path)}`. "
        "Behind a gateway that needs no key, set ANTHROPIC_AUTH_TOKEN to any value."
    )


HELP = credentials_help()

_ENV_KEYS = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
)


def credentials_source(
    agent_env: Mapping[str, str], environ: Mapping[str, str] | None = None, setting_sources: Collection[str] = ()
) -> str | None:
    """Where credentials come from (a short description), or None when there are none.

    An ``apiKeyHelper`` in Claude Code's user settings only counts when ``agent.setting_sources``
    includes ``user``: otherwise the CLI is started without reading that file.
    """
    env = {**(os.environ if environ is None else environ), **agent_env}
    for name in _ENV_KEYS:
        if env.get(name):
            return name
    config_dir = Path(env.get("CLAUDE_CONFIG_DIR") or Path(env.get("HOME") or Path.home()) / ".claude")
    if (config_dir / ".credentials.json").is_file():
        return f"Claude Code login ({config_dir})"
    if "user" in setting_sources and _settings_have_key_helper(config_dir / "settings.json"):
        return f"apiKeyHelper ({config_dir / 'settings.json'})"
    home = Path(env.get("HOME") or Path.home())
    if sys.platform == "darwin" and (home / ".claude.json").is_file():
        # On macOS Claude Code keeps its login in the Keychain, which cannot be read from here.
        return "Claude Code login (macOS Keychain)"
    return None


def _settings_have_key_helper(path: Path) -> bool:
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(settings, dict) and bool(settings.get("apiKeyHelper"))
