"""Can Claude Code authenticate? Checked before a bot starts, so newcomers get one clear line."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Collection, Mapping
from pathlib import Path

HELP = (
    "No Anthropic credentials found: set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN), "
    "put it under agent.env in your config, or log in once with Claude Code (`claude /login`). "
    "Behind a gateway that needs no key, set ANTHROPIC_AUTH_TOKEN to any value."
)

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
