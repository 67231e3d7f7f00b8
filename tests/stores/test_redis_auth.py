"""Redis behind a password (``requirepass``), as production runs it: the store and the coordination
connect with the URL's password, and a wrong one is one clear error that never shows the password."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from core import ConfigError, StoreError
from core.coordination.redis import RedisBackend
from core.store import StoreSettings, create_store
from core.transcripts import transcripts_for
from tests.contracts.store_contract import KEY, conv
from tests.servers import RedisServer

PASSWORD = "s3cret-pw"


@pytest.fixture(scope="module")
def guarded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-auth"), password=PASSWORD).start()
    yield server
    server.stop()


def _store(url: str) -> object:
    return create_store(TypeAdapter(StoreSettings).validate_python({"backend": "redis", "url": url}))


async def test_the_store_and_the_coordination_connect_with_the_urls_password(guarded_redis: RedisServer) -> None:
    store = _store(guarded_redis.url)
    await store.open()  # type: ignore[attr-defined]
    try:
        await store.put(conv())  # type: ignore[attr-defined]
        assert (await store.get(KEY)).session_id == conv().session_id  # type: ignore[attr-defined]
    finally:
        await store.close()  # type: ignore[attr-defined]
    backend = RedisBackend(guarded_redis.url, "t-auth:", "a", 3.0)
    await backend.start()
    try:
        assert (await backend.owner(KEY)).mine
    finally:
        await backend.close()


@pytest.mark.parametrize("password", ["wrong-pw", None])
async def test_a_wrong_or_missing_password_is_one_clear_error_without_the_password(
    guarded_redis: RedisServer, password: str | None, tmp_path: Path
) -> None:
    auth = f":{password}@" if password else ""
    url = f"redis://{auth}127.0.0.1:{guarded_redis.port}/0"
    store = _store(url)
    with pytest.raises(StoreError) as stored:
        await store.open()  # type: ignore[attr-defined]
    assert str(stored.value).startswith("store.url: ")
    with pytest.raises(ConfigError) as coordinated:
        await RedisBackend(url, "t-auth:", "a", 3.0).start()
    assert str(coordinated.value).startswith("coordination.url: cannot reach the coordination Redis")
    for message in (str(stored.value), str(coordinated.value)):
        assert "wrong-pw" not in message and PASSWORD not in message
        assert "\n" not in message


async def test_coordination_closed_right_after_it_started_closes(guarded_redis: RedisServer) -> None:
    """A stop during start-up (SIGTERM as the bot comes up): the inbox reader may be connecting, where
    the client swallows a cancel; close still ends."""
    for _ in range(3):
        backend = RedisBackend(guarded_redis.url, "t-auth:", "a", 3.0)
        await backend.start()
        closing = asyncio.ensure_future(backend.close())
        done, _ = await asyncio.wait({closing}, timeout=15)
        assert done, "close() hung"
        assert not await _alive(guarded_redis, "a")


async def _alive(server: RedisServer, instance: str) -> bool:
    backend = RedisBackend(server.url, "t-auth:", "probe", 3.0)
    try:
        return await backend.alive(instance)
    finally:
        await backend.redis.aclose()


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-tls"), password=PASSWORD, tls=True).start()
    yield server
    server.stop()


async def test_the_store_transcripts_and_coordination_connect_over_tls_with_a_rediss_url(
    tls_redis: RedisServer,
) -> None:
    """TLS through the URL: ``rediss://`` (with the server's CA as a query argument, as redis-py reads it)."""
    assert tls_redis.url.startswith("rediss://")
    settings = TypeAdapter(StoreSettings).validate_python({"backend": "redis", "url": tls_redis.url})
    store = create_store(settings)
    transcripts = transcripts_for(settings)
    await store.open()
    await transcripts.open()
    try:
        await store.put(conv())
        assert (await store.get(KEY)).session_id == conv().session_id  # type: ignore[union-attr]
        key = {"project_key": "p", "session_id": "s"}
        await transcripts.append(key, [{"type": "user", "uuid": "u1"}])  # type: ignore[arg-type]
        assert await transcripts.load(key) == [{"type": "user", "uuid": "u1"}]  # type: ignore[arg-type]
    finally:
        await transcripts.close()
        await store.close()
    backend = RedisBackend(tls_redis.url, "t-tls:", "a", 3.0)
    await backend.start()
    try:
        assert (await backend.owner(KEY)).mine
    finally:
        await backend.close()
    plain = f"redis://:{PASSWORD}@127.0.0.1:{tls_redis.port}/0"  # the same server without TLS: a clear error
    with pytest.raises(StoreError) as refused:
        await _store(plain).open()  # type: ignore[attr-defined]
    assert str(refused.value).startswith("store.url: ") and PASSWORD not in str(refused.value)
