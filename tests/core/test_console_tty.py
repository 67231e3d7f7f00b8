"""The console bot on a real terminal (a pty): replies stream in place, /stop works, Ctrl-C quits."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.fakes.anthropic_api import FakeAnthropicAPI, Hang
from tests.helpers import eventually

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Terminal:
    proc: asyncio.subprocess.Process
    master: int
    screen: bytearray

    def shows(self, text: str) -> bool:
        return text.encode() in self.screen

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())


@pytest.fixture
async def terminal(tmp_path: Path, cli_env: dict[str, str]) -> AsyncIterator[Terminal]:
    """``run_bot.py`` with no platform configured, on a pseudo-terminal."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"agent": {"env": cli_env}, "log_level": "WARNING"}))
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CCBRIDGE_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "run_bot.py"),
        "--config",
        str(config),
        stdin=slave,
        stdout=slave,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
        env={**env, "HOME": str(tmp_path)},
    )
    os.close(slave)
    term = Terminal(proc, master, bytearray())
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            term.screen.extend(os.read(master, 4096))
        except OSError:
            loop.remove_reader(master)

    loop.add_reader(master, readable)
    try:
        await eventually(lambda: term.shows("you> "), what="the prompt")
        yield term
    finally:
        loop.remove_reader(master)
        os.close(master)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_interactive_console_streams_and_stops(terminal: Terminal, fake_api: FakeAnthropicAPI) -> None:
    fake_api.rules["tell me a long story"] = [Hang("Once upon a time", seconds=60)]
    terminal.type("tell me a long story\n")
    await eventually(lambda: terminal.shows("Once upon a time"), what="streamed text")
    assert not terminal.shows("Stopped")  # the turn is still running: the text was streamed live
    terminal.type("/stop\n")
    await eventually(lambda: terminal.shows("Stopped."), what="the stopped turn")
    terminal.type("and now?\n")
    await eventually(lambda: terminal.shows("echo: and now?"), what="the next answer")
    terminal.type("\x04")  # Ctrl-D
    assert await asyncio.wait_for(terminal.proc.wait(), 60) == 0


async def test_ctrl_c_at_the_prompt_quits_without_waiting_for_enter(terminal: Terminal) -> None:
    terminal.proc.send_signal(signal.SIGINT)
    # Nothing more is typed: the process must not sit waiting for a line.
    assert await asyncio.wait_for(terminal.proc.wait(), 60) == 0
