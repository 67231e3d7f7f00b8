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
        "DISCORD_BOT_TOKEN": "MTA-example.discord.token",
        "FEISHU_APP_ID": "cli_a1b2c3d4e5f6",
        "FEISHU_APP_SECRET": "an-example-app-secret",
    }
    for name, value in plausible.items():
        monkeypatch.setenv(name, value)
    config = load_config(example)
    assert config.agent.permission_mode == "default"
    assert {entry.kind for entry in config.bots.values()} >= {
        "console",
        "telegram",
        "slack",
        "http_api",
        "discord",
        "feishu",
    }
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


def test_an_unreadable_env_override_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AGENT__ALLOWED_TOOLS", "Read")  # a list must be JSON
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, ""))
    assert str(info.value) == (
        "CCBRIDGE_AGENT__ALLOWED_TOOLS: is not valid JSON "
        """(lists and maps are JSON, e.g. CCBRIDGE_AGENT__ALLOWED_TOOLS='["Read"]')"""
    )


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
    with pytest.raises(ConfigError, match="YAML syntax error"):
        load_config(write(tmp_path, "agent: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a list\n"))


# -- errors name what to fix, one line each, verbatim ------------------------------------------


def _error(path: Path, bot: str | None = None, *, problems: int | None = 1) -> str:
    """The error loading ``path`` (and parsing ``bot``'s own settings as run_bot.py does): one line
    per problem, ``problems`` of them (None: any number)."""
    from bots import load_bot_class

    with pytest.raises(ConfigError) as info:
        config = load_config(path)
        for name, entry in config.bots.items():
            if bot is None or name == bot:
                try:
                    load_bot_class(entry.kind).parse_settings(name, entry.settings)
                except ConfigError as exc:
                    raise config.explain(exc, prefix=f"bots.{name}") from None
    message = str(info.value)
    assert message and (problems is None or len(message.splitlines()) == problems), message
    return message


def test_a_bad_log_level_lists_the_levels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _error(write(tmp_path, "log_level: LOUD\n")) == (
        "log_level: 'LOUD' is not a log level (use DEBUG, INFO, WARNING, ERROR or CRITICAL)"
    )
    assert load_config(write(tmp_path, "log_level: debug\n")).log_level == "DEBUG"
    monkeypatch.setenv("CCBRIDGE_LOG_LEVEL", "chatty")
    assert _error(write(tmp_path, "")) == (
        "CCBRIDGE_LOG_LEVEL: 'chatty' is not a log level (use DEBUG, INFO, WARNING, ERROR or CRITICAL)"
    )


def test_a_failing_env_override_names_the_variable_not_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AGENT__POOL_SIZE", "many")
    assert _error(write(tmp_path, "agent:\n  pool_size: 3\n")) == (
        "CCBRIDGE_AGENT__POOL_SIZE: Input should be a valid integer, unable to parse string as an integer"
    )
    monkeypatch.setenv("CCBRIDGE_AGENT__POOL_SIZE", "0")
    assert _error(write(tmp_path, "")) == "CCBRIDGE_AGENT__POOL_SIZE: Input should be greater than 0"
    monkeypatch.delenv("CCBRIDGE_AGENT__POOL_SIZE")
    monkeypatch.setenv("CCBRIDGE_AGENT__MAX_TURNS", "-1")  # checked again with a bot's overrides: still the variable
    config_text = "bots:\n  tg:\n    kind: console\n    agent: {max_turns: 4}\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, config_text)).for_bot("tg")
    assert str(info.value) == "CCBRIDGE_AGENT__MAX_TURNS: Input should be greater than 0"
    monkeypatch.delenv("CCBRIDGE_AGENT__MAX_TURNS")
    monkeypatch.setenv("CCBRIDGE_BOTS__TG__AGENT__MAX_TURNS", "many")  # the bot's own variable wins, and is named
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, config_text)).for_bot("tg")
    assert str(info.value) == (
        "CCBRIDGE_BOTS__TG__AGENT__MAX_TURNS: Input should be a valid integer, unable to parse string as an integer"
    )
    monkeypatch.delenv("CCBRIDGE_BOTS__TG__AGENT__MAX_TURNS")
    monkeypatch.setenv("CCBRIDGE_STORE__BACKEND", "floppy")  # a backend that does not exist
    assert _error(write(tmp_path, "")) == "CCBRIDGE_STORE__BACKEND: must be one of: sqlite, memory, redis, postgres"
    monkeypatch.delenv("CCBRIDGE_STORE__BACKEND")
    monkeypatch.setenv("CCBRIDGE_AGENT__MODLE", "x")
    assert _error(write(tmp_path, "")) == "CCBRIDGE_AGENT__MODLE: Extra inputs are not permitted"


