"""The ``store:`` section: one settings model per backend, told apart by ``backend``.

``store: {backend: sqlite, path: data/ccbridge.db}`` (the default),
``{backend: memory}``, ``{backend: redis, url: redis://...}``,
``{backend: postgres, dsn: postgresql://...}``; or in short (:func:`store_short_form`):
``store: memory``, ``store: redis://host:6379/0``, ``store: postgresql://...``,
``store: data/bot.db``. Each backend's driver is an
optional extra, imported only when that backend is used (:func:`core.store.create_store`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    model_validator,
)

TranscriptMode = Literal["store", "local"]


def redact_url(url: str) -> str:
    """``url`` without its password (``redis://user:***@host:6379/0``), for logs and errors."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable URL>"


class _StoreBase(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    history_limit: int = Field(1000, gt=0, description="Turns kept per conversation.")
    transcripts: TranscriptMode | None = Field(
        None,
        description="Where Claude Code's session transcripts live: 'store' mirrors them into this backend "
        "(resume on any machine), 'local' keeps them only under the CLI's config directory. "
        "Default: 'store' for redis/postgres, 'local' for sqlite/memory.",
    )

    def transcript_mode(self) -> TranscriptMode:
        return self.transcripts or "local"


class MemoryStoreSettings(_StoreBase):
    backend: Literal["memory"] = "memory"


class SQLiteStoreSettings(_StoreBase):
    backend: Literal["sqlite"] = "sqlite"
    path: Path = Path("data/ccbridge.db")


class RedisStoreSettings(_StoreBase):
    backend: Literal["redis"] = "redis"
    url: SecretStr | None = Field(None, description="redis:// or rediss:// URL; default: $REDIS_URL.")
    key_prefix: str = "ccbridge:"

    @model_validator(mode="after")
    def _url_from_env(self) -> RedisStoreSettings:
        if self.url is None and os.environ.get("REDIS_URL"):
            self.url = SecretStr(os.environ["REDIS_URL"])
        if self.url is None or not self.url.get_secret_value().strip():
            raise ValueError("store.url is required for the redis backend (or set REDIS_URL)")
        return self

    def transcript_mode(self) -> TranscriptMode:
        return self.transcripts or "store"


class PostgresStoreSettings(_StoreBase):
    """``dsn`` (or ``$DATABASE_URL``); or the separate fields ``host`` / ``port`` / ``user`` /
    ``password`` / ``database`` (the shape of the seed that kept sessions in PostgreSQL; its
    ``pg_host`` / ``pg_port`` / ``pg_user`` / ``pg_password`` / ``pg_database`` too), which make the DSN ``postgresql://user:password@host:port/database``."""

    backend: Literal["postgres"] = "postgres"
    dsn: SecretStr | None = Field(None, description="postgresql:// DSN; default: $DATABASE_URL.")
    pool_min: int = Field(1, ge=0, validation_alias=AliasChoices("pool_min", "min_size"))
    pool_max: int = Field(10, gt=0, validation_alias=AliasChoices("pool_max", "max_size"))
    host: str | None = Field(None, validation_alias=AliasChoices("host", "pg_host"))
    port: int | None = Field(None, gt=0, lt=65536, validation_alias=AliasChoices("port", "pg_port"))
    user: str | None = Field(None, validation_alias=AliasChoices("user", "pg_user"))
    password: SecretStr | None = Field(None, validation_alias=AliasChoices("password", "pg_password"))
    database: str | None = Field(None, validation_alias=AliasChoices("database", "dbname", "db", "pg_database"))
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to wait for a connection.")

    @model_validator(mode="after")
    def _dsn_from_env(self) -> PostgresStoreSettings:
        if self.dsn is None and self.host:
            self.dsn = SecretStr(self._dsn_of_fields())
        if self.dsn is None and os.environ.get("DATABASE_URL"):
            self.dsn = SecretStr(os.environ["DATABASE_URL"])
        if self.dsn is None or not self.dsn.get_secret_value().strip():
            raise ValueError("store.dsn is required for the postgres backend (or set DATABASE_URL)")
        if self.pool_max < max(1, self.pool_min):
            raise ValueError("store.pool_max must be at least store.pool_min")
        return self

    def _dsn_of_fields(self) -> str:
        user = quote(self.user or "", safe="")
        password = quote(self.password.get_secret_value(), safe="") if self.password else ""
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        port = f":{self.port}" if self.port else ""
        return f"postgresql://{auth}{self.host}{port}/{quote(self.database or '', safe='')}"

    def transcript_mode(self) -> TranscriptMode:
        return self.transcripts or "store"


def _backend_of(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("backend") or "sqlite")
    return str(getattr(value, "backend", "sqlite"))


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def store_short_form(value: Any) -> Any:
    """``store: sqlite`` / ``memory`` / ``redis`` / ``postgres``, a ``redis://`` URL, a ``postgresql://``
    DSN or an SQLite file (``data/bot.db``) as the mapping it stands for; a mapping is returned as given.

    ``redis`` / ``postgres`` without a URL take ``$REDIS_URL`` / ``$DATABASE_URL``; ``postgresql`` is read as
    ``postgres`` (claude-agent-http's word), in short and in a mapping."""
    if isinstance(value, dict) and str(value.get("backend", "")).strip().lower() == "postgresql":
        return {**value, "backend": "postgres"}
    if not isinstance(value, str):
        return value
    text = value.strip()
    lowered = text.lower()
    if lowered in ("sqlite", "memory", "redis", "postgres", "postgresql"):
        return {"backend": "postgres" if lowered == "postgresql" else lowered}
    if lowered.startswith(REDIS_SCHEMES):
        return {"backend": "redis", "url": text}
    if lowered.startswith(("postgresql://", "postgres://")):
        return {"backend": "postgres", "dsn": text}
    if lowered.startswith("sqlite:///"):
        return {"backend": "sqlite", "path": text[len("sqlite:///") :]}
    if lowered.endswith(_SQLITE_SUFFIXES):
        return {"backend": "sqlite", "path": text}
    raise ValueError(
        f"{value!r} is not a store: write sqlite, memory, redis, postgres, a redis:// URL, "
        "a postgresql:// DSN, an SQLite file (.db), or a mapping (backend: ..., ...)"
    )


_StoreSettings = Annotated[
    Annotated[SQLiteStoreSettings, Tag("sqlite")]
    | Annotated[MemoryStoreSettings, Tag("memory")]
    | Annotated[RedisStoreSettings, Tag("redis")]
    | Annotated[PostgresStoreSettings, Tag("postgres")],
    Discriminator(
        _backend_of,
        custom_error_type="store_backend",
        custom_error_message="store.backend must be one of: sqlite, memory, redis, postgres",
    ),
]
StoreSettings = Annotated[_StoreSettings, BeforeValidator(store_short_form)]
STORE_BACKEND_NAMES = ("sqlite", "memory", "redis", "postgres")
#: each backend's settings model, by name
STORE_MODELS: dict[str, type[BaseModel]] = {
    "sqlite": SQLiteStoreSettings,
    "memory": MemoryStoreSettings,
    "redis": RedisStoreSettings,
    "postgres": PostgresStoreSettings,
}
