"""The bot killed (SIGKILL) mid-turn: the turn is in the history as interrupted and no CLI survives."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

from core import Agent, Sections
from tests.core.test_run_bot import run_bot, write_config
from tests.fakes.anthropic_api import FakeAnthropicAPI, Hang
from tests.helpers import eventually, start_bot_process


def clis_of(sessions_dir: Path) -> list[int]:
    """Live processes started by ccbridge's launcher for this sessions directory."""
    found = []
    marker = f"CCBRIDGE_PIDFILE={sessions_dir}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(var.startswith(marker) for var in environ.split(b"\0")):
            found.append(int(proc.name))
    return found


async def test_sigkill_mid_turn_loses_nothing_and_leaves_no_cli(
    tmp_path: Path, cli_env: dict[str, str], fake_api: FakeAnthropicAPI
) -> None:
    config = write_config(tmp_path, cli_env)
    sessions = tmp_path / "data" / "sessions"
    fake_api.rules["a long job"] = [Hang("working on it", seconds=60)]
    bot = (await start_bot_process(config, tmp_path, stdin=True)).proc
    assert bot.stdin is not None
    bot.stdin.write(b"a long job\n")
    await bot.stdin.drain()
    await eventually(lambda: any("a long job" in r.last_user_text() for r in fake_api.requests), what="the turn")
    assert clis_of(sessions), "the CLI should be running"
    bot.send_signal(signal.SIGKILL)
    await bot.wait()
    await eventually(lambda: not clis_of(sessions), timeout=10, what="the CLI to die with the bot")

    code, out, err = await run_bot("--config", str(config), stdin="/history 1\n", cwd=tmp_path)
    assert code == 0, err
    assert "a long job" in out and "⏹" in out  # the user's words are kept, marked as cut off


async def test_processes_a_killed_bot_left_behind_are_killed_at_the_next_start(
    make_sections: Callable[..., Sections], tmp_path: Path
) -> None:
    sections = make_sections()
    pid_dir = sections.agent.sessions_dir / ".pids"
    pid_dir.mkdir(parents=True)
    pidfile = pid_dir / "left-behind.pid"
    dead_owner = await asyncio.create_subprocess_exec("true")
    await dead_owner.wait()
    orphan = await asyncio.create_subprocess_exec(
        "sleep", "600", env={**os.environ, "CCBRIDGE_PIDFILE": str(pidfile)}, start_new_session=True
    )
    pidfile.write_text(f"{orphan.pid} {dead_owner.pid}\n")
    async with Agent(sections):
        await asyncio.wait_for(orphan.wait(), 10)
    assert orphan.returncode == -signal.SIGKILL
    assert not pidfile.exists()
