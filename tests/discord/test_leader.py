"""Several instances on Discord: the gateway connection runs on the instance holding the leader lease."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from bots.discord import DiscordBot
from core import Agent, ConfigError, Sections
from tests.servers import RedisServer

from .conftest import Team, discord_settings
from .test_discord_bot import reply_in


async def test_a_token_revoked_on_the_leader_ends_the_bot_with_one_clear_error_and_frees_the_lease(
    make_sections: Callable[..., Sections], team: Team, redis_server: RedisServer
) -> None:
    prefix = f"leader-{uuid.uuid4().hex[:8]}:"
    coordination = {"backend": "redis", "url": redis_server.url, "key_prefix": prefix, "lease_ttl": 30}
    agent = await Agent(make_sections(access={"allow_all": True}, coordination=coordination)).start()
    bot = DiscordBot("discord", agent, discord_settings())
    running = asyncio.create_task(bot.run())  # connects once it holds the leader lease
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        await team.fake.wait_until(lambda: team.fake.connections, 15, "the leader's gateway connection")
        [leader_key] = [k async for k in client.scan_iter(f"{prefix}*leader*")]
        assert await client.get(leader_key) == bot.agent.instance_id
        await team.fake.disconnect(code=4004)  # "Authentication failed": the connection ends for good
        with pytest.raises(ConfigError) as info:
            await asyncio.wait_for(running, 20)
        assert str(info.value) == "bots.discord.token: Discord rejected the bot token"
        assert await client.get(leader_key) is None  # given up at once: another instance may connect
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await client.aclose()
        await agent.close()


async def test_a_standby_instance_connects_when_the_leader_dies_and_answers_from_then_on(
    make_sections: Callable[..., Sections], team: Team, redis_server: RedisServer
) -> None:
    prefix = f"leader-{uuid.uuid4().hex[:8]}:"
    fake = team.fake

    def coordination(name: str) -> dict[str, object]:
        return {"backend": "redis", "url": redis_server.url, "key_prefix": prefix, "lease_ttl": 3, "instance_id": name}

    a_agent = await Agent(make_sections(coordination=coordination("a"))).start()
    b_agent = await Agent(make_sections(coordination=coordination("b"))).start()
    a, b = DiscordBot("discord", a_agent, discord_settings()), DiscordBot("discord", b_agent, discord_settings())
    running_a = asyncio.create_task(a.run())
    running_b: asyncio.Task[None] | None = None
    client = aioredis.from_url(redis_server.url, decode_responses=True)

    def live() -> list[object]:
        return [c for c in fake.connections if c.open]

    try:
        await fake.wait_until(live, 15, "the leader's gateway connection")
        [leader_key] = [k async for k in client.scan_iter(f"{prefix}*leader*")]
        running_b = asyncio.create_task(b.run())
        await asyncio.sleep(2)  # B asks for the lease (every second) and stands by
        assert await client.get(leader_key) == "a" and len(live()) == 1 and len(fake.connections) == 1
        dm = fake.dm_channel(team.alice.user)
        await fake.user_message(dm, team.alice, "before")
        await reply_in(fake, dm, "echo: before")

        # A dies: its lease is not given up, it lapses; B connects and answers
        async def no_resign(name: str) -> None:
            return None

        a_agent.coordination.backend.resign = no_resign  # type: ignore[attr-defined]
        running_a.cancel()
        await asyncio.gather(running_a, return_exceptions=True)
        assert live() == []
        await fake.wait_until(live, 20, "the standby's gateway connection")
        assert await client.get(leader_key) == "b" and len(live()) == 1
        await fake.user_message(dm, team.alice, "after")
        await reply_in(fake, dm, "echo: after")
    finally:
        for task in (running_a, running_b):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
        await a_agent.close()
        await b_agent.close()
