"""Shared fixtures: the scripted fake Messages API and agents running the real Claude Code CLI.

Every test that runs the agent uses the CLI bundled with claude-agent-sdk,
pointed by ANTHROPIC_BASE_URL at :class:`FakeAnthropicAPI` on 127.0.0.1, with a
throwaway HOME / CLAUDE_CONFIG_DIR. Nothing leaves the machine.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core import Agent, Sections
from core.config import deep_merge
from tests.fakes.anthropic_api import FakeAnthropicAPI


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that tries to reach beyond 127.0.0.1 / localhost."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if host not in ("127.0.0.1", "::1", "localhost"):
                raise OSError(f"test tried to reach {host}: only loopback is allowed")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "CLAUDE_CODE_OAUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeAnthropicAPI]:
    async with FakeAnthropicAPI() as fake:
        yield fake


@pytest.fixture
def cli_env(tmp_path: Path, fake_api: FakeAnthropicAPI) -> dict[str, str]:
    """Environment for the CLI: the fake API, a throwaway home, quick retries."""
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    return {
        **fake_api.env(),
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "CLAUDE_CODE_MAX_RETRIES": "1",
    }


@pytest.fixture
def make_sections(tmp_path: Path, cli_env: dict[str, str]) -> Callable[..., Sections]:
    """Sections for a test agent; keyword arguments are merged into the defaults."""

    def make(**overrides: Any) -> Sections:
        base: dict[str, Any] = {
            "agent": {
                "env": cli_env,
                "approval_timeout": 30,
                "pool_size": 4,
                "sessions_dir": str(tmp_path / "sessions"),
            },
            "workspace": {"base_dir": str(tmp_path / "workspaces")},
            "store": {"backend": "sqlite", "path": str(tmp_path / "data" / "ccbridge.db")},
            "access": {"allow_all": True},
        }
        return Sections.model_validate(deep_merge(base, overrides))

    return make


@pytest.fixture
async def agent(make_sections: Callable[..., Sections]) -> AsyncIterator[Agent]:
    async with Agent(make_sections()) as started:
        yield started
