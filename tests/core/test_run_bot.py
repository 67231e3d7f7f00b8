"""run_bot.py as users run it: a real process, the console bot piped, --check, clear errors."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shlex
import shutil
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.fakes.anthropic_api import FakeAnthropicAPI, ToolCall

REPO = Path(__file__).resolve().parents[2]


async def run_bot(*args: str, stdin: str = "", cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CCBRIDGE_", "CLAUDE_"))}
    base["HOME"] = str(cwd)  # no Claude Code login in here
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "run_bot.py"),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env={**base, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write_config(tmp_path: Path, cli_env: dict[str, str], **extra: object) -> Path:
    config = {"agent": {"env": cli_env}, "workspace": {"base_dir": "ws"}, "log_level": "WARNING", **extra}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def test_piped_console_answers_each_line_and_resumes_after_a_restart(
    tmp_path: Path, cli_env: dict[str, str], fake_api: FakeAnthropicAPI
) -> None:
    config = write_config(tmp_path, cli_env)
    code, out, err = await run_bot("--config", str(config), stdin="hello one\nhello two\n", cwd=tmp_path)
    assert code == 0, err
    assert out.splitlines() == ["echo: hello one", "echo: hello two"]
    assert (tmp_path / "data" / "ccbridge.db").is_file()  # SQLite is the embedded default
    code, out, err = await run_bot("--config", str(config), stdin="and three\n/status\n", cwd=tmp_path)
    assert code == 0, err
    assert out.splitlines()[0] == "echo: and three"
    assert "3 message(s)" in out
    assert fake_api.requests[-1].user_texts()[-3:] == ["hello one", "hello two", "and three"]


async def test_piped_console_answers_approvals_from_the_next_line(
    tmp_path: Path, cli_env: dict[str, str], fake_api: FakeAnthropicAPI
) -> None:
    config = write_config(tmp_path, cli_env)
    fake_api.rules["make it"] = [ToolCall("Bash", {"command": "echo made > made.txt"})]
    code, out, err = await run_bot("--config", str(config), stdin="make it\no\n", cwd=tmp_path)
    assert code == 0, err
    assert "Claude wants to use Bash: echo made > made.txt" in out
    assert "Allowed once" in out
    made = list((tmp_path / "ws" / "console").glob("*/made.txt"))
    assert made and made[0].read_text() == "made\n"


async def test_check_says_what_would_run(tmp_path: Path, cli_env: dict[str, str]) -> None:
    config = write_config(tmp_path, cli_env)
    code, out, _ = await run_bot("--config", str(config), "--check", cwd=tmp_path)
    assert code == 0
    assert "config OK" in out and "would run: console (console" in out and "credentials: ANTHROPIC_API_KEY" in out
    assert "sandbox for approved Bash commands: active (Claude Code's bubblewrap sandbox" in out


async def test_check_adds_up_the_process_caps_of_several_bots(tmp_path: Path, cli_env: dict[str, str]) -> None:
    bots = {
        "one": {"kind": "http_api", "allow_anonymous": True, "port": 0},
        "two": {"kind": "http_api", "allow_anonymous": True, "port": 0, "agent": {"pool_size": 3}},
    }
    config = write_config(tmp_path, cli_env, agent={"env": cli_env, "pool_size": 5}, bots=bots)
    code, out, err = await run_bot("--config", str(config), "--check", cwd=tmp_path)
    assert code == 0, err
    assert "Claude Code processes: at most 8 alive (5 + 3, each bot's pool_size)" in out


async def test_no_config_file_runs_the_console_bot_by_default(tmp_path: Path) -> None:
    code, out, _ = await run_bot("--check", cwd=tmp_path)
    assert code == 0 and "defaults, no config file" in out and "would run: console" in out


async def test_bad_config_is_rejected_with_one_line_per_problem(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("agent:\n  pool_size: zero\nstore:\n  backend: floppy\n")
    code, out, err = await run_bot("--config", str(path), "--check", cwd=tmp_path)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "ccbridge: agent.pool_size: Input should be a valid integer, unable to parse string as an integer",
        "ccbridge: store.backend: must be one of: sqlite, memory, redis, postgres",
    ]


async def test_unknown_bot_kind_and_name_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("bots:\n  team:\n    kind: carrier_pigeon\n")
    code, _, err = await run_bot("--config", str(path), "--check", cwd=tmp_path)
    assert code == 2 and "bots.team.kind: unknown bot kind 'carrier_pigeon'" in err
    code, _, err = await run_bot("--config", str(path), "--bot", "nobody", "--check", cwd=tmp_path)
    assert code == 2 and "no bot named nobody" in err


async def test_bot_option_selects_which_bots_run(tmp_path: Path, cli_env: dict[str, str]) -> None:
    bots = {"front": {"kind": "console", "user": "ann"}, "back": {"kind": "console", "user": "bob"}}
    config = write_config(tmp_path, cli_env, bots=bots)
    code, out, _ = await run_bot("--config", str(config), "--check", cwd=tmp_path)
    assert code == 0 and "would run: front" in out and "would run: back" in out
    code, out, _ = await run_bot("--config", str(config), "--bot", "back", "--check", cwd=tmp_path)
    assert code == 0 and "would run: back (console, user bob)" in out and "would run: front" not in out


async def test_missing_credentials_get_one_clear_line_naming_a_login_command_that_exists(tmp_path: Path) -> None:
    code, out, err = await run_bot(stdin="hi\n", cwd=tmp_path)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "ANTHROPIC_API_KEY" in lines[0] and ".env" in lines[0]
    command = shlex.split(re.search(r"log in once with `([^`]+)`", lines[0]).group(1))
    assert command[1:] == ["auth", "login"]
    assert shutil.which(command[0]) or Path(command[0]).is_file()
    proc = await asyncio.create_subprocess_exec(
        *command, "--help", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "")},
    )  # fmt: skip
    help_text, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0 and "Sign in to your Anthropic account" in help_text.decode()


async def test_an_existing_claude_code_login_counts_as_credentials(tmp_path: Path) -> None:
    (tmp_path / ".claude").mkdir()
    (tmp_path / ".claude" / ".credentials.json").write_text("{}")
    code, out, _ = await run_bot("--check", cwd=tmp_path)
    assert code == 0 and "credentials: Claude Code login" in out


async def test_anthropic_variables_from_the_environment_reach_the_cli(
    tmp_path: Path, cli_env: dict[str, str], fake_api: FakeAnthropicAPI
) -> None:
    only_home = {k: v for k, v in cli_env.items() if not k.startswith("ANTHROPIC_")}
    config = write_config(tmp_path, only_home)
    env = {"ANTHROPIC_BASE_URL": fake_api.base_url, "ANTHROPIC_AUTH_TOKEN": "token-from-env"}
    code, out, err = await run_bot("--config", str(config), stdin="who am I?\n", cwd=tmp_path, env=env)
    assert code == 0, err
    assert out.strip() == "echo: who am I?"
    headers = {k.lower(): v for k, v in fake_api.requests[-1].headers.items()}
    assert headers["authorization"] == "Bearer token-from-env"


async def sigterm_mid_turn(tmp_path: Path, config: Path, fake_api: FakeAnthropicAPI, line: bytes) -> tuple[str, str]:
    """run_bot.py's piped console given ``line``, sent SIGTERM once the turn reached the model: its stdout, stderr."""
    from tests.helpers import eventually

    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO / "run_bot.py"), "--config", str(config),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(line)
    await proc.stdin.drain()
    await eventually(lambda: fake_api.requests, what="the turn to reach the model")
    proc.terminate()
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode(), err.decode()


