"""The Discord adapter's own settings (``bots.<name>:`` entries of kind ``discord``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from .sink import DISCORD_LIMIT


class DiscordConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: SecretStr = Field(description="The bot token (Developer Portal > your application > Bot > Reset Token).")
    message_content: bool = Field(
        True,
        description=(
            "Ask for the privileged MESSAGE_CONTENT intent (enable it in the Developer Portal). Without it only "
            "DMs and messages that mention the bot carry text: threads are followed only when the bot is mentioned."
        ),
    )
    dms: bool = Field(True, description="Answer direct messages (one session per user).")
    guilds: list[int] = Field(default_factory=list, description="Only these servers (ids); empty: every server.")
    channels: list[int] = Field(
        default_factory=list,
        description="Only these channels (ids of text or forum channels; their threads included); empty: all.",
    )
    slash_commands: bool = Field(True, description="Register /claude and the core commands as slash commands.")
    command_guilds: list[int] = Field(
        default_factory=list,
        description="Register the slash commands in these servers only (instant) instead of globally.",
    )
    edit_interval: float = Field(1.0, ge=0.05, description="Seconds between two updates of a streaming reply.")
    typing_interval: float = Field(8.0, ge=0, description="Seconds between typing indications (Discord shows 10 s).")
    max_message_chars: int = Field(
        DISCORD_LIMIT, ge=500, le=DISCORD_LIMIT, description="Split replies longer than this (Discord: 2,000)."
    )
    thread_archive_minutes: Literal[60, 1440, 4320, 10080] = Field(
        1440, description="Inactivity after which the threads the bot opens are archived."
    )
    ready_timeout: float = Field(60.0, gt=0, description="Seconds to wait for the gateway's READY at start-up.")
    guild_ready_timeout: float = Field(
        2.0, ge=0, description="Seconds discord.py waits for the servers' data after READY before it is ready."
    )

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value().strip()
        if token.lower().startswith("bot "):
            token = token[4:].strip()  # "Bot <token>" is the header form; discord.py adds the prefix itself
        if not token:
            raise ValueError("is empty: give the bot token (Developer Portal > Bot), e.g. via DISCORD_BOT_TOKEN")
        if any(c.isspace() for c in token):
            raise ValueError("must not contain spaces (copy the token exactly as the Developer Portal shows it)")
        return SecretStr(token)
