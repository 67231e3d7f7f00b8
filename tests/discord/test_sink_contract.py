"""The reply-sink contract against the Discord sink: real discord.py REST against the fake Discord."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from adapters.discord import BridgeClient, Destination, DiscordSink, client_options, discord_limits
from tests.contracts.sink_contract import SinkContract, fences_balanced
from tests.fakes.platform_server import Failure

from .conftest import discord_settings
from .fake_discord import TOKEN, Channel, FakeDiscord

SEND = "POST /channels/{channel_id}/messages"
EDIT = "PATCH /channels/{channel_id}/messages/{message_id}"
TYPING = "POST /channels/{channel_id}/typing"
ROUTES = {"post": [SEND], "edit": [EDIT], "finalize": [EDIT]}


@dataclass
class DiscordHarness:
    fake: FakeDiscord
    client: BridgeClient
    channels: list[Channel] = field(default_factory=list)

    @property
    def channel(self) -> Channel:
        return self.channels[-1]

    async def new_sink(self) -> DiscordSink:
        guild = self.fake.default_guild
        self.channels.append(self.fake.add_channel(f"contract-{len(self.channels)}", guild=guild))
        target = self.client.get_partial_messageable(self.channel.id)
        return DiscordSink(Destination(target), discord_limits(edit_interval=0.05, typing_interval=1.0))

    async def messages(self) -> list[str]:
        return [m.content for m in self.fake.bot_messages(self.channel) if not m.shown_components and m.content]

    async def rate_limit_next(self, op: str, retry_after: float) -> None:
        for route in ROUTES[op]:
            self.fake.fail(route, Failure(429, retry_after=retry_after))

    async def api_calls(self) -> int:
        return len([c for c in self.fake.calls if c.method != TYPING and "/channels/" in c.method])

    async def gone_next(self, op: str) -> None:
        for route in ROUTES[op]:
            self.fake.fail(route, Failure(404, code=10008))

    async def approvals(self) -> list[str]:
        return [m.content for m in self.fake.bot_messages(self.channel) if m.shown_components]

    async def files(self) -> list[str]:
        return [a["filename"] for m in self.fake.bot_messages(self.channel) for a in m.attachments]


class TestDiscordSink(SinkContract):
    @pytest.fixture
    async def harness(self, fake: FakeDiscord) -> AsyncIterator[DiscordHarness]:
        fake.add_guild("Contract", text_channels=[])
        client = BridgeClient(None, **client_options(discord_settings()))
        await client.login(TOKEN)  # REST only: the sink needs no gateway
        yield DiscordHarness(fake, client)
        await client.close()

    async def test_split_parts_keep_fences_balanced(self, harness: DiscordHarness) -> None:
        await self.test_streamer_splits_long_replies_keeping_code_fences(harness)  # type: ignore[arg-type]
        shown = await harness.messages()
        assert all(fences_balanced(m) and len(m) <= 2000 for m in shown)