async def test_sigterm_lets_the_running_reply_finish(
    tmp_path: Path, cli_env: dict[str, str], fake_api: FakeAnthropicAPI
) -> None:
    from tests.fakes.anthropic_api import Text

    fake_api.rules["short story"] = [Text("Once upon a time they lived happily ever after.", chunks=6, delay=0.3)]
    out, _ = await sigterm_mid_turn(tmp_path, write_config(tmp_path, cli_env), fake_api, b"a short story please\n")
    assert out.strip() == "Once upon a time they lived happily ever after."  # the drain let it end: no "Stopped"


async def test_sigterm_stops_replies_still_running_after_the_drain_cleanly(
    tmp_path: Path, cli_env: dict[str, str], fake_api: FakeAnthropicAPI
) -> None:
    from tests.fakes.anthropic_api import Hang

    config = write_config(tmp_path, cli_env, drain_timeout=0.5)
    fake_api.rules["long story"] = [Hang("Once upon a time", seconds=60)]
    out, _ = await sigterm_mid_turn(tmp_path, config, fake_api, b"a long story please\n")
    # what had streamed when the drain ended is kept, then the stop is shown (on a loaded machine the
    # signal can beat the first words from the model to the bot: then only the stop shows)
    assert out.strip() in ("Once upon a time\n\n⏹ Stopped.", "⏹ Stopped.")


