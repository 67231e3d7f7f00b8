"""Shared fixtures: the scripted fake Messages API and agents running the real Claude Code CLI.

Every test that runs the agent uses the CLI bundled with claude-agent-sdk,
pointed by ANTHROPIC_BASE_URL at :class:`FakeAnthropicAPI` on 127.0.0.1, with a
throwaway HOME / CLAUDE_CONFIG_DIR. Nothing leaves the machine.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from core import Agent, Sections
from core.config import deep_merge
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.helpers import PREWARM_OFF
from tests.servers import PostgresServer, RedisServer, new_database, pg_template


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


@pytest.fixture(autouse=True)
def _no_prewarm_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-warming (``agent.prewarm``, on by default) is off in tests, so that no background Claude Code
    start disturbs one counting processes or spawns after a restart: ``CCBRIDGE_AGENT__PREWARM=0`` for
    configs loaded here (:func:`tests.helpers.start_bot_process` passes it to bot processes), and
    :func:`make_sections` sets it too. A test of re-warming sets ``agent.prewarm`` itself (with
    ``make_sections``) or removes the variable."""
    monkeypatch.setenv(PREWARM_OFF[0], PREWARM_OFF[1])


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
                "prewarm": 0,  # on by default; tests of re-warming set it
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


# -- real servers, one of each per xdist worker --------------------------------------------------
# They start on first use (a test that needs neither starts nothing), on free 127.0.0.1 ports, and
# stop at the end of the session. Tests share them and stay apart: a key prefix of their own on
# Redis, a schema of their own on PostgreSQL.


def _shared_dir(factory: pytest.TempPathFactory, config: pytest.Config) -> Path:
    """pytest's temporary directory of the whole session (the workers' parent under xdist)."""
    base = factory.getbasetemp()
    return base.parent if hasattr(config, "workerinput") else base


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_template(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    return pg_template(_shared_dir(tmp_path_factory, pytestconfig))


@pytest.fixture(scope="session")
def postgres_server(postgres_template: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(postgres_template).start()
    yield server
    server.remove()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
async def postgres_dsn(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh, empty database (schema) on the shared server."""
    dsn = await new_database(postgres_server)
    yield dsn
    if postgres_server.running:
        conn = await asyncpg.connect(postgres_server.dsn())
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{dsn.rsplit("=", 1)[1]}" CASCADE')
        finally:
            await conn.close()
