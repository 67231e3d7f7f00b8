"""Several real ``run_bot.py`` processes of one Telegram bot (webhook mode), sharing a store, a Redis
and the workspace storage — as several instances behind a load balancer would."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from core.config import deep_merge
from tests.helpers import eventually, start_bot_process
from tests.servers import free_port
from tests.telegram.fake_bot_api import FakeBotAPI

SECRET = "scale-test-secret"


@dataclass
class Instance:
    name: str
    process: asyncio.subprocess.Process
    port: int | None
    log: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def clis(self) -> list[int]:
        """Live Claude Code processes this instance started."""
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                stat = (proc / "stat").read_text()
                parts = stat.rsplit(")", 1)[1].split()
                state, ppid = parts[0], int(parts[1])
                cmdline = (proc / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.pid and state != "Z" and b"claude" in cmdline:
                found.append(int(proc.name))
        return found

    async def logged(self, needle: str, timeout: float = 60) -> str:
        await eventually(
            lambda: any(needle in line for line in self.log), timeout=timeout, what=f"{needle!r} in {self.name}'s log"
        )
        return next(line for line in self.log if needle in line)

    async def ready(self) -> None:
        """Wait until the instance is up (webhook server listening, or the bot connected)."""
        needle = "webhook server on" if self.port is not None else "is up ("
        await self.logged(needle)

    async def deliver(self, update: dict[str, Any]) -> int:
        """POST an update to this instance's webhook, as Telegram (through a load balancer) would."""
        assert self.port is not None
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"http://127.0.0.1:{self.port}/hook", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
            ) as response:
                return response.status

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.reader is not None:
            self.reader.cancel()


def instance_config(
    shared: Path,
    bot_api: FakeBotAPI,
    cli_env: dict[str, str],
    redis_url: str,
    name: str,
    *,
    mode: str,
    port: int | None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    bot: dict[str, Any] = {
        "kind": "telegram",
        "token": bot_api.token,
        "base_url": bot_api.base_url,
        "base_file_url": bot_api.base_file_url,
        "poll_timeout": 1,
        "edit_interval": 0.05,
        "mode": mode,
    }
    if mode == "webhook":
        bot["webhook"] = {
            "url": f"http://127.0.0.1:{port}/hook",
            "secret_token": SECRET,
            "listen": "127.0.0.1",
            "port": port,
            "path": "hook",
        }
    config = {
        "agent": {"env": cli_env, "sessions_dir": str(shared / "sessions"), "approval_timeout": 60},
        "workspace": {"base_dir": str(shared / "workspaces")},
        "store": {"backend": "sqlite", "path": str(shared / "data" / "ccbridge.db")},
        "coordination": {"backend": "redis", "url": redis_url, "instance_id": name, "lease_ttl": 3},
        "access": {"allowlist": ["telegram:42"], "admins": ["telegram:7"]},
        "log_level": "INFO",
        "bots": {"telegram": bot},
    }
    overrides = dict(overrides or {})
    if "store" in overrides:
        config["store"] = overrides.pop("store")  # another backend: its own settings, not merged
    return deep_merge(config, overrides)


async def start_instance(
    tmp: Path,
    bot_api: FakeBotAPI,
    cli_env: dict[str, str],
    redis_url: str,
    name: str,
    *,
    mode: str = "webhook",
    overrides: dict[str, Any] | None = None,
) -> Instance:
    home = tmp / name
    home.mkdir(parents=True, exist_ok=True)
    port = free_port() if mode == "webhook" else None
    config = home / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            instance_config(
                tmp / "shared", bot_api, cli_env, redis_url, name, mode=mode, port=port, overrides=overrides
            )
        )
    )
    bot = await start_bot_process(config, home)
    return Instance(name, bot.proc, port, log=bot.log, reader=bot.reader)