def test_a_mistyped_env_section_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AGNET__MODEL", "claude-x")
    monkeypatch.setenv("CCBRIDGE_API_KEY", "not an override")  # no "__": a variable the config may use
    monkeypatch.setenv("CCBRIDGE_SECRET__A", "used by the file")
    config = load_config(write(tmp_path, "agent:\n  system_prompt: ${CCBRIDGE_SECRET__A}\n"))
    assert config.warnings == [
        "CCBRIDGE_AGNET__MODEL is not a ccbridge setting (sections: agent, workspace, store, access, reply, "
        "coordination, projects, budgets, ops, bots); did you mean CCBRIDGE_AGENT__MODEL?"
    ]
    assert config.agent.model is None


@pytest.mark.parametrize(
    ("bot", "yaml_text", "message"),
    [
        (
            "tg",
            "bots:\n  tg:\n    kind: telegram\n    token: ${TELEGRAM_BOT_TOKEN}\n",
            "bots.tg.token: is empty; set TELEGRAM_BOT_TOKEN (config.yaml uses ${TELEGRAM_BOT_TOKEN})",
        ),
        (
            "team",
            "bots:\n  team:\n    kind: slack\n    bot_token: ${SLACK_BOT_TOKEN:-}\n    app_token: xapp-1\n",
            "bots.team.bot_token: is empty; set SLACK_BOT_TOKEN (config.yaml uses ${SLACK_BOT_TOKEN:-})",
        ),
        (  # blank means "not set" for app_token: the mode's check says what is missing, then which variable
            "team",
            "bots:\n  team:\n    kind: slack\n    bot_token: xoxb-1\n    app_token: ${SLACK_APP_TOKEN:-}\n",
            "bots.team: app_token is required when mode is 'socket' (or set mode: http with a signing_secret); "
            "set SLACK_APP_TOKEN (config.yaml uses ${SLACK_APP_TOKEN:-})",
        ),
        (
            "team",
            "bots:\n  team:\n    kind: slack\n    mode: http\n    bot_token: xoxb-1\n"
            "    signing_secret: ${SLACK_SIGNING_SECRET:-}\n",
            "bots.team: signing_secret is required when mode is 'http' (Basic Information > Signing Secret); "
            "set SLACK_SIGNING_SECRET (config.yaml uses ${SLACK_SIGNING_SECRET:-})",
        ),
        (
            "api",
            "bots:\n  api:\n    kind: http_api\n    api_keys: ['${CCBRIDGE_API_KEY:-}']\n",
            'bots.api: api_keys is empty: set at least one key (e.g. api_keys: ["${CCBRIDGE_API_KEY}"]; blank entries '
            "such as an unset environment variable are ignored), or set allow_anonymous: true to serve without "
            "authentication; set CCBRIDGE_API_KEY (config.yaml uses ${CCBRIDGE_API_KEY:-})",
        ),
    ],
)
def test_an_empty_token_names_its_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bot: str, yaml_text: str, message: str
) -> None:
    for name in (
        "TELEGRAM_BOT_TOKEN",
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN",
        "SLACK_SIGNING_SECRET",
        "CCBRIDGE_API_KEY",
    ):
        monkeypatch.setenv(name, "")
    assert _error(write(tmp_path, yaml_text), bot) == message


def test_every_example_bot_names_the_variable_its_empty_token_comes_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever platforms config.yaml.example has, each one's empty secret names its variable."""
    import re

    example = Path(__file__).resolve().parents[2] / "config.yaml.example"
    for name in re.findall(r"\$\{(\w+)", example.read_text()):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "config.yaml"
    path.write_text(example.read_text())
    config = load_config(path)
    needing_secrets = [name for name, entry in config.bots.items() if entry.kind != "console"]
    assert needing_secrets
    for name in needing_secrets:
        message = _error(path, name, problems=None)
        for line in message.splitlines():
            assert re.fullmatch(rf"bots\.{name}[.:].* set (\w+) \(config\.yaml uses \$\{{\1:-\}}\)", line), line


def test_a_value_from_a_variable_says_so_when_it_is_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "not-a-token")
    assert _error(write(tmp_path, "bots:\n  tg:\n    kind: telegram\n    token: ${TELEGRAM_BOT_TOKEN}\n")) == (
        "bots.tg.token: does not look like a bot token ('123456:ABC...' from @BotFather) "
        "(the value comes from TELEGRAM_BOT_TOKEN)"
    )


