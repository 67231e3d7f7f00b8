"""The HTTP API's own settings (``bots.<name>:`` keys of an ``http_api`` bot)."""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

KEY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$"


def key_fingerprint(key: str) -> str:
    """The name a key without one is logged under: a prefix of its SHA-256 (never the key itself)."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


#: what a running API takes from a config reload; the other settings need a restart
LIVE_SETTINGS = frozenset({"api_keys", "allow_anonymous", "allowed_users", "admin_keys", "admin_bots", "turn_timeout"})


class AdminKey(BaseModel):
    """A key for ``/admin/*`` and the name its changes are logged under."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=KEY_NAME, description="Shown in the log and as who granted access; never the key.")
    key: SecretStr


class ApiSettings(BaseModel):
    """Where the API listens, who may call it, and how much it may do at once."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    allow_anonymous: bool = Field(False, description="Serve without API keys (only behind your own auth proxy).")
    api_keys: list[SecretStr] = Field(default_factory=list, description="Accepted keys (Bearer or X-API-Key).")
    allowed_users: list[str] = Field(default_factory=list, description="user_ids callers may act as; empty = any.")
    admin_keys: list[AdminKey] = Field(
        default_factory=list,
        description="Keys for /admin/* (access, reload): a key, or {name, key} (the name is what the log shows); "
        "empty = no admin endpoints. They are not API keys: /api/* refuses them.",
    )
    admin_bots: list[str] = Field(
        default_factory=list,
        description="Other bots sharing this store whose chat access /admin/users manages (?bot=<name>).",
    )
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
    access_log: bool = Field(True, description="Log each request at INFO (logger uvicorn.access).")

    @field_validator("api_keys")
    @classmethod
    def _drop_blank_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        # A blank entry (e.g. an unset ${CCBRIDGE_API_KEY:-}) is no key: it must never authenticate.
        return [k for k in keys if k.get_secret_value().strip()]

    @field_validator("admin_keys", mode="before")
    @classmethod
    def _name_admin_keys(cls, raw: Any) -> Any:
        # A plain string is a key named by its fingerprint; a blank key (an unset ${VAR:-}) is no key.
        if not isinstance(raw, list):
            return raw
        keys: list[Any] = []
        for item in raw:
            value = item.get_secret_value() if isinstance(item, SecretStr) else item
            if isinstance(value, str):
                if value.strip():
                    keys.append({"name": key_fingerprint(value), "key": value})
            elif isinstance(value, dict) and isinstance(value.get("key"), str) and not value["key"].strip():
                continue
            else:
                keys.append(value)
        return keys

    @field_validator("admin_bots")
    @classmethod
    def _bot_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name.strip() or ":" in name or name != name.strip():
                raise ValueError(f"{name!r} is not a bot name (the name of a bot under bots:)")
        return list(dict.fromkeys(names))

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
        names = [k.name for k in self.admin_keys]
        if len(set(names)) < len(names):
            raise ValueError("admin_keys: two keys have the same name; give each its own")
        api_keys = {k.get_secret_value() for k in self.api_keys}
        if any(k.key.get_secret_value() in api_keys for k in self.admin_keys):
            raise ValueError("admin_keys: a key is also in api_keys; give admins a key of their own")
        return self

    @property
    def anonymous(self) -> bool:
        return not self.api_keys
