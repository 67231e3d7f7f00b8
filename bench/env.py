"""The offline environment every scenario runs in: the fake model, a throwaway home, the CLI."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import claude_agent_sdk

from tests.fakes.anthropic_api import FakeAnthropicAPI

REPO_ROOT = Path(__file__).resolve().parents[1]
# Credentials of the person running the bench must never reach the CLI (it talks to the fake only).
SCRUBBED_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "CLAUDE_CODE_OAUTH_TOKEN")
_STOP_TIMEOUT = 10.0


class BenchError(RuntimeError):
    """A scenario could not produce a valid measurement (the reply was wrong or missing)."""


def bundled_cli() -> Path:
    """The Claude Code CLI shipped in the claude-agent-sdk wheel (what ccbridge runs)."""
    bundled = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    if bundled.is_file():
        return bundled
    found = shutil.which("claude")
    if found is None:
        raise BenchError("no Claude Code CLI: the claude-agent-sdk wheel has no bundled CLI and none is on PATH")
    return Path(found)


@dataclass
class BenchEnv:
    """Fake model process + temp dir + the environment handed to the CLI."""

    root: Path = field(init=False)
    port: int = field(init=False)
    cli: Path = field(init=False)
    cli_env: dict[str, str] = field(init=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, init=False)
    _model: asyncio.subprocess.Process | None = field(default=None, init=False)

    async def __aenter__(self) -> BenchEnv:
        self._tmp = tempfile.TemporaryDirectory(prefix="ccbridge-bench-")
        self.root = Path(self._tmp.name)
        self.cli = bundled_cli()
        try:
            self.port = await self._start_model()
            home = self.root / "home"
            (home / ".claude").mkdir(parents=True)
            self.cli_env = {
                **FakeAnthropicAPI(port=self.port).env(),  # includes CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1
                "HOME": str(home),
                "CLAUDE_CONFIG_DIR": str(home / ".claude"),
                "CLAUDE_CODE_MAX_RETRIES": "1",
            }
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop_model()
        if self._tmp is not None:
            await asyncio.to_thread(self._tmp.cleanup)
            self._tmp = None

    def dir(self, name: str) -> Path:
        """A fresh directory for one scenario (workspace, store, cwd)."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def process_env(self) -> dict[str, str]:
        """The full environment of a CLI started by hand (the SDK merges os.environ the same way)."""
        base = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
        return {**base, **self.cli_env}

    async def _start_model(self) -> int:
        self._model = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.fake_model",
            cwd=str(REPO_ROOT),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self._model.stdout is not None
        line = await asyncio.wait_for(self._model.stdout.readline(), 30.0)
        if not line.strip().isdigit():
            raise BenchError(f"the fake model did not start (it printed {line!r})")
        return int(line)

    async def _stop_model(self) -> None:
        proc, self._model = self._model, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), _STOP_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def cli_version(cli: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(cli), "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await proc.communicate()
    return out.decode().strip() or "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


async def machine_info(cli: Path) -> dict[str, str]:
    """What the figures were measured on, for RESULTS.md."""
    cpu = await asyncio.to_thread(cpu_model)
    return {
        "machine": f"{cpu}, {os.cpu_count()} cores",
        "os": platform.platform(),
        "python": platform.python_version(),
        "claude-agent-sdk": claude_agent_sdk.__version__,
        "Claude Code CLI": await cli_version(cli),
    }
