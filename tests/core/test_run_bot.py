"""run_bot.py as users run it: a real process, the console bot piped, --check, clear errors."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

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


async def test_no_config_file_runs_the_console_bot_by_default(tmp_path: Path) -> None:
    code, out, _ = await run_bot("--check", cwd=tmp_path)
    assert code == 0 and "defaults, no config file" in out and "would run: console" in out


async def test_bad_config_is_rejected_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("agent:\n  pool_size: zero\nstore:\n  backend: floppy\n")
    code, out, err = await run_bot("--config", str(path), "--check", cwd=tmp_path)
    assert code == 2
    assert "agent.pool_size" in err and "store.backend" in err
    assert "Traceback" not in err and out == ""


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


async def test_missing_credentials_get_one_clear_line(tmp_path: Path) -> None:
    code, out, err = await run_bot(stdin="hi\n", cwd=tmp_path)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "ANTHROPIC_API_KEY" in lines[0] and "claude /login" in lines[0]


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


async def test_sigterm_stops_running_replies_cleanly(
    tmp_path: Path, cli_env: dict[str, str], fake_api: FakeAnthropicAPI
) -> None:
    from tests.fakes.anthropic_api import Hang
    from tests.helpers import eventually

    config = write_config(tmp_path, cli_env)
    fake_api.rules["long story"] = [Hang("Once upon a time", seconds=60)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO / "run_bot.py"), "--config", str(config),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(b"a long story please\n")
    await proc.stdin.drain()
    await eventually(lambda: fake_api.requests, what="the turn to reach the model")
    proc.terminate()
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == "Once upon a time\n\n⏹ Stopped."
