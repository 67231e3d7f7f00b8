"""Store-test fixtures: fault tests that stop a server get one of their own (``own_redis`` /
``own_postgres``); the shared servers (``redis_server``, ``postgres_dsn``) are in ``tests/conftest.py``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import PostgresServer, RedisServer


@pytest.fixture
def redis_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of the test's own, to stop and start again."""
    server = RedisServer(tmp_path / "own-redis").start()
    yield server
    server.stop()


@pytest.fixture
def own_postgres(postgres_template: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, to stop and start again."""
    server = PostgresServer(postgres_template).start()
    yield server
    server.remove()
