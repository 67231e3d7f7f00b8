"""The Feishu / Lark adapter's own settings (``bots.<name>:`` entries of kind ``feishu``).

One bot works on Feishu (China, ``open.feishu.cn``) or Lark (international,
``open.larksuite.com``): ``domain`` picks the Open Platform, everything else is the same.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from core.fields import OptionalSecret, OptionalText
from core.net import is_loopback

FEISHU_DOMAIN = "https://open.feishu.cn"
LARK_DOMAIN = "https://open.larksuite.com"
DOMAINS = {"feishu": FEISHU_DOMAIN, "lark": LARK_DOMAIN}

#: Feishu's limit for a card (and a post) is 30 KB; a character is at most 3 bytes of it here
#: (see :func:`adapters.feishu.cards.card_measure`), so 9,000 characters always fit with room for the card.
MAX_CARD_CHARS = 9000

#: other names people give the two receiving modes (Slack's and Telegram's words among them)
MODE_ALIASES = {
    "long-connection": "long_connection",
    "longconnection": "long_connection",
    "websocket": "long_connection",
    "ws": "long_connection",
    "socket": "long_connection",
    "http": "callback",
    "webhook": "callback",
}


class FeishuConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app_id: str = Field(description="App ID of the custom app (cli_...), Developer Console > Credentials.")
    app_secret: SecretStr = Field(description="App Secret of the app; keep it in the environment (FEISHU_APP_SECRET).")
    domain: str = Field(
        "feishu",
        validate_default=True,
        description="feishu (open.feishu.cn, China) | lark (open.larksuite.com, international) | an https:// URL.",
    )
    mode: Literal["long_connection", "callback"] = Field(
        "long_connection",
        description="long_connection: lark-oapi's WebSocket client (no public URL); callback: an HTTP endpoint.",
    )
    host: str = Field(
        "0.0.0.0",
        validation_alias=AliasChoices("host", "callback_host"),
        description="callback mode: address to listen on (also callback_host).",
    )
    port: int = Field(
        9000,
        ge=0,
        le=65535,
        validation_alias=AliasChoices("port", "callback_port"),
        description="callback mode: port, 0 = any free port (also callback_port).",
    )
    path: str = Field(
        "/feishu/events",
        validation_alias=AliasChoices("path", "callback_path"),
        description="callback mode: the Request URL path for events and card actions (also callback_path).",
    )
    encrypt_key: OptionalSecret = Field(
        None, description="Encrypt Key (Events & Callbacks > Encryption Strategy): signed, AES-encrypted callbacks."
    )
    verification_token: OptionalSecret = Field(
        None, description="Verification Token (same page); callback mode refuses requests carrying another."
    )
    max_request_age: float = Field(
        300.0, gt=0, description="callback mode: seconds a signed request's timestamp may be off (replays: 401)."
    )
    streaming: bool = Field(
        True, description="Stream replies with CardKit (cardkit:card:write); false: update a card by message patch."
    )
    card_update_interval: float = Field(
        0.3, ge=0.15, le=10, description="Seconds between two updates of a streaming card (Feishu allows 10/s)."
    )
    max_card_chars: int = Field(
        8000, ge=500, le=MAX_CARD_CHARS, description="Characters per card; longer replies continue in a new card."
    )
    working_reaction: OptionalText = Field(
        "Typing", description="Emoji reaction on the message being answered while Claude works ('' = none)."
    )
    api_timeout: float = Field(30.0, gt=0, description="Seconds one Open Platform request may take.")
    api_workers: int = Field(16, ge=2, le=128, description="Threads for lark-oapi's blocking HTTP calls.")
    connect_timeout: float = Field(
        15.0, gt=0, description="long_connection: seconds start-up waits for the first connection."
    )

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: object) -> object:
        if isinstance(value, str):
            name = value.strip().lower()
            return MODE_ALIASES.get(name, name)
        return value

    @field_validator("app_id")
    @classmethod
    def _app_id(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("is empty: give the App ID (cli_...) from the Developer Console, e.g. via FEISHU_APP_ID")
        return value

    @field_validator("app_secret")
    @classmethod
    def _app_secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value().strip()
        if not secret:
            raise ValueError("is empty: give the App Secret, e.g. app_secret: ${FEISHU_APP_SECRET}")
        return SecretStr(secret)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        name = value.strip().lower()
        if name in DOMAINS:
            return DOMAINS[name]
        parts = urlsplit(value.strip())
        host = parts.hostname or ""
        if parts.scheme not in ("https", "http") or not host:
            raise ValueError("must be feishu, lark or an https:// URL of the Open Platform")
        if parts.scheme == "http" and not is_loopback(host):
            raise ValueError("must use https:// (plain http only for a loopback address)")
        if parts.username or parts.password or parts.path.strip("/") or parts.query or parts.fragment:
            raise ValueError("must be an origin such as https://open.feishu.cn (no path, query or credentials)")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must start with '/' (got {value!r})")
        return value

    @model_validator(mode="after")
    def _callback_needs_a_secret(self) -> FeishuConfig:
        if self.mode == "callback" and self.verification_token is None and self.encrypt_key is None:
            raise ValueError(
                "callback mode needs verification_token (and preferably encrypt_key): without them anyone "
                "could post events to the endpoint"
            )
        return self

    @property
    def platform_name(self) -> str:
        """Feishu or Lark, for log lines and docs."""
        return "Lark" if self.domain == LARK_DOMAIN else "Feishu"
