"""Config: YAML + ${ENV} + env overrides + per-bot overrides, errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    from bots import load_bot_class

    example = Path(__file__).resolve().parents[2] / "config.yaml.example"
    plausible = {
        "TELEGRAM_BOT_TOKEN": "123456:AAEexampleexampleexampleexample0123",
        "SLACK_BOT_TOKEN": "xoxb-1-2-example",
        "SLACK_APP_TOKEN": "xapp-1-A1-2-example",
        "CCBRIDGE_API_KEY": "an-example-api-key-that-is-long-enough",
    }
    for name, value in plausible.items():
        monkeypatch.setenv(name, value)
    config = load_config(example)
    assert config.agent.permission_mode == "default"
    assert {entry.kind for entry in config.bots.values()} == {"console", "telegram", "slack", "http_api"}
    for name, entry in config.bots.items():
        config.for_bot(name)
        load_bot_class(entry.kind).parse_settings(name, entry.settings)


def test_example_bots_inherit_the_shared_allowlist(tmp_path: Path) -> None:
    """Filling in the example's shared access.allowlist must reach every bot it defines."""
    example = Path(__file__).resolve().parents[2] / "config.yaml.example"
    text = example.read_text().replace("  allowlist: []", '  allowlist: ["telegram:1", "slack:U1"]', 1)
    config = load_config(write(tmp_path, text))
    assert config.access.allowlist == ["telegram:1", "slack:U1"]
    for name in config.bots:
        assert config.for_bot(name).access.allowlist == ["telegram:1", "slack:U1"], name


def test_example_config_loads_without_any_secret_set(monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parents[2] / "config.yaml.example"
    for name in ("ANTHROPIC_API_KEY", "TELEGRAM_BOT_TOKEN", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "CCBRIDGE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    config = load_config(example)  # copying the example must not break `make run` (console bot)
    assert not any(entry.enabled for entry in config.bots.values())


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    sections = config.resolved()
    assert sections.store.backend == "sqlite"
    assert sections.store.path == tmp_path / "data" / "ccbridge.db"
    assert sections.workspace.base_dir == tmp_path / "workspaces"
    assert sections.access.allowlist == [] and sections.access.allow_all is False
    assert config.bots == {}


def test_env_substitution_with_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-123")
    path = write(tmp_path, "agent:\n  env:\n    ANTHROPIC_API_KEY: ${MY_KEY}\n  model: ${MODEL:-claude-x}\n")
    config = load_config(path)
    assert config.agent.env["ANTHROPIC_API_KEY"] == "sk-123"
    assert config.agent.model == "claude-x"


def test_missing_env_variable_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    path = write(tmp_path, "bots:\n  tg:\n    kind: telegram\n    token: ${NOPE_TOKEN}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "bots.tg.token" in str(info.value) and "NOPE_TOKEN" in str(info.value)


def test_env_overrides_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "agent:\n  model: from-file\n  pool_size: 3\n")
    monkeypatch.setenv("CCBRIDGE_AGENT__MODEL", "from-env")
    monkeypatch.setenv("CCBRIDGE_ACCESS__ALLOW_ALL", "true")
    config = load_config(path)
    assert config.agent.model == "from-env"
    assert config.agent.pool_size == 3
    assert config.access.allow_all is True


def test_cli_variables_set_through_the_environment_keep_their_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "agent:\n  env: {FROM_FILE: '1'}\n")
    monkeypatch.setenv("CCBRIDGE_AGENT__ENV__ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    assert load_config(path).agent.env == {"FROM_FILE": "1", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}


def test_an_unreadable_env_override_is_a_clear_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AGENT__ALLOWED_TOOLS", "Read")  # a list must be JSON
    with pytest.raises(ConfigError, match=r"CCBRIDGE_AGENT__\* environment variable is not valid.*JSON"):
        load_config(write(tmp_path, ""))


def test_env_overrides_win_over_a_bots_own_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "bots:\n  tg:\n    kind: console\n    agent: {model: from-bot, max_turns: 4}\n")
    monkeypatch.setenv("CCBRIDGE_AGENT__MODEL", "from-env")
    sections = load_config(path).for_bot("tg")
    assert sections.agent.model == "from-env"
    assert sections.agent.max_turns == 4  # keys the environment doesn't set keep the bot's value


def test_bot_overrides_merge_over_shared_sections(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
agent: {model: shared, max_turns: 5}
access: {allowlist: ["telegram:1"]}
workspace: {base_dir: ws}
bots:
  tg:
    kind: telegram
    token: abc
    agent: {model: special}
    access: {admins: ["telegram:9"]}
    workspace: {base_dir: other}
  plain:
    kind: console
""",
    )
    config = load_config(path)
    tg = config.for_bot("tg")
    assert tg.agent.model == "special" and tg.agent.max_turns == 5
    assert tg.access.allowlist == ["telegram:1"] and tg.access.admins == ["telegram:9"]
    assert tg.workspace.base_dir == tmp_path / "other"
    assert config.bots["tg"].settings == {"token": "abc"}
    assert config.for_bot("plain").agent.model == "shared"
    with pytest.raises(ConfigError, match="no bot named 'nope'"):
        config.for_bot("nope")


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("agent:\n  pool_size: 0\n", "agent.pool_size"),
        ("agent:\n  modle: x\n", "agent.modle"),
        ("access:\n  allowlist: [alice]\n", "access.allowlist"),
        ("access:\n  busy_policy: panic\n", "access.busy_policy"),
        ("store:\n  backend: mongodb\n", "store.backend"),
        ("bots:\n  tg:\n    token: x\n", "bots.tg.kind"),
        ("bots:\n  tg:\n    kind: telegram\n    agent: {max_turns: -1}\n", "bots.tg.agent.max_turns"),
        ("nonsense: 1\n", "nonsense"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    path = write(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as info:
        config = load_config(path)
        for name in config.bots:
            config.for_bot(name)
    assert key in str(info.value)


def test_bypass_permissions_is_refused_as_root(tmp_path: Path) -> None:
    import os

    path = write(tmp_path, "agent:\n  permission_mode: bypassPermissions\n")
    if os.geteuid() == 0:
        with pytest.raises(ConfigError, match="refuses bypassPermissions when run as root"):
            load_config(path)
    else:
        assert load_config(path).agent.permission_mode == "bypassPermissions"


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "agent: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a list\n"))