async def test_version_names_ccbridge_the_sdk_and_the_cli(tmp_path: Path) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    from claude_agent_sdk._cli_version import __cli_version__

    code, out, _ = await run_bot("--version", cwd=tmp_path)
    assert code == 0
    assert re.fullmatch(
        rf"ccbridge {re.escape(version)} \(claude-agent-sdk [0-9.]+, Claude Code {re.escape(__cli_version__)}\)\n", out
    )


async def test_the_ccbridge_command_is_the_entry_point(tmp_path: Path) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"ccbridge": "run_bot:main"}
    installed = Path(sys.executable).with_name("ccbridge")
    if installed.is_file():  # an installed checkout (make install): the command runs this code
        proc = await asyncio.create_subprocess_exec(
            str(installed), "--check", cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "HOME": str(tmp_path)},
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0 and "would run: console" in out.decode()


async def test_config_errors_through_the_command_are_one_line_each(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("log_level: LOUD\n")
    code, _, err = await run_bot("--config", "config.yaml", "--check", cwd=tmp_path)
    assert (code, err) == (
        2,
        "ccbridge: log_level: 'LOUD' is not a log level (use DEBUG, INFO, WARNING, ERROR or CRITICAL)\n",
    )

    (tmp_path / "config.yaml").write_text("agent:\n  model: x\n   pool_size: 3\n")
    code, _, err = await run_bot("--config", "config.yaml", "--check", cwd=tmp_path)
    assert (code, err) == (2, "ccbridge: config.yaml:3:13: YAML syntax error: mapping values are not allowed here\n")

    (tmp_path / "config.yaml").write_text("bots:\n  tg:\n    kind: telegram\n    token: ${TELEGRAM_BOT_TOKEN}\n")
    code, _, err = await run_bot("--config", "config.yaml", "--check", cwd=tmp_path, env={"TELEGRAM_BOT_TOKEN": ""})
    expected = "ccbridge: bots.tg.token: is empty; set TELEGRAM_BOT_TOKEN (config.yaml uses ${TELEGRAM_BOT_TOKEN})\n"
    assert (code, err) == (2, expected)

    (tmp_path / "config.yaml").write_text("")
    env = {"CCBRIDGE_AGENT__POOL_SIZE": "many"}
    code, _, err = await run_bot("--config", "config.yaml", "--check", cwd=tmp_path, env=env)
    expected = (
        "ccbridge: CCBRIDGE_AGENT__POOL_SIZE: Input should be a valid integer, unable to parse string as an integer\n"
    )
    assert (code, err) == (2, expected)

    code, _, err = await run_bot("--log-level", "loud", "--check", cwd=tmp_path)
    expected = "ccbridge: --log-level: 'loud' is not a log level (use DEBUG, INFO, WARNING, ERROR or CRITICAL)\n"
    assert (code, err) == (2, expected)


async def test_a_mistyped_env_section_is_a_warning_line(tmp_path: Path, cli_env: dict[str, str]) -> None:
    config = write_config(tmp_path, cli_env)
    env = {"CCBRIDGE_AGNET__MODEL": "claude-x"}
    code, out, err = await run_bot("--config", str(config), "--check", cwd=tmp_path, env=env)
    assert code == 0 and "config OK" in out
    assert err == (
        "warning: CCBRIDGE_AGNET__MODEL is not a ccbridge setting (sections: agent, workspace, store, access, reply, "
        "coordination, projects, budgets, ops, bots); did you mean CCBRIDGE_AGENT__MODEL?\n"
    )


async def test_env_files_are_read_and_the_environment_wins(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text("bots:\n  me:\n    kind: console\n    user: ${WHO}\n")
    (conf / ".env").write_text("WHO=from-config-dir\nANTHROPIC_API_KEY=sk-from-env-file\n")
    (tmp_path / ".env").write_text("WHO=from-cwd\n")
    code, out, _ = await run_bot("--config", "conf/config.yaml", "--check", cwd=tmp_path)
    assert code == 0, out
    assert "would run: me (console, user from-config-dir)" in out
    assert "credentials: ANTHROPIC_API_KEY" in out
    assert f"environment file: {conf / '.env'}\nenvironment file: {tmp_path / '.env'}\n" in out
    code, out, _ = await run_bot("--config", "conf/config.yaml", "--check", cwd=tmp_path, env={"WHO": "from-env"})
    assert "would run: me (console, user from-env)" in out
    (conf / ".env").unlink()
    code, out, _ = await run_bot("--config", "conf/config.yaml", "--check", cwd=tmp_path)
    assert "would run: me (console, user from-cwd)" in out and "credentials" in out


async def test_json_logs_are_one_object_per_line_and_stdout_keeps_only_replies(
    tmp_path: Path, cli_env: dict[str, str], fake_api: FakeAnthropicAPI
) -> None:
    config = write_config(tmp_path, cli_env, log_level="DEBUG", log_format="json")
    code, out, err = await run_bot("--config", str(config), stdin="hello json\n", cwd=tmp_path)
    assert code == 0, err
    assert out.splitlines() == ["echo: hello json"]
    records = [json.loads(line) for line in err.splitlines()]
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert any(r["logger"] == "ccbridge" and r["message"].startswith("starting console") for r in records)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"]) for r in records)


async def test_log_file_takes_the_log_off_stderr(
    tmp_path: Path, cli_env: dict[str, str], fake_api: FakeAnthropicAPI
) -> None:
    config = write_config(tmp_path, cli_env, log_level="INFO", log_file="logs/bot.log")
    code, out, err = await run_bot("--config", str(config), stdin="hello file\n", cwd=tmp_path)
    assert code == 0 and out.splitlines() == ["echo: hello file"] and err == ""
    assert "INFO ccbridge: starting console (console, user" in (tmp_path / "logs" / "bot.log").read_text()


def test_the_json_formatter_keeps_extra_fields() -> None:
    import logging

    from core import ConversationKey
    from run_bot import JsonFormatter

    logger = logging.getLogger("ccbridge.test")
    record = logger.makeRecord(
        "ccbridge.test", logging.WARNING, __file__, 1, "turn %s done", ("t1",), None,
        extra={"cost_usd": 0.25, "key": ConversationKey("slack", "U1"), "odd": {(1, 2): "tuple key"}},
    )  # fmt: skip
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING" and entry["logger"] == "ccbridge.test" and entry["message"] == "turn t1 done"
    assert entry["cost_usd"] == 0.25
    assert entry["key"] == str(ConversationKey("slack", "U1"))
    assert entry["odd"] == repr({(1, 2): "tuple key"})
    assert not {"args", "msg", "levelno", "pathname"} & entry.keys()
    try:
        raise ValueError("boom")
    except ValueError:
        import sys as _sys

        failed = logger.makeRecord("ccbridge.test", logging.ERROR, __file__, 1, "failed", (), _sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(failed))["exc_info"]


def test_a_reload_gives_bots_their_own_settings_and_an_invalid_bot_setting_changes_nothing(
    tmp_path: Path, cli_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    import run_bot

    def api(**settings: object) -> dict[str, object]:
        return {"api": {"kind": "http_api", "api_keys": ["k" * 32], "allowed_users": ["alice"], **settings}}

    path = write_config(tmp_path, cli_env, bots=api())
    args = run_bot.parse_args(["--config", str(path)])
    plans = run_bot.plan(run_bot.load(args), [])
    bot = plans[0].bot
    write_config(tmp_path, cli_env, bots=api(allowed_users=["alice", "bob"]), access={"allowlist": ["api:carol"]})
    assert run_bot.reload_plans(args, plans)
    assert bot.settings.allowed_users == ["alice", "bob"]  # type: ignore[attr-defined]
    assert bot.agent.access.settings.allowlist == ["api:carol"]
    assert bot.bots_access["api"].allowlist == ["api:carol"]  # what the HTTP API's /admin/users shows
    caplog.set_level(logging.INFO, logger="ccbridge")
    write_config(tmp_path, cli_env, bots=api(allowed_users=["eve"], max_body_bytes=0))
    assert not run_bot.reload_plans(args, plans)
    assert bot.settings.allowed_users == ["alice", "bob"]  # type: ignore[attr-defined]
    [failure] = [r.getMessage() for r in caplog.records if "reload failed" in r.getMessage()]
    assert "bots.api.max_body_bytes" in failure and "\n" not in failure


@pytest.mark.parametrize("change", ["emptied", "only comments", "removed"])
def test_a_reload_of_a_config_file_emptied_or_removed_keeps_the_running_config(
    tmp_path: Path,
    cli_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    change: str,
) -> None:
    """An empty file (half written) or one gone would give defaults: nobody on the allowlist."""
    import run_bot

    path = write_config(
        tmp_path,
        cli_env,
        bots={"api": {"kind": "http_api", "api_keys": ["k" * 32], "allowed_users": ["alice"]}},
        access={"allowlist": ["api:carol"]},
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_bot, "DEFAULT_CONFIG", Path(path.name))
    args = run_bot.parse_args([])  # ./config.yaml, found at the start
    plans = run_bot.plan(run_bot.load(args), [])
    bot = plans[0].bot
    reloader = run_bot.ConfigReloader(args, plans)  # as main() makes it, at the start
    if change == "removed":
        path.unlink()
    else:
        path.write_text("" if change == "emptied" else "# nothing yet\n\n")
    caplog.set_level(logging.INFO, logger="ccbridge")
    assert not reloader()
    assert bot.agent.access.settings.allowlist == ["api:carol"]
    [failure] = [r.getMessage() for r in caplog.records if "reload failed" in r.getMessage()]
    assert path.name in failure and ("empty" in failure if change != "removed" else "cannot read" in failure)


def test_library_log_lines_carry_no_token_and_lark_prints_nothing_of_its_own(
    tmp_path: Path, cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """httpx logs every Bot API request at INFO, with the bot token in its URL; lark-oapi prints its
    warnings to stdout with a handler of its own. Both go through ccbridge's log, the token redacted."""
    import run_bot

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    path = write_config(tmp_path, cli_env, log_level="INFO", log_file="logs/bot.log")
    try:
        run_bot.setup_logging(run_bot.load(run_bot.parse_args(["--config", str(path)])), None, terminal=False)
        token = "123456:ABCdefGHIjklMNOpqrSTUvwxYZ0123456789"
        logging.getLogger("httpx").info(
            'HTTP Request: %s %s "%s"', "POST", f"https://api.telegram.org/bot{token}/getMe", "200"
        )
        logging.getLogger("slack_sdk").info("token %s", "xoxb-1234567890-abcdefghijkl")
        logging.getLogger("Lark").warning("connect failed, err: 10014")
        for handler in root.handlers:
            handler.flush()
        written = (tmp_path / "logs" / "bot.log").read_text()
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    assert "getMe" in written and token not in written and "bot<redacted>/getMe" in written
    assert "xoxb-1234567890" not in written and "token <redacted>" in written
    assert "connect failed, err: 10014" in written and "[Lark]" not in capsys.readouterr().out
