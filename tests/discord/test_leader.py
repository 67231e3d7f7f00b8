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
