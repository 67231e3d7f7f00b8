"""The Slack adapter's own settings (``bots.<name>:`` entries of kind ``slack``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from core.fields import OptionalSecret, OptionalText

from .formatting import MARKDOWN_LIMIT


class SlackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bot_token: SecretStr = Field(description="Bot User OAuth Token (xoxb-...).")
    mode: Literal["socket", "http"] = Field(
        "socket", description="socket: Socket Mode (no public URL); http: the HTTP Events API."
    )
    app_token: OptionalSecret = Field(None, description="App-level token (xapp-..., connections:write); Socket Mode.")
    signing_secret: OptionalSecret = Field(
        None, description="Signing secret; HTTP mode verifies every request with it."
    )
    host: str = Field("0.0.0.0", description="HTTP mode: address to listen on.")
    port: int = Field(3000, ge=0, le=65535, description="HTTP mode: port (0 = any free port).")
    path: str = Field("/slack/events", description="HTTP mode: the Request URL path (events, buttons, slash command).")
    base_url: str = Field("https://slack.com/api/", description="Slack Web API base URL.")
    streaming: bool = Field(True, description="Stream replies natively in threads (chat.startStream...).")
    dm_threads: bool = Field(False, description="Answer each DM in a thread under it (enables streaming in DMs).")
    text_format: Literal["markdown", "mrkdwn"] = Field(
        "markdown", description="markdown: markdown_text (standard Markdown); mrkdwn: converted text."
    )
    slash_command: OptionalText = Field(None, description="A slash command routed to the bot, e.g. '/claude'.")
    max_file_mb: float | None = Field(
        None, gt=0, description="Deprecated: workspace.max_upload_mb (or a bot override of it) sets the limit."
    )
    edit_interval: float = Field(1.0, ge=0.05, description="Seconds between two updates of one streaming message.")
    max_message_chars: int = Field(
        MARKDOWN_LIMIT, ge=500, le=MARKDOWN_LIMIT, description="Split replies longer than this."
    )
    working_reaction: str | None = Field("hourglass_flowing_sand", description="Reaction while working ('' = none).")
    working_status: str = Field("is working…", description="Assistant thread status while working ('' = none).")

    @field_validator("bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("is empty: give the Bot User OAuth Token (xoxb-...), e.g. via SLACK_BOT_TOKEN")
        if not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with 'xoxb-' (OAuth & Permissions > Bot User OAuth Token)")
        return value

    @field_validator("app_token")
    @classmethod
    def _app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token starting with 'xapp-' (Basic Information > App-Level Tokens)")
        return value

    @field_validator("path", "slash_command")
    @classmethod
    def _leading_slash(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"must start with '/' (got {value!r})")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("working_reaction")
    @classmethod
    def _reaction(cls, value: str | None) -> str | None:
        return value.strip(":") or None if value else None

    @model_validator(mode="after")
    def _mode_credentials(self) -> SlackConfig:
        if self.mode == "socket" and self.app_token is None:
            raise ValueError("app_token is required when mode is 'socket' (or set mode: http with a signing_secret)")
        if self.mode == "http" and self.signing_secret is None:
            raise ValueError("signing_secret is required when mode is 'http' (Basic Information > Signing Secret)")
        return self
