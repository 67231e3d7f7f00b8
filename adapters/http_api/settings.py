"""The HTTP API's own settings (``bots.<name>:`` keys of an ``http_api`` bot)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class ApiSettings(BaseModel):
    """Where the API listens, who may call it, and how much it may do at once."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    allow_anonymous: bool = Field(False, description="Serve without API keys (only behind your own auth proxy).")
    api_keys: list[SecretStr] = Field(default_factory=list, description="Accepted keys (Bearer or X-API-Key).")
    allowed_users: list[str] = Field(default_factory=list, description="user_ids callers may act as; empty = any.")
    cors_origins: list[str] = Field(default_factory=list, description="Browser origins allowed by CORS; empty = none.")
    max_body_bytes: int = Field(1024 * 1024, gt=0, description="Largest request body accepted (413 beyond).")
    max_concurrent_turns: int = Field(4, gt=0, description="Turns running at once across all users (429 beyond).")
    turn_timeout: float = Field(600.0, gt=0, description="Seconds before a turn is stopped (504).")
    max_tasks: int = Field(1000, gt=0, description="Async tasks remembered (finished ones are evicted first).")
    task_ttl: float = Field(3600.0, gt=0, description="Seconds a finished async task stays readable.")
    callback_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key signing async callbacks; blank = not set (callback_url is refused)."
    )
    callback_timeout: float = Field(10.0, gt=0)
    callback_retries: int = Field(2, ge=0, le=10, description="Extra attempts after a failed callback.")
    callback_allow_private: bool = Field(
        False,
        description="Allow callback_url hosts on loopback, private or link-local networks (off: only public addresses).",
    )
    docs: bool = Field(True, description="Serve /docs and /openapi.json.")
    access_log: bool = False

    @field_validator("api_keys")
    @classmethod
    def _drop_blank_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        # A blank entry (e.g. an unset ${CCBRIDGE_API_KEY:-}) is no key: it must never authenticate.
        return [k for k in keys if k.get_secret_value().strip()]

    @field_validator("callback_secret")
    @classmethod
    def _blank_secret_is_unset(cls, secret: SecretStr | None) -> SecretStr | None:
        # ${CCBRIDGE_CALLBACK_SECRET:-} gives "": signing with an empty key would be no signature at all.
        if secret is not None and not secret.get_secret_value().strip():
            return None
        return secret

    @field_validator("allowed_users", "cors_origins")
    @classmethod
    def _strings(cls, values: list[str]) -> list[str]:
        return [str(v) for v in values]

    @model_validator(mode="after")
    def _keys_or_anonymous(self) -> ApiSettings:
        if not self.api_keys and not self.allow_anonymous:
            raise ValueError(
                'api_keys is empty: set at least one key (e.g. api_keys: ["${CCBRIDGE_API_KEY}"]; '
                "blank entries such as an unset environment variable are ignored), "
                "or set allow_anonymous: true to serve without authentication"
            )
        if self.max_tasks < self.max_concurrent_turns:
            raise ValueError("max_tasks must be at least max_concurrent_turns")
        return self

    @property
    def anonymous(self) -> bool:
        return not self.api_keys