@pytest.mark.parametrize(
    ("kind", "keys", "variable"),
    [
        ("telegram", ["token"], "TELEGRAM_BOT_TOKEN"),
        ("discord", ["token"], "DISCORD_BOT_TOKEN"),
    ],
)
def test_an_empty_token_written_in_the_file_names_its_variable(
    tmp_path: Path, kind: str, keys: list[str], variable: str
) -> None:
    body = "".join(f'    {k}: ""\n' for k in keys)
    message = _error(write(tmp_path, f"bots:\n  b:\n    kind: {kind}\n{body}"))
    assert message.startswith("bots.b.token: is empty") and variable in message


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            "agent:\n  model: x\n   pool_size: 3\n",
            "config.yaml:3:13: YAML syntax error: mapping values are not allowed here",
        ),
        (
            "agent: [unclosed\n",
            "config.yaml:2:1: YAML syntax error: expected ',' or ']', but got '<stream end>' "
            "(while parsing a flow sequence at line 1, column 8)",
        ),
        (
            "agent:\n\tmodel: x\n",
            "config.yaml:2:1: YAML syntax error: found character '\\t' that cannot start any token "
            "(while scanning for the next token)",
        ),
    ],
)
def test_yaml_syntax_errors_name_the_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, yaml_text: str, message: str
) -> None:
    write(tmp_path, yaml_text)
    monkeypatch.chdir(tmp_path)
    assert _error(Path("config.yaml")) == message


def test_a_config_file_that_is_not_utf8_is_one_line_naming_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.yaml").write_bytes("agent:\n  system_prompt: Grüße\n".encode("latin-1"))
    monkeypatch.chdir(tmp_path)
    assert _error(Path("config.yaml")) == "config.yaml:2: not UTF-8 text (byte 0xfc); save the file as UTF-8"


def test_other_errors_are_one_line_naming_the_key(tmp_path: Path) -> None:
    assert _error(write(tmp_path, "store:\n  backend: floppy\n")) == (
        "store.backend: must be one of: sqlite, memory, redis, postgres"
    )
    assert _error(write(tmp_path, "log_format: xml\n")) == "log_format: Input should be 'text' or 'json'"
    assert _error(write(tmp_path, "bots:\n  tg:\n    kind: telegram\n    token: ${NOPE_TOKEN}\n")) == (
        "bots.tg.token: environment variable NOPE_TOKEN is not set (set it, add it to .env, or write "
        "${NOPE_TOKEN:-default})"
    )


def test_several_errors_are_one_line_each(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "agent:\n  pool_size: zero\nstore:\n  backend: floppy\n"))
    assert str(info.value).splitlines() == [
        "agent.pool_size: Input should be a valid integer, unable to parse string as an integer",
        "store.backend: must be one of: sqlite, memory, redis, postgres",
    ]


# -- the environment: .env files, empty overrides, switching the store ------------------------


def test_env_files_never_override_and_the_config_directory_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.config import load_env_files

    conf_dir, cwd = tmp_path / "conf", tmp_path / "work"
    conf_dir.mkdir()
    cwd.mkdir()
    (conf_dir / ".env").write_text("WHO=from-config-dir\nONLY_CONF=1\n")
    (cwd / ".env").write_text("WHO=from-cwd\nONLY_CWD=2\nREAL=from-file\n")
    for name in ("WHO", "ONLY_CONF", "ONLY_CWD"):
        monkeypatch.setenv(name, "")  # recorded, so what the .env files set is undone afterwards
        monkeypatch.delenv(name)
    monkeypatch.setenv("REAL", "from-environment")
    read = load_env_files(conf_dir / "config.yaml", cwd=cwd)
    assert read == [conf_dir / ".env", cwd / ".env"]
    import os

    assert (os.environ["WHO"], os.environ["ONLY_CONF"], os.environ["ONLY_CWD"]) == ("from-config-dir", "1", "2")
    assert os.environ["REAL"] == "from-environment"
    (conf_dir / "config.yaml").write_text("agent:\n  model: ${WHO}\n")
    assert load_config(conf_dir / "config.yaml").agent.model == "from-config-dir"  # ${VAR} sees .env values


