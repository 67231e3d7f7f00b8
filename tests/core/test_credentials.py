"""Where Claude Code's credentials come from, as run_bot.py checks before starting a bot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.credentials import credentials_source


def test_nothing_found_in_an_empty_home(tmp_path: Path) -> None:
    assert credentials_source({}, {"HOME": str(tmp_path)}) is None


@pytest.mark.parametrize("name", ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_USE_BEDROCK"])
def test_environment_variables_count(tmp_path: Path, name: str) -> None:
    assert credentials_source({}, {"HOME": str(tmp_path), name: "x"}) == name
    assert credentials_source({name: "x"}, {"HOME": str(tmp_path)}) == name  # agent.env too


def test_an_empty_variable_does_not_count(tmp_path: Path) -> None:
    assert credentials_source({"ANTHROPIC_API_KEY": ""}, {"HOME": str(tmp_path)}) is None


def test_an_api_key_helper_counts_when_user_settings_are_loaded(tmp_path: Path) -> None:
    settings = tmp_path / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"apiKeyHelper": "~/bin/get-key.sh"}))
    env = {"HOME": str(tmp_path)}
    assert credentials_source({}, env, setting_sources=["user"]) == f"apiKeyHelper ({settings})"
    # Without "user" in agent.setting_sources the CLI never reads that file: not credentials.
    assert credentials_source({}, env) is None


@pytest.mark.parametrize("content", ["{not json", json.dumps({"apiKeyHelper": ""}), json.dumps(["apiKeyHelper"])])
def test_unusable_settings_do_not_count(tmp_path: Path, content: str) -> None:
    settings = tmp_path / ".claude" / "settings.json"
    settings.parent.mkdir()
    settings.write_text(content)
    assert credentials_source({}, {"HOME": str(tmp_path)}, setting_sources=["user"]) is None


def test_claude_config_dir_is_honoured(tmp_path: Path) -> None:
    config_dir = tmp_path / "elsewhere"
    config_dir.mkdir()
    (config_dir / ".credentials.json").write_text("{}")
    env = {"HOME": str(tmp_path), "CLAUDE_CONFIG_DIR": str(config_dir)}
    assert credentials_source({}, env) == f"Claude Code login ({config_dir})"
