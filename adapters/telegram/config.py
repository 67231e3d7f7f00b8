"""Settings of a Telegram bot (the keys under ``bots.<name>:`` besides ``kind`` and overrides)."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from core.net import is_loopback

from .formatting import MAX_TEXT

_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]{20,}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class WebhookConfig(BaseModel):
    """Receive updates by webhook: Telegram POSTs them to ``url``; PTB's server listens locally."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        description="Public HTTPS URL Telegram posts updates to (your reverse proxy); http:// only for loopback hosts."
    )
    secret_token: SecretStr = Field(description="Sent by Telegram in X-Telegram-Bot-Api-Secret-Token; others get 403.")
    listen: str = "127.0.0.1"
    port: int = Field(8443, ge=1, le=65535)
    path: str = Field("telegram", description="URL path the local server answers on.")
    max_connections: int = Field(40, ge=1, le=100)

    @field_validator("secret_token")
    @classmethod
    def _secret_format(cls, value: SecretStr) -> SecretStr:
        if not _SECRET.match(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, '_' and '-' (Telegram's rule)")
        return value

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        host = parts.hostname or ""
        if parts.scheme == "https" and host:
            return value.strip()
        if parts.scheme == "http" and host and is_loopback(host):
            return value.strip()  # a self-hosted Bot API server on this machine, or tests
        raise ValueError(
            "must be an absolute https:// URL (Telegram posts updates over HTTPS only; "
            "http:// is accepted for loopback hosts only)"
        )


class TelegramConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: SecretStr = Field(description="The bot token from @BotFather.")
    base_url: str = Field(
        "https://api.telegram.org/bot", description="Bot API endpoint (self-hosted server: its URL + /bot)."
    )
    base_file_url: str = Field("https://api.telegram.org/file/bot", description="File download endpoint.")
    local_mode: bool = Field(False, description="The self-hosted Bot API server runs with --local.")
    mode: Literal["polling", "webhook"] = "polling"
    poll_timeout: float = Field(30.0, ge=0, le=60, description="Long-polling timeout in seconds.")
    webhook: WebhookConfig | None = None
    drop_pending_updates: bool = False
    drafts: bool = Field(True, description="Stream private replies as native drafts (sendMessageDraft).")
    groups: bool = Field(True, description="Answer in groups when mentioned, replied to, or sent a command.")
    edit_interval: float = Field(1.0, ge=0, description="Seconds between two updates of a message / in a chat.")
    typing_interval: float = Field(4.0, ge=0)
    max_message_len: int = Field(MAX_TEXT, ge=256, le=MAX_TEXT)
    max_upload_mb: float | None = Field(
        None, gt=0, description="Deprecated: workspace.max_upload_mb (or a bot override of it) sets the limit."
    )
    album_window: float = Field(
        1.0, ge=0, le=30, description="Seconds to wait for more items of a photo album before answering it as one."
    )
    throttle: bool = Field(True, description="PTB's AIORateLimiter (30/s overall, 20/min per group).")

    @field_validator("token")
    @classmethod
    def _token_format(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("is empty: give the bot token (from @BotFather), e.g. via TELEGRAM_BOT_TOKEN")
        if not _TOKEN.match(value.get_secret_value().strip()):
            raise ValueError("does not look like a bot token ('123456:ABC...' from @BotFather)")
        return SecretStr(value.get_secret_value().strip())

    @model_validator(mode="after")
    def _webhook_needs_settings(self) -> TelegramConfig:
        if self.mode == "webhook" and self.webhook is None:
            raise ValueError("mode 'webhook' needs a 'webhook:' section with at least url and secret_token")
        return self