def test_a_malformed_env_file_is_one_line_naming_the_line(tmp_path: Path) -> None:
    from core.config import load_env_files

    (tmp_path / ".env").write_text("GOOD=1\nthis is not a variable\n")
    with pytest.raises(ConfigError) as info:
        load_env_files(None, cwd=tmp_path)
    assert str(info.value) == f"{tmp_path / '.env'}:2: not a NAME=value line"


def test_an_empty_env_override_counts_as_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCBRIDGE_AGENT__MODEL", "")
    monkeypatch.setenv("CCBRIDGE_STORE__PATH", "")
    config = load_config(write(tmp_path, "agent:\n  model: from-file\n"))
    assert config.agent.model == "from-file"
    assert config.resolved().store.path == tmp_path / "data" / "ccbridge.db"


def test_an_env_override_of_the_store_backend_replaces_the_files_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CCBRIDGE_STORE__BACKEND", "postgres")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/ccbridge")
    config = load_config(write(tmp_path, "store:\n  backend: sqlite\n  path: data/x.db\n  history_limit: 7\n"))
    assert config.store.backend == "postgres" and config.store.history_limit == 7
    assert config.store.dsn is not None and config.store.dsn.get_secret_value() == "postgresql://db/ccbridge"


def test_log_settings(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "log_format: json\nlog_file: logs/ccbridge.log\n"))
    assert config.log_format == "json"
    assert config.log_path == tmp_path / "logs" / "ccbridge.log"
    assert load_config(write(tmp_path, "")).log_path is None


# -- coordination in short ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "backend", "url"),
    [
        ("redis", "redis", None),  # the URL from $REDIS_URL when it connects
        ("Redis", "redis", None),
        ("memory", "memory", None),
        ("redis://cache:6379/0", "redis", "redis://cache:6379/0"),
        ("rediss://user:pw@cache:6380/1", "redis", "rediss://user:pw@cache:6380/1"),
        ("unix:///run/redis.sock", "redis", "unix:///run/redis.sock"),
    ],
)
def test_coordination_may_be_written_in_short(tmp_path: Path, written: str, backend: str, url: str | None) -> None:
    config = load_config(write(tmp_path, f"coordination: {written}\nbots:\n  tg:\n    kind: console\n"))
    assert (config.coordination.backend, config.coordination.url) == (backend, url)
    assert config.coordination.key_prefix == "ccbridge:" and config.coordination.lease_ttl == 15.0  # the defaults
    sections = config.for_bot("tg")
    assert (sections.coordination.backend, sections.coordination.url) == (backend, url)
    from core import Sections

    assert Sections.model_validate({"coordination": written}).coordination == config.coordination


def test_coordination_in_short_takes_a_variable_and_works_in_a_bots_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://shared:6379/2")
    config = load_config(write(tmp_path, "coordination: ${REDIS_URL}\n"))
    assert (config.coordination.backend, config.coordination.url) == ("redis", "redis://shared:6379/2")
    text = (
        "coordination: {backend: redis, url: 'redis://a:6379/0', key_prefix: 'team:'}\n"
        "bots:\n"
        "  solo:\n    kind: console\n    coordination: memory\n"
        "  other:\n    kind: console\n    coordination: redis://b:6379/0\n"
        "  same:\n    kind: console\n    coordination: redis\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.for_bot("solo").coordination.backend == "memory"
    other = config.for_bot("other").coordination
    assert (other.backend, other.url, other.key_prefix) == ("redis", "redis://b:6379/0", "team:")  # merged
    same = config.for_bot("same").coordination
    assert (same.backend, same.url) == ("redis", "redis://a:6379/0")  # the shared URL is kept


def test_a_coordination_short_form_that_is_no_backend_names_the_key(tmp_path: Path) -> None:
    hint = "is not a coordination backend: write memory, redis, a redis:// URL, or a mapping (backend: redis, url: ...)"
    assert _error(write(tmp_path, "coordination: etcd\n")) == f"coordination: 'etcd' {hint}"
    text = "bots:\n  tg:\n    kind: console\n    coordination: http://cache:6379\n"
    assert _error(write(tmp_path, text)) == f"bots.tg.coordination: 'http://cache:6379' {hint}"


# -- the store in short ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("memory", {"backend": "memory"}),
        ("SQLite", {"backend": "sqlite", "path": "data/ccbridge.db"}),
        ("data/team.db", {"backend": "sqlite", "path": "data/team.db"}),
        ("sqlite:///var/lib/bot.sqlite3", {"backend": "sqlite", "path": "var/lib/bot.sqlite3"}),
        ("redis://cache:6379/0", {"backend": "redis", "url": "redis://cache:6379/0"}),
        (
            "postgresql://bot:pw@db:5432/ccbridge",
            {"backend": "postgres", "dsn": "postgresql://bot:pw@db:5432/ccbridge"},
        ),
        ("postgres://db/ccbridge", {"backend": "postgres", "dsn": "postgres://db/ccbridge"}),
        ("{backend: postgresql, dsn: 'postgresql://db/x'}", {"backend": "postgres", "dsn": "postgresql://db/x"}),
    ],
)
def test_the_store_may_be_written_in_short(tmp_path: Path, written: str, expected: dict[str, str]) -> None:
    config = load_config(write(tmp_path, f"store: {written}\nbots:\n  tg:\n    kind: console\n"))
    for store in (config.store, config.for_bot("tg").store):
        assert store.backend == expected["backend"]
        for secret in ("url", "dsn"):
            if secret in expected:
                assert getattr(store, secret).get_secret_value() == expected[secret]
    if "path" in expected:  # relative to the config file (sqlite:/// as SQLAlchemy spells it: 4 slashes absolute)
        assert config.for_bot("tg").store.path == tmp_path / expected["path"]  # type: ignore[union-attr]
    assert config.store.history_limit == 1000  # the defaults


