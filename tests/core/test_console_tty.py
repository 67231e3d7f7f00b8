"""The console bot on a real terminal (a pty): replies stream in place, /stop works while it runs."""

from __future__ import annotations

import asyncio
import os
import pty
import sys
from pathlib import Path

import yaml

from tests.fakes.anthropic_api import FakeAnthropicAPI, Hang
from tests.helpers import eventually

REPO = Path(__file__).resolve().parents[2]


async def test_interactive_console_streams_and_stops(
    tmp_path: Path, cli_env: dict[str, str], fake_api: FakeAnthropicAPI
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"agent": {"env": cli_env}, "log_level": "WARNING"}))
    fake_api.rules["tell me a long story"] = [Hang("Once upon a time", seconds=60)]
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
    screen = bytearray()
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            screen.extend(os.read(master, 4096))
        except OSError:
            loop.remove_reader(master)

    loop.add_reader(master, readable)

    def shows(text: str) -> bool:
        return text.encode() in screen

    try:
        await eventually(lambda: shows("you> "), what="the prompt")
        os.write(master, b"tell me a long story\n")
        await eventually(lambda: shows("Once upon a time"), what="streamed text")
        assert not shows("Stopped")  # the turn is still running: the text was streamed live
        os.write(master, b"/stop\n")
        await eventually(lambda: shows("Stopped."), what="the stopped turn")
        os.write(master, b"and now?\n")
        await eventually(lambda: shows("echo: and now?"), what="the next answer")
        os.write(master, b"\x04")  # Ctrl-D
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        loop.remove_reader(master)
        os.close(master)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