def test_the_store_in_short_takes_its_url_from_the_environment_and_works_in_a_bots_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://shared:6379/2")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/team")
    text = "store: redis\nbots:\n  solo:\n    kind: console\n    store: memory\n  pg:\n    kind: console\n    store: postgres\n"
    config = load_config(write(tmp_path, text))
    assert config.store.url.get_secret_value() == "redis://shared:6379/2"  # type: ignore[union-attr]
    assert config.for_bot("solo").store.backend == "memory"
    pg = config.for_bot("pg").store
    assert (pg.backend, pg.dsn.get_secret_value()) == ("postgres", "postgresql://db/team")  # type: ignore[union-attr]


def test_a_store_short_form_that_is_no_store_names_the_key(tmp_path: Path) -> None:
    hint = "is not a store: write sqlite, memory, redis, postgres, a redis:// URL, a postgresql:// DSN"
    assert _error(write(tmp_path, "store: mongodb\n")).startswith(f"store: 'mongodb' {hint}")
    text = "bots:\n  tg:\n    kind: console\n    store: http://db\n"
    assert _error(write(tmp_path, text)).startswith(f"bots.tg.store: 'http://db' {hint}")


# -- the process cap is the pool size -----------------------------------------------------------


def test_the_process_cap_is_the_pool_size_and_max_processes_is_deprecated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(write(tmp_path, "agent:\n  pool_size: 5\n"))
    assert config.agent.max_processes is None and config.agent.process_limit == 5
    assert config.warnings == []

    config = load_config(write(tmp_path, "agent:\n  pool_size: 5\n  max_processes: 7\n"))
    assert config.agent.process_limit == 5  # above the pool size: ignored
    assert config.warnings == [
        "agent.max_processes is deprecated and ignored: the Claude Code processes alive are capped at "
        "agent.pool_size (5), plus the ones being closed; remove it"
    ]

    text = "agent:\n  pool_size: 5\nbots:\n  tg:\n    kind: console\n    agent: {max_processes: 3}\n"
    config = load_config(write(tmp_path, text))
    assert config.agent.process_limit == 5 and config.for_bot("tg").agent.process_limit == 3  # below: it lowers
    assert config.warnings == [
        "bots.tg.agent.max_processes is deprecated: it caps the Claude Code processes alive (and the warm pool) "
        "at 3, below agent.pool_size (5); set agent.pool_size to 3 instead"
    ]

    monkeypatch.setenv("CCBRIDGE_AGENT__MAX_PROCESSES", "10")
    config = load_config(write(tmp_path, ""))
    assert config.agent.process_limit == 8
    assert [w.split(" is ")[0] for w in config.warnings] == ["CCBRIDGE_AGENT__MAX_PROCESSES"]


@pytest.mark.parametrize(
    ("store", "backend"),
    [
        ("postgresql://bot@db/ccbridge", "postgres"),
        ("{backend: postgres, dsn: 'postgresql://bot@db/ccbridge'}", "postgres"),
        ("redis://cache:6379/0", "redis"),
        ("memory", "memory"),
    ],
)
def test_the_images_sqlite_path_leaves_another_store_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str, backend: str
) -> None:
    monkeypatch.setenv("CCBRIDGE_STORE__PATH", "/data/ccbridge.db")  # as the Dockerfile sets it
    monkeypatch.setenv("CCBRIDGE_STORE__HISTORY_LIMIT", "50")  # a key every backend has still applies
    config = load_config(write(tmp_path, f"store: {store}\n"))
    assert config.store.backend == backend and config.store.history_limit == 50
    if backend != "memory":  # the file's address is kept
        secret = getattr(config.store, "dsn", None) or getattr(config.store, "url", None)
        assert secret is not None and secret.get_secret_value() in store
    assert config.warnings == [f"CCBRIDGE_STORE__PATH is not a setting of store: {backend}; ignored"]


def test_the_images_sqlite_path_applies_to_sqlite_and_coordination_in_short_takes_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CCBRIDGE_STORE__PATH", "/data/ccbridge.db")
    monkeypatch.setenv("CCBRIDGE_COORDINATION__LEASE_TTL", "30")
    config = load_config(write(tmp_path, "store: sqlite\ncoordination: redis://cache:6379/1\n"))
    assert config.store.backend == "sqlite" and config.store.path == Path("/data/ccbridge.db")  # type: ignore[union-attr]
    assert (config.coordination.backend, config.coordination.url, config.coordination.lease_ttl) == (
        "redis",
        "redis://cache:6379/1",
        30.0,
    )
    assert config.warnings == []


def test_a_missing_bot_setting_says_where_to_give_it_and_the_variable_named_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "bots:\n  tg:\n    kind: telegram\n")
    monkeypatch.delenv("CCBRIDGE_BOTS__TG__TOKEN", raising=False)
    assert _error(path) == f"bots.tg.token: is required; add it to {path.name} or set CCBRIDGE_BOTS__TG__TOKEN"
    from bots import load_bot_class

    monkeypatch.setenv("CCBRIDGE_BOTS__TG__TOKEN", "123:" + "a" * 30)
    entry = load_config(path).bots["tg"]
    settings = load_bot_class(entry.kind).parse_settings("tg", entry.settings)
    assert settings.token.get_secret_value() == "123:" + "a" * 30


def test_a_missing_project_path_names_the_file_and_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "projects:\n  api:\n    places: ['slack:C1']\n")
    assert _error(path) == "projects.api.path: is required; add it to config.yaml or set CCBRIDGE_PROJECTS__API__PATH"
    monkeypatch.setenv("CCBRIDGE_PROJECTS__API__PATH", str(tmp_path))
    assert load_config(path).projects["api"].path == tmp_path


def test_a_key_written_twice_is_one_line_naming_both_places(tmp_path: Path) -> None:
    path = write(tmp_path, "bots:\n  a:\n    kind: console\nagent:\n  model: x\nbots:\n  b:\n    kind: console\n")
    assert _error(path) == f"{path}:6:1: 'bots' is written twice here (first at line 1); keep one"
    nested = write(tmp_path, "agent:\n  model: x\n  pool_size: 2\n  model: y\n")
    assert _error(nested) == f"{nested}:4:3: 'model' is written twice here (first at line 2); keep one"


def test_a_merged_mapping_may_still_override_what_it_merges(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bots:\n  a: &base\n    kind: console\n    enabled: true\n  b:\n    <<: *base\n    enabled: false\n",
    )
    bots = load_config(path).bots
    assert (bots["a"].kind, bots["a"].enabled, bots["b"].kind, bots["b"].enabled) == ("console", True, "console", False)


@pytest.mark.parametrize(
    ("section", "module", "message"),
    [
        ("coordination", "core.coordination.redis", "redis coordination needs the package 'redis'"),
        ("store", "core.store.redis", "the redis store needs the package 'redis'"),
    ],
)
def test_a_backend_whose_package_is_missing_is_a_config_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, section: str, module: str, message: str
) -> None:
    import sys

    from core.config import CoordinationSettings
    from core.coordination import create_coordination
    from core.store import MemoryStore, create_store
    from core.store.settings import RedisStoreSettings

    for name in ("redis", "redis.asyncio"):
        monkeypatch.setitem(sys.modules, name, None)  # as if the package were not installed
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ConfigError) as info:
        if section == "coordination":
            create_coordination(CoordinationSettings(backend="redis", url="redis://127.0.0.1:1/0"), MemoryStore())
        else:
            create_store(RedisStoreSettings(backend="redis", url="redis://127.0.0.1:1/0"))
    assert str(info.value).startswith(f"{section}.backend: {message}: pip install 'ccbridge[redis]'")
